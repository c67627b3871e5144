"""The image written by the crfs module: `crfs checkpoint --via kernel` (CRFS_IOC_CHECKPOINT).

The processes are stopped with ptrace exactly as for the userspace writer (crfs.checkpoint.
freezer); then this thread, their ptracer, hands /dev/crfs the pid (with --tree, the
CRFS_CHECKPOINT_TREE flag) and a temporary output file, and the module writes the ckpt
image of the stopped tasks itself (registers, FPU state, memory through
get_user_pages_remote), in the order the userspace writer uses. The temporary file is then
placed as usual.

The module writes 64-bit processes, their threads and (tree) their descendants, in the ckpt
format only. With via="auto" everything else (no /dev/crfs, not root, a module without the
call, another format, a task it refuses) falls back to the userspace writer; with
via="kernel" it is an error.
"""

import errno
import os
import time
from types import SimpleNamespace

from crfs import kernel
from crfs.checkpoint import procfs
from crfs.errors import CheckpointError
from crfs.store_paths import temp_file

VIA = ("auto", "kernel", "ptrace")
DEFAULT_VIA = "auto"     # of the API, the CLI and the control file alike: use a loaded module
# errors after which "auto" uses the userspace writer instead
FALLBACK_ERRNOS = (errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOENT, errno.ENODEV, errno.ENXIO,
                   errno.EACCES, errno.EPERM)


class Unusable(CheckpointError):
    """The module cannot write this checkpoint (its errno says whether "auto" may fall
    back to the userspace writer); apart from the output's errors, which are not this."""


def check(fmt, device=kernel.DEVICE):
    """Unusable when the in-kernel writer cannot be used before anything is stopped."""
    if fmt != "ckpt":
        raise Unusable(f"the kernel writes the ckpt format only, not {fmt}", errno.EOPNOTSUPP)
    if not kernel.available(device):
        raise Unusable(f"{device} does not exist (load crfs.ko)", errno.ENODEV)


def write(pid, directory, place, tree=False, device=kernel.DEVICE):
    """Have the module write the image of `pid` (with `tree`, and of its descendants; all
    stopped by this thread with crfs.checkpoint.freezer) into a hidden temp file in `directory`, then
    `place(summary, tmp)` it; its result. The summary has what store_name() names the image
    by: its time and its root task (pid, comm). Unusable when the module refuses; OSError
    for the output."""
    summary = SimpleNamespace(time=int(time.time()), tasks=[SimpleNamespace(
        pid=pid, comm=procfs.read_text(f"/proc/{pid}/comm").rstrip("\n"))])
    try:
        dev = kernel.Device(device)
    except OSError as exc:
        raise Unusable(f"cannot open {device}: {exc.strerror}", exc.errno) from exc
    try:
        fd, tmp = temp_file(directory, "checkpoint")
    except OSError:
        dev.close()
        raise
    try:
        try:
            dev.checkpoint(pid, fd, tree=tree)
        except kernel.KernelError as exc:
            raise Unusable(f"pid {pid}: the kernel module: {exc.strerror}", exc.errno) \
                from exc
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
