"""The model of stopped processes: tasks, registers, address spaces, and which pages to save.

Pages are chosen as the kernel checkpoint writers chose them: anonymous pages that exist
(present or swapped out), and the pages of private file mappings that were written (no
longer the file's own page). Clean file pages and never-touched pages are not saved.
Each thread's robust futex list comes from get_robust_list(2), its clear_child_tid and
parent-death signal from prctls the thread is made to run (crfs.checkpoint.inject), after its registers were read.
"""

import errno
import os
import time

from crfs.checkpoint import files, fown, inject, procfs, ptrace, signals
from crfs.checkpoint.file_id import exe_identity, file_identity
from crfs.checkpoint.memory import ProcessMemory
from crfs.errors import Unsupported
from crfs.formats.common import kernel_text
from crfs.formats.source import MemorySource
from crfs.formats.x86 import PAGE_SIZE, USER32_CS_X86_64, VmFlags
from crfs.model.image import (EXIT_ZOMBIE, Exit, Futex, Image, Mm, Rseq, ShmSegment, Task,
                              TaskMisc, Vma)
from crfs.model.registers import Registers

ARCH = "x86_64"
# Kernel-provided parts of the vDSO (re-created with it) and the legacy vsyscall page:
# nothing of the process is in them.
SKIPPED = ("[vsyscall]", "[vvar]", "[vvar_vclock]")
# x86 page table bits, for the pgprot the kernel would hold (protection_map).
PAGE_PRESENT, PAGE_RW, PAGE_USER, PAGE_ACCESSED = 0x1, 0x2, 0x4, 0x20
PAGE_PROTNONE, PAGE_NX = 0x100, 1 << 63
# /proc state letters -> task state bits as the images store them.
STATE_BITS = {"R": 0x0, "S": 0x1, "D": 0x2, "T": 0x4, "t": 0x8, "X": 0x10, "Z": 0x20}
AT_VECTOR_SIZE_MIN = 44    # saved_auxv words of the 2.6.34 kernels the formats describe
# Mm.fields -> /proc/<pid>/stat field number (proc(5)).
MM_STAT_FIELDS = {"start_code": 26, "end_code": 27, "start_data": 45, "end_data": 46,
                  "start_brk": 47, "start_stack": 28, "arg_start": 48, "arg_end": 49,
                  "env_start": 50, "env_end": 51}


class UnsupportedVma(Unsupported):
    """A mapping a checkpoint cannot save (device memory, hugetlb pages, unknown kinds)."""


def build_image(freezer, on_read=None, handlers=True, pages=True, early=None,
                open_files=None):
    """The Image of the processes `freezer` holds stopped, in the order they were stopped.
    Each Mm's source reads the process's memory (it must stay stopped until written).
    Without `handlers` the signal handlers are left None, for a snapshot to read later
    from its copy-on-write child (crfs.checkpoint.snapshot): 64 injected syscalls fewer
    while the processes are stopped. Without `pages` the pages of private VMAs a fork
    copies are left for later (add_later_pages): a snapshot reads them from its child's
    pagemap once the processes run again. `early`: {pid: procfs.maps(pid)} read before
    the freeze, used when the VMAs are still those (see early_maps). `open_files`: a
    file_registry() whose pipes' flags the caller settles (settle_pipes) once the
    processes run again, so that the scan of every process's fds it may need is not made
    while they are stopped; by default they are settled here."""
    segments = {}       # (dev, inode) -> ShmSegment, shared by the processes of a tree
    settle = open_files is None
    if settle:
        open_files = file_registry()       # shared across the tree too
    tasks = []
    for pid, tids in freezer.processes.items():
        tasks += capture_process(pid, tids, freezer, segments, on_read, open_files,
                                 handlers, pages, (early or {}).get(pid))
    tasks += [task for task in map(capture_zombie, freezer.zombies) if task is not None]
    if settle:
        open_files.settle_pipes()
    now = int(time.time())
    return Image(format="linux-cr", dialect="live", arch=ARCH, header=_header(tasks, now),
                 time=now, tasks=tasks)


