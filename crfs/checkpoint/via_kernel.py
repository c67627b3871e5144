"""The image written by the crfs module: `crfs checkpoint --via kernel` (CRFS_IOC_CHECKPOINT).

The process is stopped with ptrace exactly as for the userspace writer (crfs.checkpoint.
freezer); then this thread, its ptracer, hands /dev/crfs the pid and a temporary output
file, and the module writes the ckpt image of the stopped task itself (registers, FPU state,
memory through get_user_pages_remote). The temporary file is then placed as usual.

The module writes one single-threaded 64-bit process, in the ckpt format only. With
via="auto" everything else (no /dev/crfs, not root, a module without the call, threads,
--tree, another format, a task it refuses) falls back to the userspace writer; with
via="kernel" it is an error.
"""

import errno
import os
import tempfile
import time
from types import SimpleNamespace

from crfs import kernel
from crfs.checkpoint import procfs
from crfs.fs.store import TEMP_PREFIX

VIA = ("auto", "kernel", "ptrace")
# errors after which "auto" uses the userspace writer instead
FALLBACK_ERRNOS = (errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOENT, errno.ENODEV, errno.ENXIO,
                   errno.EACCES, errno.EPERM)


class Unusable(Exception):
    """The module cannot write this checkpoint: why, and the errno to report."""

    def __init__(self, message, errno_value):
        super().__init__(message)
        self.errno = errno_value


def check(fmt, tree, device=kernel.DEVICE):
    """Unusable when the in-kernel writer cannot be used before anything is stopped."""
    if fmt != "ckpt":
        raise Unusable(f"the kernel writes the ckpt format only, not {fmt}", errno.EOPNOTSUPP)
    if tree:
        raise Unusable("the kernel checkpoints one process, not a tree", errno.EOPNOTSUPP)
    if not kernel.available(device):
        raise Unusable(f"{device} does not exist (load crfs.ko)", errno.ENODEV)


def write(freezer, pid, directory, place, device=kernel.DEVICE):
    """Have the module write the image of `pid` (stopped by `freezer`, from this thread)
    into a hidden temp file in `directory`, then `place(summary, tmp)` it; its result.
    Unusable when the module refuses; OSError for the output."""
    if len(freezer.processes.get(pid, ())) != 1:
        raise Unusable(f"pid {pid} has several threads: the kernel writes single-threaded "
                       "processes only", errno.EOPNOTSUPP)
    summary = SimpleNamespace(time=int(time.time()), tasks=[SimpleNamespace(
        pid=pid, comm=procfs.read_text(f"/proc/{pid}/comm").rstrip("\n"))])
    try:
        dev = kernel.Device(device)
    except OSError as exc:
        raise Unusable(f"cannot open {device}: {exc.strerror}", exc.errno) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}checkpoint-", dir=directory)
    except OSError:
        dev.close()
        raise
    try:
        try:
            dev.checkpoint(pid, fd)
        except kernel.KernelError as exc:
            raise Unusable(f"pid {pid}: the kernel module: {exc.strerror}", exc.errno) \
                from None
        finally:
            dev.close()
        os.close(fd)
        fd = None
        return place(summary, tmp)
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
