"""checkpoint(): stop a process (tree), write its image from the stopped memory, let it go.

The image is written to a hidden temporary file next to its destination and renamed into
place when complete, so a reader of that directory (a mounted crfs store) never sees half
an image. On any failure the processes are detached unchanged and nothing is left behind.
"""

import errno
import os
import re
import time

from crfs.checkpoint import procfs, via_kernel
from crfs.checkpoint.freezer import AFTER, Freezer
from crfs.errors import CheckpointError, ProcessGone, Unsupported
from crfs.model import registry
from crfs.store_paths import temp_file

# The userspace writer's modules (capture, snapshot, the model, construct ...) are imported
# by _writer(), before anything is stopped, only when crfs writes the image itself (or,
# rarely, once the kernel module refused it): `--via kernel` (the guest's `crfs
# checkpoint`) imports none of them (issue #13, start-up under TCG).

MAX_NAME_TRIES = 100


def checkpoint(pid, out_path, fmt=registry.DEFAULT_FORMAT, tree=False, after="detach",
               progress=None, via=via_kernel.DEFAULT_VIA, parent=None, track=False,
               report=None, stop=False):
    """Checkpoint process `pid` (with `tree`, and its descendants) into `out_path`
    (replaced if it exists). `after`: "detach" (it goes on), "stop" (left stopped,
    SIGCONT resumes it) or "kill". `progress(done_bytes, total_bytes)` is called as the
    memory is read (as the module writes, with total 0: not known). `via`: "ptrace" (this
    process reads and writes everything), "kernel" (the crfs module writes the image of
    the stopped process, see via_kernel) or "auto" (the module when it can, the
    default). Returns the path written (a pathlib.Path);
    CheckpointError on failure. `parent`: an image of the same process(es) in the same
    directory: write only the pages written since (crfs.checkpoint.incremental); `track`:
    start tracking written pages for a later --parent. `report` (a dict) receives what
    was done. The processes are stopped only while a copy-on-write snapshot is taken
    (crfs.checkpoint.snapshot), unless `stop` (or after="kill") or the module writes the
    image: then for the whole write."""
    from pathlib import Path
    return Path(checkpoint_file(pid, out_path, fmt, tree, after, progress, via, parent,
                                track, report, stop))


def checkpoint_into_store(pid, store_dir, fmt=registry.DEFAULT_FORMAT, tree=False,
                          after="detach", progress=None, via=via_kernel.DEFAULT_VIA,
                          parent=None, track=False, report=None, stop=False):
    """As checkpoint(), into directory `store_dir` as <comm>-<pid>-<UTC time>.<fmt>; an
    existing image is never replaced (a suffix -1, -2 ... is added)."""
    from pathlib import Path
    return Path(checkpoint_into_store_file(pid, store_dir, fmt, tree, after, progress, via,
                                           parent, track, report, stop))


# The same two returning the path as the str of its pathlib.Path, for `crfs checkpoint`:
# pathlib imports ntpath (which fails to import nt five times, a search of sys.path each),
# urllib.parse and ipaddress, the largest part of the kernel path's start-up (issue #13).

def checkpoint_file(pid, out_path, fmt=registry.DEFAULT_FORMAT, tree=False,
                    after="detach", progress=None, via=via_kernel.DEFAULT_VIA, parent=None,
                    track=False, report=None, stop=False):
    """checkpoint(), the path it returns as a str."""
    out_path = posix_path(out_path)
    return _checkpoint(pid, fmt, tree, after, progress,
                       lambda image, tmp: _replace(tmp, out_path), parent_dir(out_path),
                       via, parent, track, report, stop)


def checkpoint_into_store_file(pid, store_dir, fmt=registry.DEFAULT_FORMAT, tree=False,
                               after="detach", progress=None, via=via_kernel.DEFAULT_VIA,
                               parent=None, track=False, report=None, stop=False):
    """checkpoint_into_store(), the path it returns as a str."""
    store_dir = posix_path(store_dir)
    return _checkpoint(pid, fmt, tree, after, progress,
                       lambda image, tmp: _link_new(tmp, store_dir, store_name(image, fmt)),
                       store_dir, via, parent, track, report, stop)


