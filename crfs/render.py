"""Text views of the model as users know them: /proc maps and status, gdb register names.

Shared by the CLI and the filesystem so both print the same bytes.
"""

from crfs.formats.common import encode_text
from crfs.formats.x86 import PAGE_SIZE, VmFlags


# /proc/<pid>/status letters for the task state bits the images store.
TASK_STATES = ((0x0, "R (running)"), (0x1, "S (sleeping)"), (0x2, "D (disk sleep)"),
               (0x4, "T (stopped)"), (0x8, "t (tracing stop)"), (0x10, "X (dead)"),
               (0x20, "Z (zombie)"))


def perms(vma):
    f = vma.vm_flags
    return "".join((
        "r" if f & VmFlags.VM_READ else "-",
        "w" if f & VmFlags.VM_WRITE else "-",
        "x" if f & VmFlags.VM_EXEC else "-",
        "s" if f & VmFlags.VM_SHARED else "p",
    ))


def vma_name(vma, mm):
    """The path column of /proc/<pid>/maps, named as the kernel names special areas."""
    if vma.file:
        return vma.file
    if vma.kind == "vdso":
        return "[vdso]"
    fields = mm.fields
    start_brk, brk = fields.get("start_brk"), fields.get("brk")
    if start_brk is not None and brk is not None and vma.start <= brk and vma.end >= start_brk \
            and vma.kind == "anon":
        return "[heap]"
    stack = fields.get("start_stack")
    if stack is not None and vma.start <= stack < vma.end:
        return "[stack]"
    if vma.kind == "shm-anon":
        return "/dev/zero (deleted)"
    return ""


def maps_line(vma, mm, arch):
    """One line of /proc/<pid>/maps (show_map_vma's format and padding)."""
    # Dev and inode are not in the images: the kernel prints 00:00 0 for those too.
    line = (f"{vma.start:08x}-{vma.end:08x} {perms(vma)} {vma.pgoff * PAGE_SIZE:08x} "
            f"00:00 0 ")
    name = vma_name(vma, mm)
    if name:
        pointer_size = 8 if arch == "x86_64" else 4
        line = line.ljust(25 + pointer_size * 6 - 1) + " " + name
    return line + "\n"


def maps(mm, arch):
    return "".join(maps_line(v, mm, arch) for v in mm.vmas)


def vma_dirname(vma):
    """The address column of maps: names the VMA's directory."""
    return f"{vma.start:08x}-{vma.end:08x}"


def state_text(state):
    if state is None:
        return None
    for bit, text in reversed(TASK_STATES):
        if bit and state & bit:
            return text
    return TASK_STATES[0][1]


def status(task):
    """/proc/<pid>/status lines for the fields the image has."""
    lines = [f"Name:\t{task.comm}"]
    state = state_text(task.state)
    if state:
        lines.append(f"State:\t{state}")
    lines += [f"Tgid:\t{task.tgid}", f"Pid:\t{task.pid}", f"PPid:\t{task.ppid}"]
    creds = task.creds
    if creds:
        lines.append("Uid:\t" + "\t".join(str(getattr(creds, k))
                                         for k in ("uid", "euid", "suid", "fsuid")))
        lines.append("Gid:\t" + "\t".join(str(getattr(creds, k))
                                         for k in ("gid", "egid", "sgid", "fsgid")))
    return "\n".join(lines) + "\n"


def regs(registers):
    """One register a line, "<name> 0x<hex>", gdb's names and order."""
    return "".join(f"{name} {value:#x}\n" for name, value in registers.items())


def record_line(rec):
    """One line of `crfs records`: file offset, C type name, length, note."""
    note = f"  {rec.note}" if rec.note else ""
    return f"{rec.offset:#010x}  {rec.name:<24} {rec.length}{note}\n"


def quoted(text):
    """`text` quoted as Python shows bytes: its stored bytes, not decoding artefacts."""
    return repr(encode_text(text))[1:]


def key_values(mapping):
    return "".join(f"{key}: {value}\n" for key, value in mapping.items())


def vma_info(vma):
    info = {"kind": vma.kind, "start": f"{vma.start:#x}", "end": f"{vma.end:#x}",
            "vm_flags": f"{vma.vm_flags:#x}", "prot": f"{vma.prot:#x}", "pgoff": vma.pgoff,
            "file": vma.file or "", "pages dumped": len(vma.pages)}
    if vma.shm is not None:
        info["shm segment"] = vma.shm.objref
        info["shm size"] = vma.shm.size
    if vma.native is not None:
        info.update(vma.native.shown())
    return key_values(info)


def header(image):
    lines = {"format": image.description}
    lines.update(image.header)
    return key_values(lines)
