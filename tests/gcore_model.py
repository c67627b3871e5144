"""A crfs model of a live process taken from a `gcore` file (x86_64).

Stands in for a checkpoint of a real process where crfs.checkpoint is not available: the model
(regs, xstate, auxv, VMAs with their dumped pages) can be written as a ckpt image and then
served back as tasks/<pid>/core, to be compared with the gcore file of the same process.
"""

import os
import struct
import subprocess

from crfs.formats import elf
from crfs.formats.elf import ELF
from crfs.formats.source import Source
from crfs.formats.x86 import PAGE_SIZE
from crfs.model.image import Creds, Image, Mm, Task, Vma
from crfs.model.registers import GDB_REGISTERS, Registers

ARCH = "x86_64"
VM_FLAGS_OF = ((ELF["PF_R"], 0x1), (ELF["PF_W"], 0x2), (ELF["PF_X"], 0x4))


def gcore(pid, out_prefix):
    """Run gdb's gcore on `pid`; returns the core's path."""
    subprocess.run(["gcore", "-o", str(out_prefix), str(pid)], check=True,
                   capture_output=True, timeout=120)
    return f"{out_prefix}.{pid}"


def notes(data):
    """(n_type, desc) of every note in a PT_NOTE's bytes."""
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, n_type = struct.unpack_from("<3I", data, offset)
        desc_at = offset + 12 + _pad4(namesz)
        yield n_type, data[desc_at:desc_at + descsz]
        offset = desc_at + _pad4(descsz)


def _pad4(n):
    return (n + 3) & ~3


def image_from_gcore(path):
    """The Image of the process in the gcore file at `path` (pages stay in that file)."""
    source = Source.open(path)
    ehdr = elf.Elf64_Ehdr.parse(source.pread(0, elf.Elf64_Ehdr.sizeof()))
    size = elf.Elf64_Phdr.sizeof()
    phdrs = [elf.Elf64_Phdr.parse(source.pread(ehdr.e_phoff + i * size, size))
             for i in range(ehdr.e_phnum)]
    note_list = [n for p in phdrs if p.p_type == ELF["PT_NOTE"]
                 for n in notes(source.pread(p.p_offset, p.p_filesz))]
    files = _nt_file(next(d for t, d in note_list if t == ELF["NT_FILE"]))
    vmas = _vmas([p for p in phdrs if p.p_type == ELF["PT_LOAD"]], files)
    auxv = list(struct.iter_unpack("<QQ", next(d for t, d in note_list if t == ELF["NT_AUXV"])))
    mm = Mm(fields={}, vmas=vmas, auxv=auxv, source=source)
    psinfo = elf.elf_prpsinfo[ARCH].parse(next(d for t, d in note_list
                                                if t == ELF["NT_PRPSINFO"]))
    xstate = [d for t, d in note_list if t == ELF["NT_X86_XSTATE"]]
    tasks = [_task(elf.elf_prstatus[ARCH].parse(d), psinfo, mm, xstate[i] if xstate else None)
             for i, d in enumerate(d for t, d in note_list if t == ELF["NT_PRSTATUS"])]
    header = {"release": os.uname().release, "version": os.uname().version[:64],
              "machine": ARCH, "kernel": "2.6.33", "time": 0,
              "at_vector_size": max(44, 2 * len(auxv))}   # today's kernels save more than 44
    return Image("linux-cr", "gcore", ARCH, header=header, tasks=tasks, source=source)


def _task(prstatus, psinfo, mm, xstate):
    names = set(GDB_REGISTERS[ARCH])
    regs = Registers(ARCH, {k: v for k, v in prstatus.pr_reg.items() if k in names})
    comm = psinfo.pr_fname.rstrip(b"\0").decode()
    return Task(pid=prstatus.pr_pid, tgid=psinfo.pr_pid, ppid=prstatus.pr_ppid, comm=comm,
                state=0, regs=regs, fpu=xstate, tls=[0, 0, 0], mm=mm,
                creds=Creds())


def _nt_file(desc):
    count, page_size = struct.unpack_from("<QQ", desc)    # gdb writes page_size 1
    entries = [struct.unpack_from("<QQQ", desc, 16 + 24 * i) for i in range(count)]
    names = desc[16 + 24 * count:].split(b"\0")[:count]
    return {start: (end, file_ofs * page_size // PAGE_SIZE, name.decode())
            for (start, end, file_ofs), name in zip(entries, names)}


def _vmas(loads, files):
    """A VMA per PT_LOAD, plus the file mappings gcore left out (clean text: no pages)."""
    vmas = {}
    for load in loads:
        vm_flags = sum(vm for pf, vm in VM_FLAGS_OF if load.p_flags & pf)
        end, pgoff, name = files.get(load.p_vaddr, (None, 0, None))
        vma = Vma(load.p_vaddr, load.p_vaddr + load.p_memsz, vm_flags, vm_flags, pgoff,
                  "file" if name else "anon", file=name)
        vma.pages.add_run(range(vma.start, vma.start + load.p_filesz, PAGE_SIZE), load.p_offset)
        vmas[vma.start] = vma
    for start, (end, pgoff, name) in files.items():
        if start not in vmas:
            vmas[start] = Vma(start, end, 0x5, 0x5, pgoff, "file", file=name)
    return [vmas[start] for start in sorted(vmas)]