def posix_path(path):
    """str(pathlib.PurePosixPath(path)): empty and "." parts dropped, a leading "//" kept
    (POSIX leaves it to the system), "." for nothing."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"expected str or os.PathLike returning str, not {type(text).__name__}")
    root = "//" if text.startswith("//") and not text.startswith("///") else \
        "/" if text.startswith("/") else ""
    return root + "/".join(p for p in text.split("/") if p and p != ".") or "."


def parent_dir(path):
    """pathlib's .parent of a posix_path()."""
    return os.path.dirname(path) or "."


def join_path(directory, name):
    """pathlib's `directory / name` of a posix_path() and a plain name."""
    if directory == ".":
        return name
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


def store_name(image, fmt):
    root = image.tasks[0]
    comm = re.sub(r"[^A-Za-z0-9._+-]", "_", root.comm).lstrip(".") or "task"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(image.time))
    return f"{comm}-{root.pid}-{stamp}{registry.get(fmt).extension}"


def _checkpoint(*args, **options):
    """One checkpoint; again, reading every VmFlags while stopped, in the rare case the
    flags read before the freeze were not the snapshot's (Snapshot.check_early)."""
    try:
        return _checkpoint_once(*args, **options)
    except procfs.FlagsChanged:
        return _checkpoint_once(*args, **options, early=False)


def _checkpoint_once(pid, fmt, tree, after, progress, place, directory, via, parent=None,
                     track=False, report=None, stop=False, early=True):
    _check_arguments(pid, fmt, after)
    if not os.access(directory, os.W_OK | os.X_OK):   # before stopping anything
        raise CheckpointError(f"cannot write into {directory}: not a writable directory",
                              errno.EACCES)
    plan = None
    if parent is not None or track:
        from crfs.checkpoint.incremental import Plan    # its tracking, only when asked
        plan = Plan(parent, directory, fmt)
    in_kernel = plan is None and _in_kernel(via, fmt)
    writer = None if in_kernel else _writer(fmt)   # imported before anything is stopped
    report = {} if report is None else report
    freezer = Freezer()
    counter = _Progress(progress) if progress else None
    image = snap = None
    done = thawed = False
    snapshot = not stop and after != "kill"
    if in_kernel and snapshot:
        via_kernel.prepare_snapshot()              # before anything is stopped
    # A snapshot reads the signal handlers (which only ckpt stores) from its child once
    # the processes run again, and, without a parent image to compare with, the pages of
    # private memory; its VmFlags are read before the freeze (capture.early_maps).
    defer = snapshot and fmt == "ckpt"
    later = defer and plan is None
    began = time.monotonic()
    early = {pid: _early_maps(pid)} if later and early and not in_kernel else None
    start = time.monotonic() if early else began
    try:
        freezer.freeze(pid, tree)
        if in_kernel:
            path = _write_in_kernel(pid, tree, directory, place, via, progress, report,
                                    freezer if snapshot else None, after)
            if path is not None:
                now = time.monotonic()     # stopped from the freeze until now, or resumed
                resumed = report.pop("resumed", None)
                report.update(mode="kernel", snapshot=resumed is not None,
                              frozen=(resumed or now) - start, time=now - began)
                done = True
                return path
        capture, fit, snapshot_module = writer or _writer(fmt)
        # a snapshot's pipes are settled once the processes run again (settle_pipes)
        open_files = capture.file_registry() if snapshot else None
        image = capture.build_image(freezer, counter, handlers=not defer, pages=not later,
                                    early=early, open_files=open_files)
        if plan:
            plan.apply(image, freezer)
            plan.reset(image, freezer)
        options = fit.fit(image, fmt)
        report["mode"] = "stop"
        if snapshot:
            snap = snapshot_module.Snapshot()
            captured = set(freezer.processes)
            if snap.take(image, freezer):
                image.header["uflags"] = (image.header.get("uflags", 0)
                                          | snapshot_module.CRFS_UFLAG_SNAPSHOT)
                freezer.thaw(after)
                thawed = True
                report["mode"] = "snapshot"
            else:
                snap = None
                open_files.settle_pipes()          # still stopped: as build_image would
        if defer and snap is None:
            _read_later(image, freezer)            # still stopped: ask the processes
        report["frozen"] = time.monotonic() - start
        if snap is not None:
            snap.check_early()
            snap.add_later_pages()     # before any injection into the children
            snap.read_handlers(image)
            open_files.settle_pipes(captured | set(snap.children.values()))
        report["bytes"] = sum(end - first for mm in image.mms()
                              for first, end in mm.source.runs)
        if counter:
            counter.total = report["bytes"]
        path = _write(image, fmt, options, directory, place, plan.wrap if plan else None)
        if plan:
            plan.finish(path)
            report.update(parent=plan.parent if plan.incremental else None, note=plan.note,
                          parent_pages=plan.parent_pages, tracking=plan.method)
        now = time.monotonic()
        report["time"] = now - began
        if not thawed:
            report["frozen"] = now - start
        done = True
        return path
    except Unsupported as exc:     # what the process has and the format or crfs cannot save
        raise CheckpointError(f"pid {pid}: {exc}", exc.errno) from exc
    except CheckpointError:
        raise
    except OSError as exc:         # reading /proc or ptrace: most often the process went away
        raise _os_failure(pid, exc) from exc
    finally:
        _close_sources(image)
        if not thawed:
            freezer.thaw(after if done else "detach")
        if snap is not None:
            snap.release(after)