def file_registry():
    """The files.Registry of one checkpoint's open files (build_image's `open_files`)."""
    return files.Registry(source=MemorySource())


def capture_process(pid, tids, freezer, segments, on_read, open_files, handlers=True,
                    pages=True, early=None):
    """One Task per thread, all sharing one Mm and one FdTable. `freezer` holds them
    stopped (its states and the signals to pass on). `open_files`: the Registry of the
    checkpoint's files (its pipes settled by the caller once every process is in)."""
    leader_regs = ptrace.get_regs(pid)
    compat = leader_regs["cs"] == USER32_CS_X86_64
    stat = procfs.stat_fields(pid)
    mm = capture_mm(pid, stat, compat, segments, on_read, pages, early)
    session = {"pgid": int(stat[5]), "sid": int(stat[6])}
    injector = inject.Injector(pid, mm, freezer.signals)
    tasks = [capture_thread(pid, tid, freezer.states.get(tid, "R"), mm, session, injector)
             for tid in tids]
    fs = signals.fs_struct(pid, procfs.status_fields(f"/proc/{pid}/status"))
    table = files.capture(pid, open_files)
    fown.capture(pid, leader_regs, table, injector, open_files.owners_asked)
    leader = next((t for t in tasks if t.pid == pid), None)
    for task in tasks:
        if leader is not None:    # the process's: its leader's answer
            task.misc.child_subreaper = leader.misc.child_subreaper
        task.fs = fs          # threads share their process's (CLONE_FS, as pthreads do)
        task.files = table    # and its file table (CLONE_FILES)
    signals.capture(pid, tasks, injector, freezer, handlers)
    return tasks


def capture_zombie(pid):
    """The Task of a zombie process: its pids and how it ended (the status its parent's
    wait() gets, /proc/PID/stat's exit_code); None if its parent reaped it meanwhile."""
    try:
        stat = procfs.stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    if stat[3] != "Z":
        return None
    return Task(pid=pid, tgid=pid, ppid=int(stat[4]), comm=stat[2], state=STATE_BITS["Z"],
                pgid=int(stat[5]), sid=int(stat[6]),
                exit=Exit(state=EXIT_ZOMBIE, code=int(stat.get(52, 0)),
                          signal=int(stat[38])))


def capture_thread(pid, tid, state, mm, session, injector):
    status = procfs.status_fields(f"/proc/{pid}/task/{tid}/status")
    comm = procfs.read_text(f"/proc/{pid}/task/{tid}/comm").rstrip("\n")
    regs = ptrace.get_regs(tid)
    task = Task(pid=tid, tgid=int(status["Tgid"]), ppid=int(status["PPid"]), comm=comm,
                state=STATE_BITS.get(state, 0), creds=signals.creds(status),
                regs=Registers(ARCH, regs), fpu=ptrace.get_xstate(tid), tls=_tls(tid),
                mm=mm, **session)
    task.futex = _futex(tid, regs, injector)   # after regs and FPU are read
    task.exit.pdeath_signal = injector.pdeath_signal(tid, regs)
    addr, size, sig = ptrace.get_rseq_config(tid)
    task.rseq = Rseq(addr=addr, length=size, sig=sig) if addr else None
    task.seccomp = int(status.get("Seccomp", "0"))
    task.misc = _misc(pid, tid, status)
    if tid == pid:
        task.exit.signal = int(procfs.stat_fields(pid)[38])
        task.misc.child_subreaper = injector.child_subreaper(tid, regs)
    return task


def _misc(pid, tid, status):
    """Its personality and scheduling (/proc/PID/task/TID/personality and stat: nice 19,
    rt_priority 40, policy 41) and its mm's THP disable (status THP_enabled: 0)."""
    stat = procfs.stat_fields(f"{pid}/task/{tid}")
    persona = int(procfs.read_text(f"/proc/{pid}/task/{tid}/personality"), 16)
    return TaskMisc(personality=persona, policy=int(stat[41]), rt_priority=int(stat[40]),
                    nice=int(stat[19]), thp_disable=status.get("THP_enabled") == "0")


