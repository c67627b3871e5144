"""The image written by the crfs module: `crfs checkpoint --via kernel` (CRFS_IOC_SNAPSHOT,
CRFS_IOC_CHECKPOINT).

The processes are stopped with ptrace exactly as for the userspace writer (crfs.checkpoint.
freezer); then this thread, their ptracer, hands /dev/crfs the pid (with --tree, the
CRFS_CHECKPOINT_TREE flag) and a temporary output file, and the module writes the ckpt
image of the stopped tasks itself (registers, FPU state, memory through
get_user_pages_remote), in the order the userspace writer uses. The temporary file is then
placed as usual.

Unless the processes are to be killed or kept stopped for the whole write (`--stop`), the
checkpoint is a snapshot (CRFS_IOC_SNAPSHOT): each process makes a copy-on-write clone
(crfs.checkpoint.clones), the module writes what only the stopped processes can tell and
says so through an eventfd, this thread ends the clones and lets the processes go, and the
module, in another thread, writes their private memory from the clones' (docs/kmod.md).

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


def write(pid, directory, place, tree=False, device=kernel.DEVICE, progress=None,
          report=None, snapshot=None, after="detach"):
    """Have the module write the image of `pid` (with `tree`, and of its descendants; all
    stopped by this thread with crfs.checkpoint.freezer) into a hidden temp file in `directory`, then
    `place(summary, tmp)` it; its result. The summary has what store_name() names the image
    by: its time and its root task (pid, comm). `progress(bytes written so far)` is called
    every WATCH_INTERVAL seconds while the module writes; `report["image_bytes"]` receives
    the image's size. With `snapshot`, the Freezer holding the processes, a snapshot: the
    processes are let go (`snapshot.thaw(after)`) once the module allows it, and
    `report["resumed"]` is the time.monotonic() of that. Unusable when the module refuses
    before; CheckpointError for a failure after the processes were let go; OSError for the
    output."""
    report = {} if report is None else report
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
            with _Watch(fd, progress):
                if snapshot is None:
                    written = dev.checkpoint(pid, fd, tree=tree)
                else:
                    written = _snapshot(dev, pid, fd, tree, snapshot, after, report)
        except kernel.KernelError as exc:
            message = f"pid {pid}: the kernel module: {exc.strerror}"
            if "resumed" in report:
                raise CheckpointError(message, exc.errno) from exc
            raise Unusable(message, exc.errno) from exc
        finally:
            dev.close()
        os.close(fd)
        fd = None
        report["image_bytes"] = written
        return place(summary, tmp)
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_snapshot():
    """Import what a snapshot needs (crfs.checkpoint.clones, inject, threading) before
    anything is stopped: importing while the processes are stopped would lengthen their
    stop (seconds under TCG). Not at this module's import: the path that takes no
    snapshot stays lean (tests/test_lean_imports.py)."""
    import select  # noqa: F401
    import threading  # noqa: F401

    from crfs.checkpoint import clones  # noqa: F401


def _snapshot(dev, pid, fd, tree, freezer, after, report):
    """CRFS_IOC_SNAPSHOT into `fd`, the ioctl in a second thread: this one, the processes'
    tracer, ends the clones and thaws `freezer` once the module says the processes may
    run on. Without a clone, or with a module without SNAPSHOT, CRFS_IOC_CHECKPOINT."""
    import select
    import threading

    from crfs.checkpoint import clones as clones_module
    clones = clones_module.kernel_clones(freezer)
    if not clones:
        return dev.checkpoint(pid, fd, tree=tree)
    resume = os.eventfd(0, os.EFD_CLOEXEC)
    spool = os.memfd_create("crfs-spool", os.MFD_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    outcome = {}

    def run():
        try:
            outcome["written"] = dev.snapshot(pid, fd, clones, resume, spool, tree)
        except BaseException as exc:     # noqa: BLE001 - raised again in the caller
            outcome["error"] = exc
        finally:
            os.write(done_w, b"x")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if resume in select.select([resume, done_r], [], [])[0]:
            clones_module.end_kernel_clones(clones, freezer)
            report["resumed"] = time.monotonic()
            freezer.thaw(after)
    finally:
        thread.join()
        if "resumed" not in report:
            clones_module.end_kernel_clones(clones, freezer)
        for end in (resume, spool, done_r, done_w):
            os.close(end)
    error = outcome.get("error")
    if (isinstance(error, kernel.KernelError) and error.errno == errno.ENOTTY
            and "resumed" not in report):
        return dev.checkpoint(pid, fd, tree=tree)      # a module without SNAPSHOT
    if error is not None:
        raise error
    return outcome["written"]


WATCH_INTERVAL = 0.2     # seconds between looks at the growing image


class _Watch:
    """While the module writes into `fd` (one ioctl, which releases the GIL), a thread
    reports the file's size to `progress` every WATCH_INTERVAL; nothing without one (and
    threading is not imported: the kernel path's start-up)."""

    def __init__(self, fd, progress):
        self.fd = fd
        self.progress = progress
        self.thread = self.stop = None

    def __enter__(self):
        if self.progress is not None:
            import threading
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self.stop.wait(WATCH_INTERVAL):
            self.progress(os.fstat(self.fd).st_size)

    def __exit__(self, *exc):
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
