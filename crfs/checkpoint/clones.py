"""The copy-on-write clone of a stopped process that snapshot checkpoints read: made by one
injected clone(CLONE_FS | CLONE_FILES | CLONE_SYSVSEM, exit signal 0) in one of its threads
(inject.py), attached to crfs from its creation (PTRACE_O_TRACECLONE) so that it never
runs; later killed, and reaped by its parent with one injected waitid() (snapshot.py says
why). Used by snapshot.py (crfs writes the image) and via_kernel.py (CRFS_IOC_SNAPSHOT):
light to import, so that the module's path imports none of the userspace writer.
"""

import ctypes
import errno
import os
import signal

from crfs.checkpoint import inject, procfs, ptrace

CLONE_FS = 0x200
CLONE_FILES = 0x400
CLONE_SYSVSEM = 0x40000
CLONE_FLAGS = CLONE_FS | CLONE_FILES | CLONE_SYSVSEM          # exit signal 0
SYS_CLONE = 56
SYS_WAITID = 247
P_PID = 1
WEXITED = 4
WALL = 0x40000000
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACECLONE = 8

_libc = ctypes.CDLL(None, use_errno=True)


def kernel_clones(freezer):
    """{pid: clone} for CRFS_IOC_SNAPSHOT (via_kernel.py): a copy-on-write clone of each
    process `freezer` holds, made as snapshot.Snapshot.take() makes them; a process that cannot make one is
    left out (the module writes all its memory while it is stopped)."""
    clones = {}
    for pid in freezer.processes:
        try:
            child = make_clone(pid, _VdsoOnly(pid), freezer)
        except OSError:
            child = None           # a thread exited meanwhile: no snapshot of it
        if child:
            clones[pid] = child
    return clones


def end_kernel_clones(clones, freezer):
    """Kill each clone of kernel_clones(), wait for it, and have its process, which
    `freezer` still holds, reap it (the module keeps the clone's memory)."""
    for pid, child in clones.items():
        try:
            os.kill(child, signal.SIGKILL)
            ptrace.wait_status(child)
        except OSError:
            pass
        try:
            reap(pid, child, _VdsoOnly(pid), freezer)
        except OSError:
            pass                   # it exited: nothing left to reap in it


class _VdsoOnly:
    """What inject.Injector.syscall() needs of a captured Mm: its [vdso]."""

    def __init__(self, pid):
        self.vmas = [_Vma(line.start, line.end) for line in procfs.plain_maps(pid)
                     if line.name == "[vdso]"]


class _Vma:
    kind = "vdso"

    def __init__(self, start, end):
        self.start = start
        self.size = end - start


def make_clone(pid, mm, freezer):
    """The pid of a stopped copy-on-write child of process `pid`, or None."""
    injector = inject.Injector(pid, mm, freezer.signals)
    for tid in freezer.processes[pid]:
        regs = ptrace.get_regs(tid)
        # keeping the seize's PTRACE_O_SUSPEND_SECCOMP: strict mode would kill it for clone()
        options = freezer.options.get(tid, 0)
        set_options(tid, options | PTRACE_O_TRACECLONE)
        try:
            # None: the syscall did not run here (a signal came first, a 32-bit or held
            # thread, see inject): no child, try another thread
            child = injector.syscall(tid, regs, SYS_CLONE, (CLONE_FLAGS, 0, 0, 0, 0))
        finally:
            set_options(tid, options)
        if child is None:
            continue
        if child <= 0:
            return None
        ptrace.wait_status(child)          # its first stop: it has run nothing
        return child
    return None


def set_options(tid, options):
    if _libc.ptrace(PTRACE_SETOPTIONS, tid, 0, options) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def reap(pid, child, mm, freezer):
    """One injected waitid(P_PID, child, NULL, WEXITED | __WALL) in a stopped thread."""
    injector = inject.Injector(pid, mm, freezer.signals)
    for tid in freezer.processes.get(pid, ()):
        result = injector.syscall(tid, ptrace.get_regs(tid), SYS_WAITID,
                                  (P_PID, child, 0, WEXITED | WALL, 0))
        if result is not None and result in (0, -errno.ECHILD):
            return
