"""Synthetic images: a plausible process built in the model, pages generated on demand.

Used by the benchmarks, the demo store and tests that need an image of any size
without holding its pages in memory.
"""

import struct

from crfs.formats.common import kernel_text
from crfs.formats.x86 import PAGE_SIZE, USER_CS, USER_DS, VmFlags
from crfs.model.image import Creds, Image, Mm, Task, Vma
from crfs.model.registers import Registers

PROT_RW, PROT_RX = 0x3, 0x5
VM_READ, VM_WRITE, VM_EXEC, VM_GROWSDOWN = (int(flag) for flag in (
    VmFlags.VM_READ, VmFlags.VM_WRITE, VmFlags.VM_EXEC, VmFlags.VM_GROWSDOWN))

LAYOUT = {  # where the synthetic process lives, per arch
    "x86_64": {"text": 0x400000, "heap": 0x10000000, "stack_top": 0x7ffffffde000},
    "i386": {"text": 0x08048000, "heap": 0x10000000, "stack_top": 0xbffdf000},
}


class PatternSource:
    """Page k of the pattern is the u64 value (seed << 32 | k) repeated: checkable anywhere."""

    def __init__(self, pages, seed=0xC0FFEE):
        self.size = pages * PAGE_SIZE
        self.seed = seed
        self.path = None

    def page(self, index):
        return struct.pack("<Q", (self.seed << 32) | index) * (PAGE_SIZE // 8)

    def pread(self, offset, length):
        out = bytearray()
        while length > 0:
            index, skip = divmod(offset, PAGE_SIZE)
            chunk = self.page(index)[skip:skip + length]
            out += chunk
            offset += len(chunk)
            length -= len(chunk)
        return bytes(out)

    def close(self):
        pass


def synthetic_image(arch="x86_64", heap_pages=64, comm="synth", pid=4242, release="6.1.0",
                    seed=0xC0FFEE):
    """One task: a text VMA (file), a heap with `heap_pages` dumped pages, a stack."""
    layout = LAYOUT[arch]
    stack_pages = 4
    source = PatternSource(1 + heap_pages + stack_pages, seed)
    text = Vma(layout["text"], layout["text"] + 4 * PAGE_SIZE, VM_READ | VM_EXEC, PROT_RX, 0,
               "file", file=f"/usr/bin/{comm}")
    text.pages.add(text.start, 0)  # a written (COW-broken) text page
    heap = Vma(layout["heap"], layout["heap"] + heap_pages * PAGE_SIZE, VM_READ | VM_WRITE,
               PROT_RW, 0, "anon")
    heap.pages.add_run(range(heap.start, heap.end, PAGE_SIZE), PAGE_SIZE)
    stack_end = layout["stack_top"]
    stack = Vma(stack_end - 32 * PAGE_SIZE, stack_end, VM_READ | VM_WRITE | VM_GROWSDOWN,
                PROT_RW, 0, "anon")
    stack.pages.add_run(range(stack_end - stack_pages * PAGE_SIZE, stack_end, PAGE_SIZE),
                        (1 + heap_pages) * PAGE_SIZE)
    mm = Mm(fields={"start_code": text.start, "end_code": text.end, "start_data": heap.start,
                    "end_data": heap.start, "start_brk": heap.start, "brk": heap.end,
                    "start_stack": stack_end - 0x100, "arg_start": stack_end - 0x80,
                    "arg_end": stack_end - 0x70, "env_start": stack_end - 0x70,
                    "env_end": stack_end - 0x10},
            vmas=[text, heap, stack], source=source)
    task = Task(pid=pid, tgid=pid, ppid=1, comm=comm, state=0, mm=mm,
                regs=_registers(arch, text.start + 0x10, stack_end - 0x100),
                fpu=bytes(512), tls=[0, 0, 0],
                creds=Creds(*[1000] * 8))
    header = {"release": release, "version": "#1 SMP crfs synthetic", "machine": arch,
              "kernel": kernel_text(release), "time": 1230000000}
    return Image("linux-cr", "synthetic", arch, header=header, time=1230000000,
                 tasks=[task], source=source)


def _registers(arch, ip, sp):
    if arch == "x86_64":
        values = {"rip": ip, "rsp": sp, "rbp": sp + 0x40, "rax": 1, "rbx": 2, "rcx": 3,
                  "rdx": 4, "rsi": 5, "rdi": 6, "r8": 8, "r15": 15, "eflags": 0x246,
                  "cs": USER_CS[arch], "ss": USER_DS[arch], "orig_rax": 0xFFFFFFFFFFFFFFFF}
    else:
        values = {"eip": ip, "esp": sp, "ebp": sp + 0x40, "eax": 1, "ebx": 2, "ecx": 3,
                  "edx": 4, "esi": 5, "edi": 6, "eflags": 0x246, "cs": USER_CS[arch],
                  "ss": USER_DS[arch], "ds": USER_DS[arch], "es": USER_DS[arch],
                  "orig_eax": 0xFFFFFFFF}
    return Registers(arch, values)
