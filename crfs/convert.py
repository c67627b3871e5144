"""`crfs convert SRC -o DST --format FMT`: any image crfs reads (a CRIU dump directory or
tar archive too) written in one of the formats crfs writes.

The image is indexed, fitted to the format as a checkpoint would be (crfs.checkpoint.fit),
and streamed to a temporary name next to DST (pages are read from the source as they are
written, never all at once), renamed when complete. Areas no format stores are left out as
a checkpoint leaves them out ([vvar], [vsyscall]); shared anonymous memory a CRIU dump
keeps apart (not read by crfs) is refused rather than written as zeros, and so is a CRIU
dump's SysV shared memory (crfs.ko restores none), naming the image and the entry. An fd
on the namespace its task is in is written to be reopened in the restarted task's own.
"""

import os
import re
import sys
import tempfile
import threading

from crfs.errors import Unsupported
from crfs.formats.x86 import PAGE_SIZE
from crfs.model import registry

NOT_SAVED = ("vvar", "ignore")


def prepare(image):
    """Drop what no format saves; Unsupported for what the model lacks the bytes of, and
    for a CRIU dump's SysV shared memory (crfs.ko does not restore it)."""
    for mm in image.mms():
        mm.vmas = [v for v in mm.vmas if v.kind not in NOT_SAVED]
        for vma in mm.vmas:
            if vma.kind == "shm-anon" and vma.shm is None:
                raise Unsupported(f"shared anonymous mapping {vma.start:#x}-{vma.end:#x}: "
                                  f"its pages are not read from this image")
            sysv = getattr(vma.native, "sysv", None)
            if vma.kind == "shm-ipc" and sysv:
                raise Unsupported(f"{sysv}, mapped at {vma.start:#x}-{vma.end:#x}: crfs.ko "
                                  f"does not restore SysV shared memory")
    _refuse_sysv(image)
    _own_namespace_fds(image)


# What a CRIU dump's fd on a namespace file links to: "net:criu[2]" (criu's id).
_CRIU_NS_LINK = re.compile(r"([a-z]+):criu\[([0-9]+)\]")


def _own_namespace_fds(image):
    """A CRIU dump's fds on namespace files, which criu names by its own id, not by inode:
    an fd on the namespace its task is in becomes "TYPE:[0]", which crfs.ko reopens as the
    restarted task's own namespace of that type, as criu's restore does (crfs restores no
    namespace); an fd on any other namespace is refused."""
    holders = {}
    for task, fd in _process_fds(image):
        if fd.file.kind == "file" and _CRIU_NS_LINK.fullmatch(fd.file.path or ""):
            holders.setdefault(id(fd.file), (fd.file, []))[1].append((task, fd.fd))
    for file, fds in holders.values():
        ns_type = _CRIU_NS_LINK.fullmatch(file.path).group(1)
        for task, fd in fds:
            if (task.namespaces or {}).get(ns_type) != file.path:
                raise Unsupported(f"fd {fd} of task {task.pid}: {file.path}: a namespace "
                                  f"the task is not in; crfs.ko restores no namespace")
        file.path = f"{ns_type}:[0]"


def inet_notes(image):
    """A line per inet socket fd of a CRIU dump: written as crfs's checkpoints write them
    (CRFS_FILE_OPAQUE), which crfs.ko restores only as an fd handed in (crfs-restart -i)."""
    from crfs import render_ns
    lines = []
    for task, fd in _process_fds(image):
        sk = fd.file.inet
        if sk is not None and sk.where:
            name = {render_ns.IPPROTO_TCP: "TCP", render_ns.IPPROTO_UDP: "UDP"}.get(
                sk.proto, f"protocol {sk.proto}")
            lines.append(f"{sk.where}: {name} socket:[{sk.ino}] (port {sk.src_port}), "
                         f"fd {fd.fd} of {task.pid}: written opaque; crfs.ko restores "
                         f"it only handed in (crfs-restart -i {fd.fd}=...)")
    return lines


def _process_fds(image):
    """(task, Fd) of each fd of each process (its threads share its table: once)."""
    for task in image.tasks:
        if task.pid == task.tgid and task.files is not None:
            for fd in task.files.fds:
                yield task, fd


def _refuse_sysv(image):
    """A CRIU dump of an IPC namespace with SysV segments (ipcns-shm-ID.img): refused,
    naming the first segment, as crfs.ko restores no SysV IPC (docs/kmod.md)."""
    for task in image.tasks:
        if task.ipc is not None and task.ipc.shms:
            shm = task.ipc.shms[0]
            raise Unsupported(f"{shm.where}: SysV shm segment {shm.shmid} (key {shm.key:#x}, "
                              f"{shm.size} bytes) of task {task.pid}'s IPC namespace: "
                              f"crfs.ko does not restore SysV shared memory")


def convert(src, dst, fmt, progress=None, notes=None):
    """Write the image at `src` as `dst` in format `fmt`; returns dst. `progress(done,
    total)`: bytes written so far against the bytes of the dumped pages, polled. `notes`:
    a list given gets a line for each fd written opaque that a restart needs handed in."""
    from crfs.checkpoint.fit import fit
    image = registry.open_image(src)
    try:
        prepare(image)
        if notes is not None:
            notes += inet_notes(image)
        options = fit(image, fmt)
        directory = os.path.dirname(os.path.abspath(dst))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".crfs-convert-")
        try:
            with os.fdopen(fd, "wb") as out, _Poll(fd, _page_bytes(image), progress):
                registry.dump(image, out, fmt, **options)
                out.flush()         # before the last report
            os.rename(tmp, dst)
        except BaseException:
            os.unlink(tmp)
            raise
    finally:
        image.close()
    return dst


def _page_bytes(image):
    return sum(len(vma.pages) for mm in image.mms() for vma in mm.vmas) * PAGE_SIZE


class _Poll:
    """Calls progress(size of fd's file, total) every INTERVAL seconds from a thread while
    the writer runs (writers copy pages with copy_file_range too: a write count would miss
    them), then once with the final size."""

    INTERVAL = 0.2

    def __init__(self, fd, total, progress):
        self.fd, self.total, self.progress = fd, total, progress
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        if self.progress:
            self.thread.start()
        return self

    def run(self):
        while not self.done.wait(self.INTERVAL):
            self.report()

    def report(self):
        size = os.fstat(self.fd).st_size
        self.progress(size, max(self.total, size))

    def __exit__(self, *exc):
        if self.progress:
            self.done.set()
            self.thread.join()
            if exc[0] is None:
                self.report()


def cmd_convert(args):
    from crfs.checkpoint.progress import TerminalProgress
    progress = TerminalProgress("crfs convert")     # on a terminal, after a second
    notes = []
    try:
        print(convert(args.image, args.output, args.format, progress, notes))
    finally:
        progress.finish()
    for line in notes:
        print(f"crfs convert: note: {line}", file=sys.stderr)
    return 0


def add_parser(sub):
    text = "write an image (a CRIU dump too) in one of the formats crfs writes"
    p = sub.add_parser("convert", help=text, description=text)
    p.add_argument("image", metavar="SRC", help="image file, CRIU dump directory or tar")
    p.add_argument("-o", "--output", metavar="DST", required=True, help="image file to write")
    p.add_argument("--format", choices=tuple(registry.FORMATS), default=registry.DEFAULT_FORMAT,
                   help="format to write (default %(default)s)")
    p.set_defaults(func=cmd_convert)
    return p