def _writer(fmt):
    """The userspace writer's modules (capture, fit, snapshot: with them the model and
    construct; and the image writer of `fmt`), imported when first needed: never by a
    checkpoint the kernel module writes."""
    from crfs.checkpoint import capture, fit, snapshot
    registry.writer(fmt)
    return capture, fit, snapshot


def _early_maps(pid):
    """procfs.maps(pid) before the freeze (None if it cannot be read: the freeze will say
    why)."""
    try:
        return procfs.maps(pid)
    except OSError:
        return None


def _flags(lines):
    return [(procfs.shape(line), line.vm_flags, line.dontfork) for line in lines]


def _read_later(image, freezer):
    """What build_image(handlers=False, pages=False) left out, read from the processes
    `freezer` still holds (as build_image would have): their private pages and their
    signal handlers."""
    from crfs.checkpoint import inject, signals
    from crfs.checkpoint.capture import add_later_pages
    from crfs.checkpoint.memory import ProcessMemory
    for mm in image.mms():
        source = mm.source
        early = getattr(source, "early", None)
        if early is not None and _flags(procfs.maps(source.pid)) != _flags(early):
            raise procfs.FlagsChanged(f"pid {source.pid}: VmFlags changed as it was "
                                      "stopped")
        added = add_later_pages(getattr(source, "later", []), source.pid)
        if added:
            source.close()
            mm.source = ProcessMemory(source.pid, sorted(source.runs + added),
                                      source.on_read)
    for pid in freezer.processes:
        tasks = [t for t in image.tasks if t.tgid == pid]
        mm = next((t.mm for t in tasks if t.mm is not None), None)
        injector = inject.Injector(pid, mm, freezer.signals)
        handlers = next((h for h in (signals.sighand(t.pid, injector) for t in tasks) if h),
                        None)
        signals.set_handlers(tasks, handlers)
        for task in tasks:      # a signal an injection dequeued is passed on at detach
            held = freezer.signals.get(task.pid, 0)
            if held:
                task.signals.pending.mask |= 1 << (held - 1)


