"""An ELF core file of one task's process, served on the fly from the model.

Layout, as the kernel's fs/binfmt_elf.c writes it:

    Ehdr | Phdr[PT_NOTE] Phdr[PT_LOAD] * VMAs | notes | zeros to 4096 | VMA bytes ...

The header, program headers and notes are built once (a few KiB); PT_LOAD bytes are read from
the image only when asked for, so `size` costs nothing and `read` costs O(length).
"""

import struct
from bisect import bisect_right
from dataclasses import dataclass

from crfs.errors import Unsupported
from crfs.formats import elf
from crfs.formats.common import c_chars, encode_text
from crfs.formats.elf import ELF
from crfs.formats.x86 import FXSAVE_SIZE, PAGE_SIZE, VmFlags
from crfs.model.image import Creds

# Kinds whose undumped bytes are not zeros but live elsewhere (the mapped file, the kernel):
# with no page dumped they get p_filesz 0, so gdb reads the file instead of zeros.
KINDS_BACKED_ELSEWHERE = ("file", "shm-file", "vdso", "ignore")
# The largest core of each arch: an ELF32 core's offsets are 32 bits; any core's size must
# be a file size (a signed 64-bit off_t).
CORE_LIMIT = {"i386": (1 << 32) - 1, "x86_64": (1 << 63) - 1}
FSAVE_SIZE = 112          # i387_fsave_struct: user_i387_struct (108) + status word


@dataclass(frozen=True)
class Load:
    """One PT_LOAD: `filesz` bytes at core offset `offset` are the VMA's from `vaddr`."""
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


class CoreFile:
    """The core of `task`'s process: `size` bytes, any range readable with `read`."""

    def __init__(self, image, task):
        if task.mm is None or task.regs is None:
            raise ValueError(f"task {task.pid} has no address space or registers")
        self.arch = image.arch
        self.mm = task.mm
        notes = core_notes(image.arch, threads_of(image, task), task.mm)
        self.loads = _layout_loads(image.arch, task.mm, len(notes))
        self._head = _headers(image.arch, self.loads, len(notes)) + notes
        last = self.loads[-1] if self.loads else None
        self.size = last.offset + last.filesz if last else len(self._head)
        if self.size > CORE_LIMIT[self.arch]:
            # VMAs filling nearly all of i386's 4 GiB, plus the headers: no such ELF.
            raise Unsupported(f"the core of task {task.pid} would be {self.size} bytes, more "
                              f"than an {self.arch} ELF core can hold")
        self._load_offsets = [load.offset for load in self.loads]

    def read(self, offset, length):
        """Bytes [offset, offset+length) of the core, clipped to its size."""
        end = min(offset + length, self.size)
        out = bytearray()
        while offset < end:
            chunk = self._read_piece(offset, end)
            out += chunk
            offset += len(chunk)
        return bytes(out)

    def _read_piece(self, offset, end):
        """The longest run from `offset` that one source serves: head, gap or one PT_LOAD."""
        if offset < len(self._head):
            return self._head[offset:end]
        i = bisect_right(self._load_offsets, offset) - 1
        load = self.loads[i] if i >= 0 else None
        if load is None or offset >= load.offset + load.filesz:
            # Alignment gap before the first PT_LOAD (or between empty ones): zeros.
            following = self._load_offsets[i + 1] if i + 1 < len(self.loads) else end
            return bytes(min(end, following) - offset)
        want = min(end, load.offset + load.filesz) - offset
        data = self.mm.read(load.vaddr + (offset - load.offset), want)
        return data.ljust(want, b"\0")

    def chunks(self, chunk_size=1 << 20):
        """The whole core in pieces of at most `chunk_size` bytes (for writing it out)."""
        for offset in range(0, self.size, chunk_size):
            yield self.read(offset, chunk_size)


def threads_of(image, task):
    """`task` first, then the other threads of its process (same tgid, same address space)."""
    others = [t for t in image.tasks if t is not task and t.tgid == task.tgid
              and t.mm is task.mm and t.regs is not None]
    return [task] + others


# --------------------------------------------------------------------------- layout

def _layout_loads(arch, mm, notes_size):
    headers_size = elf.EHDR[arch].sizeof() + elf.PHDR[arch].sizeof() * (1 + len(mm.vmas))
    offset = _align(headers_size + notes_size, elf.CORE_PAGE_ALIGN)
    loads = []
    for vma in mm.vmas:
        filesz = _dump_size(vma)
        loads.append(Load(offset, vma.start, filesz, vma.size, _segment_flags(vma.vm_flags)))
        offset += filesz
    return loads


def _dump_size(vma):
    if len(vma.pages) == 0 and vma.kind in KINDS_BACKED_ELSEWHERE:
        return 0
    return vma.size


def _segment_flags(vm_flags):
    return ((ELF["PF_R"] if vm_flags & VmFlags.VM_READ else 0) | (ELF["PF_W"] if vm_flags & VmFlags.VM_WRITE else 0)
            | (ELF["PF_X"] if vm_flags & VmFlags.VM_EXEC else 0))