def _futex(tid, regs, injector):
    """The robust list (when registered) and clear_child_tid (when set)."""
    try:
        head, length = ptrace.get_robust_list(tid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise
        head = length = 0
    return Futex(clear_child_tid=injector.clear_child_tid(tid, regs) or 0,
                 robust_list=head, robust_list_len=length if head else 0)


def _tls(tid):
    """GDT TLS entries (32-bit tasks use them; 64-bit ones normally have fs_base instead)."""
    try:
        return ptrace.get_tls(tid)
    except OSError:
        return [0] * ptrace.GDT_ENTRY_TLS_ENTRIES


# ----------------------------------------------------------------------------- memory

def capture_mm(pid, stat, compat, segments, on_read, pages=True, early=None):
    lines = early_maps(pid, early)
    vmas, runs, later = [], [], []
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for line in lines:
            kind = vma_kind(line)
            if kind is not None:
                # A fork copies the page table entries of a private VMA, unless madvised
                # DONTFORK or WIPEONFORK: its child's pagemap tells which pages it has.
                defer = not pages and kind in ("anon", "file") and not line.dontfork
                vma, vma_runs = capture_vma(line, kind, None if defer else fd, segments)
                if defer:
                    later.append(vma)
                if kind in ("file", "shm-file"):
                    vma.file_id = file_identity(pid, line)
                vmas.append(vma)
                runs += vma_runs
    finally:
        os.close(fd)
    fields = {name: int(stat[number]) for name, number in MM_STAT_FIELDS.items()}
    # /proc has no brk; the [heap] VMA ends at brk rounded up to a page.
    heap = next((line for line in lines if line.name == "[heap]"), None)
    fields["brk"] = heap.end if heap is not None else fields["start_brk"]
    auxv = procfs.auxv(pid, 4 if compat else 8)
    source = ProcessMemory(pid, runs, on_read)
    source.later = later
    source.early = lines if lines is early else None     # for Snapshot.check_early
    exe, exe_id = exe_identity(pid, vmas)
    return Mm(fields=fields, vmas=vmas, auxv=auxv, source=source, exe=exe, exe_id=exe_id)


def early_maps(pid, early):
    """The smaps lines of stopped process `pid`: `early` (read before it was stopped) when
    its maps still show those VMAs and its locked size is theirs, else read now. smaps walks
    every page table (milliseconds per GiB) and maps does not: what changes VmFlags without
    changing maps (madvise DONTFORK, WIPEONFORK... of a whole VMA) between the two reads is
    caught after the snapshot from its child (Snapshot.check_early)."""
    if early is not None and [procfs.shape(line) for line in procfs.plain_maps(pid)] == \
            [procfs.shape(line) for line in early]:
        status = procfs.status_fields(f"/proc/{pid}/status")
        if int(status.get("VmLck", "0 kB").split()[0]) == procfs.locked_kib(early):
            return early
    return procfs.maps(pid)


def add_later_pages(vmas, pid):
    """The dumped page runs of the VMAs capture_mm(pages=False) left for later (its Mm's
    `source.later`), read now from the pagemap of `pid` (the process, still stopped, or
    its copy-on-write child) and added to the VMAs' pages."""
    runs = []
    if not vmas:
        return runs
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for vma in vmas:
            table = procfs.WRITTEN_FILE_PAGES if vma.kind == "file" else procfs.ANON_PAGES
            vma_runs = procfs.page_runs(fd, vma.start, vma.end, table)
            for first, stop in vma_runs:
                vma.pages.add_run(range(first, stop, PAGE_SIZE), first)
            runs += vma_runs
    finally:
        os.close(fd)
    return runs


def vma_kind(line):
    """Vma.kind for a maps line, None for areas not saved; UnsupportedVma for the rest."""
    name = line.name
    if name in SKIPPED:
        return None
    if line.vm_flags & (VmFlags.VM_IO | VmFlags.VM_PFNMAP):
        raise UnsupportedVma(f"{_where(line)}: device memory (VM_IO/VM_PFNMAP)")
    if line.vm_flags & VmFlags.VM_HUGETLB:
        raise UnsupportedVma(f"{_where(line)}: hugetlbfs pages")
    if name == "[vdso]":
        return "vdso"
    if line.shared:
        # Shared memory without a file of its own: /dev/zero (deleted), SYSV segments,
        # memfd and other unlinked files. Their pages exist only in memory: save them.
        if name.endswith(" (deleted)") or name.startswith("[anon_shmem:"):
            return "shm-anon"
        if name.startswith("/"):
            return "shm-file"
    elif name in ("", "[heap]", "[stack]") or name.startswith("[anon:"):
        return "anon"
    elif name.startswith("/"):
        return "file"
    raise UnsupportedVma(f"{_where(line)}: a special mapping crfs does not know")


def _where(line):
    return f"VMA {line.start:#x}-{line.end:#x} {line.name}".rstrip()


def capture_vma(line, kind, pagemap_fd, segments):
    """(Vma, its page runs); the runs' addresses are the pages' "offsets" in the source."""
    is_file = kind in ("file", "shm-file", "shm-anon")
    vma = Vma(start=line.start, end=line.end, vm_flags=line.vm_flags,
              prot=page_prot(line.perms), pgoff=line.offset // PAGE_SIZE, kind=kind,
              file=line.name if is_file else None)
    runs = vma_runs(line, kind, pagemap_fd)
    for first, stop in runs:
        vma.pages.add_run(range(first, stop, PAGE_SIZE), first)
    if kind == "shm-anon":
        vma.shm = _segment(segments, line, runs)
    return vma, runs


def vma_runs(line, kind, pagemap_fd):
    if pagemap_fd is None:
        return []                           # left for later (capture_mm)
    if kind == "vdso":
        return [(line.start, line.end)]     # kernel pages: never "present" as anon pages
    if kind == "shm-file":
        return []                           # the file holds them
    table = procfs.WRITTEN_FILE_PAGES if kind == "file" else procfs.ANON_PAGES
    return procfs.page_runs(pagemap_fd, line.start, line.end, table)


def _segment(segments, line, runs):
    """The ShmSegment of a shared anonymous VMA: the first VMA mapping it (in the order the
    image is written) gives its pages, keyed by their offset in the segment."""
    base = line.offset - line.start
    size = line.offset + line.end - line.start
    segment = segments.get((line.dev, line.inode))
    if segment is None:
        segment = segments[(line.dev, line.inode)] = ShmSegment(len(segments) + 1, size)
        for first, stop in runs:
            segment.pages.add_run(range(base + first, base + stop, PAGE_SIZE), first)
    segment.size = max(segment.size, size)
    return segment


def page_prot(perms):
    """vm_page_prot as x86_64's protection_map gives it for these permissions."""
    readable, writable, executable, shared = (perms[0] == "r", perms[1] == "w",
                                              perms[2] == "x", perms[3] == "s")
    if not (readable or writable or executable):
        return PAGE_PROTNONE | PAGE_ACCESSED
    prot = PAGE_PRESENT | PAGE_USER | PAGE_ACCESSED
    if writable and shared:
        prot |= PAGE_RW           # private writable pages are copy-on-write: read-only
    if not executable:
        prot |= PAGE_NX
    return prot


# ----------------------------------------------------------------------------- header

def _header(tasks, now):
    uname = os.uname()
    auxv_words = max((2 * len(t.mm.auxv) for t in tasks if t.mm and t.mm.auxv), default=0)
    return {"release": uname.release[:64], "version": uname.version[:64],
            "machine": uname.machine[:64], "kernel": kernel_text(uname.release),
            "time": now, "at_vector_size": max(AT_VECTOR_SIZE_MIN, auxv_words)}