def _check_arguments(pid, fmt, after):
    if fmt not in registry.FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; choose from "
                              f"{', '.join(registry.FORMATS)}", errno.EINVAL)
    if after not in AFTER:
        raise CheckpointError(f"after must be one of {', '.join(AFTER)}", errno.EINVAL)
    if not isinstance(pid, int) or pid <= 0:
        raise CheckpointError(f"not a pid: {pid!r}", errno.EINVAL)
    if pid == os.getpid():
        raise CheckpointError("crfs cannot checkpoint itself", errno.EINVAL)
    try:
        tgid = int(procfs.status_fields(f"/proc/{pid}/status")["Tgid"])
    except (OSError, KeyError, ValueError) as exc:
        raise ProcessGone(f"no process with pid {pid}") from exc
    if tgid != pid:
        raise CheckpointError(f"{pid} is a thread of process {tgid}: checkpoint {tgid}",
                              errno.EINVAL)


def _in_kernel(via, fmt):
    """Whether to try the module's writer (before anything is stopped)."""
    if via not in via_kernel.VIA:
        raise CheckpointError(f"via must be one of {', '.join(via_kernel.VIA)}", errno.EINVAL)
    if via == "ptrace":
        return False
    try:
        via_kernel.check(fmt)
    except via_kernel.Unusable as exc:
        if via == "kernel":
            raise CheckpointError(f"--via kernel: {exc}", exc.errno) from exc
        return False
    return True


def _write_in_kernel(pid, tree, directory, place, via, progress, report, snapshot, after):
    """The path the module's image was placed at, or None to use the userspace writer.
    `progress(done, 0)` as the image grows (its size is not known before). With
    `snapshot` (the Freezer), the processes are let go (`after`) once the module allows."""
    watch = (lambda done: progress(done, 0)) if progress else None
    try:
        return via_kernel.write(pid, directory, place, tree, progress=watch, report=report,
                                snapshot=snapshot, after=after)
    except via_kernel.Unusable as exc:
        if via == "kernel" or exc.errno not in via_kernel.FALLBACK_ERRNOS:
            raise
        return None


def _os_failure(pid, exc):
    """The CheckpointError for an OSError met while reading process `pid`."""
    if exc.errno == errno.ESRCH or isinstance(exc, FileNotFoundError):
        return ProcessGone(f"pid {pid} exited during the checkpoint")
    return CheckpointError(f"pid {pid}: {exc.strerror or exc}", exc.errno or errno.EIO)


class _Progress:
    """Counts the bytes the page sources read; reports (done, total) to the callback."""

    def __init__(self, callback):
        self.callback = callback
        self.done = 0
        self.total = 0

    def __call__(self, size):
        self.done += size
        self.callback(self.done, max(self.total, self.done))


def _write(image, fmt, options, directory, place, wrap=None):
    """Write into a hidden temp file in `directory`, then `place` it; the temp file is
    removed on any failure."""
    try:
        fd, tmp = temp_file(directory, "checkpoint")
    except OSError as exc:
        raise CheckpointError(f"cannot write into {directory}: {exc.strerror}",
                              exc.errno) from exc
    from crfs.checkpoint.output import BackgroundWriter
    file = os.fdopen(fd, "wb")
    out = BackgroundWriter(wrap(file) if wrap else file)
    try:
        try:
            registry.dump(image, out, fmt, **options)
        except BaseException:
            out.close(check=False)
            raise
        out.close()
        return place(image, tmp)
    except ValueError as exc:      # a value the format's fields cannot hold
        raise CheckpointError(f"cannot write {fmt}: {exc}", errno.EOVERFLOW) from exc
    except OSError as exc:         # the output (reading memory raises CheckpointErrors)
        raise CheckpointError(f"cannot write into {directory}: {exc.strerror}",
                              exc.errno or errno.EIO) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _replace(tmp, path):
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror}", exc.errno) from exc
    return path


def _link_new(tmp, directory, name):
    """Give the complete file `tmp` its name in the store without replacing any file."""
    stem, ext = os.path.splitext(name)
    for n in range(MAX_NAME_TRIES):
        path = join_path(directory, f"{stem}-{n}{ext}" if n else name)
        try:
            os.link(tmp, path)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CheckpointError(f"cannot write {path}: {exc.strerror}", exc.errno) from exc
        return path
    raise CheckpointError(f"{directory}: too many images named {name}", errno.EEXIST)


def _close_sources(image):
    if image is not None:
        for mm in image.mms():
            mm.source.close()