def _headers(arch, loads, notes_size):
    ehdr_size, phdr_size = elf.EHDR[arch].sizeof(), elf.PHDR[arch].sizeof()
    phnum = 1 + len(loads)
    if phnum >= 0xFFFF:
        # PN_XNUM (the count moved into a section header) is not implemented.
        raise ValueError(f"{len(loads)} VMAs: too many for e_phnum")
    ehdr = elf.EHDR[arch].build(dict(
        e_ident={}, e_type=ELF["ET_CORE"], e_machine=elf.ARCH[arch]["machine"],
        e_version=ELF["EV_CURRENT"], e_entry=0, e_phoff=ehdr_size, e_shoff=0, e_flags=0,
        e_ehsize=ehdr_size, e_phentsize=phdr_size, e_phnum=phnum, e_shentsize=0, e_shnum=0,
        e_shstrndx=0))
    notes_offset = ehdr_size + phdr_size * phnum
    phdrs = [dict(p_type=ELF["PT_NOTE"], p_offset=notes_offset, p_vaddr=0, p_paddr=0,
                  p_filesz=notes_size, p_memsz=0, p_flags=0, p_align=elf.NOTE_ALIGN)]
    phdrs += [dict(p_type=ELF["PT_LOAD"], p_offset=load.offset, p_vaddr=load.vaddr, p_paddr=0,
                   p_filesz=load.filesz, p_memsz=load.memsz, p_flags=load.flags,
                   p_align=elf.CORE_PAGE_ALIGN) for load in loads]
    return ehdr + b"".join(elf.PHDR[arch].build(p) for p in phdrs)


def _align(value, alignment):
    return -(-value // alignment) * alignment


# --------------------------------------------------------------------------- notes

def core_notes(arch, threads, mm):
    """The PT_NOTE contents, in the kernel's order: the first thread's NT_PRSTATUS, then the
    process notes (PRPSINFO, AUXV, FILE), then its FPU notes; then each other thread's."""
    first, others = threads[0], threads[1:]
    notes = [note(ELF["NT_PRSTATUS"], prstatus(arch, first)),
             note(ELF["NT_PRPSINFO"], prpsinfo(arch, first, mm))]
    if mm.auxv:
        notes.append(note(ELF["NT_AUXV"], auxv(arch, mm.auxv)))
    files = file_vmas(mm)
    if files:
        notes.append(note(ELF["NT_FILE"], nt_file(arch, files)))
    notes += fpu_notes(arch, first.fpu)
    for thread in others:
        notes.append(note(ELF["NT_PRSTATUS"], prstatus(arch, thread)))
        notes += fpu_notes(arch, thread.fpu)
    return b"".join(notes)


def note(n_type, desc):
    """One note: Nhdr, owner name with its NUL, desc; name and desc each padded to 4."""
    name = elf.NOTE_OWNER.get(n_type, b"CORE") + b"\0"
    header = elf.Elf_Nhdr.build(dict(n_namesz=len(name), n_descsz=len(desc), n_type=n_type))
    return header + _pad4(name) + _pad4(desc)


def _pad4(data):
    return data + bytes(-len(data) % elf.NOTE_ALIGN)


def prstatus(arch, task):
    return elf.elf_prstatus[arch].build(dict(
        si_signo=0, si_code=0, si_errno=0, pr_cursig=0, pr_sigpend=0, pr_sighold=0,
        pr_pid=_pid(task.pid), pr_ppid=_pid(task.ppid), pr_pgrp=_pgrp(task), pr_sid=_sid(task),
        pr_utime=_ZERO_TIME, pr_stime=_ZERO_TIME, pr_cutime=_ZERO_TIME, pr_cstime=_ZERO_TIME,
        pr_reg=user_regs(arch, task.regs), pr_fpvalid=int(task.fpu is not None)))


_ZERO_TIME = {"tv_sec": 0, "tv_usec": 0}


def user_regs(arch, registers):
    """Registers (gdb names) -> user_regs_struct fields."""
    values = registers.as_dict()
    return {name: _word(arch, values.get(name, 0)) for name in elf.USER_REGS[arch]}


def _word(arch, value):
    """`value` as an unsigned long of `arch` (images may store wider fields)."""
    return value & ((1 << (32 if arch == "i386" else 64)) - 1)


def _pid(value):
    """`value` as a pid_t (s32), wrapping as a C cast would."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _pgrp(task):
    return _pid(task.pgid or 0)


def _sid(task):
    return _pid(task.sid or 0)


def prpsinfo(arch, task, mm):
    state = task.state or 0
    # fill_psinfo: the index of the lowest state bit, plus one; 0 for running.
    index = (state & -state).bit_length() if state else 0
    sname = "RSDTZW"[index] if index < 6 else "."
    creds = task.creds or Creds()
    uid_mask = 0xFFFF if arch == "i386" else 0xFFFFFFFF
    return elf.elf_prpsinfo[arch].build(dict(
        pr_state=index, pr_sname=ord(sname), pr_zomb=int(sname == "Z"), pr_nice=0, pr_flag=0,
        pr_uid=creds.uid & uid_mask, pr_gid=creds.gid & uid_mask,
        pr_pid=_pid(task.pid), pr_ppid=_pid(task.ppid), pr_pgrp=_pgrp(task), pr_sid=_sid(task),
        pr_fname=c_chars(task.comm, 15, 16),
        pr_psargs=psargs(mm).ljust(elf.ELF_PRARGSZ, b"\0")))


def psargs(mm):
    """The command line from [arg_start, arg_end), NULs as spaces, at most 79 bytes."""
    start, end = mm.fields.get("arg_start"), mm.fields.get("arg_end")
    if not start or not end or end <= start:
        return b""
    args = mm.read(start, min(end - start, elf.ELF_PRARGSZ - 1))
    return args.rstrip(b"\0").replace(b"\0", b" ")


def auxv(arch, entries):
    """saved_auxv up to and including AT_NULL."""
    entries = list(entries)
    if not entries or entries[-1][0] != 0:
        entries.append((0, 0))
    entry = elf.auxv_entry[arch]
    return b"".join(entry.build(dict(a_type=_word(arch, t), a_val=_word(arch, v)))
                    for t, v in entries)


def file_vmas(mm):
    return [vma for vma in mm.vmas if vma.file]


def nt_file(arch, vmas):
    header = elf.nt_file_header[arch].build(dict(count=len(vmas), page_size=PAGE_SIZE))
    entries = b"".join(elf.nt_file_entry[arch].build(dict(
        start=v.start, end=v.end, file_ofs=_word(arch, v.pgoff))) for v in vmas)
    names = b"".join(encode_text(v.file) + b"\0" for v in vmas)
    return header + entries + names


# --------------------------------------------------------------------------- FPU

def fpu_notes(arch, fpu):
    """FPU notes as the kernel's regsets give them, from the bytes the image stored.

    x86_64: NT_PRFPREG is the fxsave image. i386: NT_PRFPREG is the 108-byte fsave image;
    an image that stored fxsave gets it converted (the kernel's convert_from_fxsr) plus
    NT_PRXFPREG with the fxsave bytes. Anything longer than fxsave is an xsave area and is
    also given whole as NT_X86_XSTATE. Sizes that are neither fsave nor fxsave get no notes.
    """
    if fpu is None:
        return []
    if arch == "i386" and len(fpu) == FSAVE_SIZE:
        return [note(ELF["NT_PRFPREG"], fpu[:elf.user_i387_struct.sizeof()])]
    if len(fpu) < FXSAVE_SIZE:
        return []
    fxsave = fpu[:FXSAVE_SIZE]
    if arch == "i386":
        notes = [note(ELF["NT_PRFPREG"], fsave_from_fxsave(fxsave)),
                 note(ELF["NT_PRXFPREG"], fxsave)]
    else:
        notes = [note(ELF["NT_PRFPREG"], fxsave)]
    if len(fpu) > FXSAVE_SIZE:
        notes.append(note(ELF["NT_X86_XSTATE"], fpu))
    return notes


def fsave_from_fxsave(fxsave):
    """The i386 user_i387_struct for an fxsave image (arch/x86/kernel/fpu/regset.c)."""
    fx = elf.user_fxsr_struct.parse(fxsave)
    return elf.user_i387_struct.build(dict(
        cwd=fx.cwd | 0xFFFF0000, swd=fx.swd | 0xFFFF0000, twd=_fsave_tag_word(fx),
        fip=fx.fip, fcs=(fx.fcs & 0xFFFF) | (fx.fop << 16), foo=fx.foo, fos=fx.fos,
        st_space=b"".join(slot[:10] for slot in fx.st_space)))


TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = 0, 1, 2, 3


def _fsave_tag_word(fx):
    """twd_fxsr_to_i387: fxsave keeps one "in use" bit per register; fsave a 2-bit class,
    worked out from the register's contents (ordered by physical register, st(i) rotated
    by the top of stack)."""
    top = (fx.swd >> 11) & 7
    word = 0xFFFF0000
    for physical in range(8):
        if fx.twd >> physical & 1:
            tag = _register_class(fx.st_space[(physical - top) & 7])
        else:
            tag = TAG_EMPTY
        word |= tag << (2 * physical)
    return word


def _register_class(slot):
    significand = struct.unpack_from("<4H", slot)
    exponent = struct.unpack_from("<H", slot, 8)[0] & 0x7FFF
    if exponent == 0x7FFF:
        return TAG_SPECIAL
    if exponent == 0:
        return TAG_ZERO if not any(significand) else TAG_SPECIAL
    return TAG_VALID if significand[3] & 0x8000 else TAG_SPECIAL
