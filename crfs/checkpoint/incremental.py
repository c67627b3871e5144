"""`crfs checkpoint --parent IMG` and `--track`: incremental images (crfs/model/chain.py).

Plan.apply() turns the captured image of the stopped processes into a child of IMG when
the processes' dirty-page tracking was (re)started by IMG itself: the private pages written
since are kept, the others listed in CRFS_HDR_PARENT_PAGES. Otherwise (no tracking yet, or
it was restarted by another checkpoint since) the image stays complete, and a note says so.
Plan.finish(), once the image is in place and while the processes are still stopped,
restarts tracking and records that this image did (crfs/checkpoint/tracking.py).
"""

import errno
import hashlib
import os

from crfs.checkpoint import inject, tracking
from crfs.checkpoint.memory import ProcessMemory
from crfs.errors import CheckpointError
from crfs.formats.x86 import PAGE_SIZE
from crfs.model import chain
from crfs.model.image import ParentRef
from crfs.model.pages import PageMap

PRIVATE_KINDS = ("anon", "file")


class HashingFile:
    """A binary file whose bytes written are also hashed (SHA-256): in the writer thread."""

    def __init__(self, file):
        self.file = file
        self.sha256 = hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.file.write(data)

    def close(self):
        self.file.close()


class Plan:
    def __init__(self, parent, directory, fmt):
        self.method = tracking.method()
        if self.method is None:
            raise tracking.NoTracking()
        if fmt != "ckpt":
            raise CheckpointError(f"incremental checkpoints are ckpt images, not {fmt}",
                                  errno.EINVAL)
        self.parent = None
        if parent is not None:
            parent = os.path.abspath(parent)
            if not os.path.isfile(parent):
                raise CheckpointError(f"parent image {parent}: not a file", errno.ENOENT)
            if os.path.realpath(os.path.dirname(parent)) != os.path.realpath(directory):
                raise CheckpointError(f"parent image {parent}: an incremental image must be "
                                      f"written in its parent's directory", errno.EINVAL)
            self.parent = parent
        self.states = {}
        self.incremental = False
        self.note = None
        self.file = None
        self.parent_pages = 0

    def wrap(self, file):
        self.file = HashingFile(file)
        return self.file

    def apply(self, image, freezer):
        """Make `image` a child of the parent when tracking allows (see module doc)."""
        if self.method == tracking.PAGEMAP_SCAN_METHOD:
            for pid, mm in _mms(image):
                _drop_markers(pid, mm)
        self.states = {pid: tracking.load_state(pid) for pid in freezer.processes}
        for pid in self.states:
            tracking.drop_state(pid)       # until finish(): a failure leaves no stale state
        if self.parent is None:
            return
        root = next(iter(self.states))
        if not all(tracking.started_at(s, self.parent) for s in self.states.values()):
            self.note = (f"pid {root}: no page tracking since {os.path.basename(self.parent)}"
                         f"; wrote a full image (tracking starts now)")
            return
        for pid, mm in _mms(image):
            self.parent_pages += _make_child(pid, mm, self.method)
        state = self.states[root]
        image.parent = ParentRef(name=os.path.basename(self.parent), size=state["size"],
                                 sha256=bytes.fromhex(state["sha256"]), tracking=self.method)
        self.incremental = True

    def reset(self, image, freezer):
        """Restart tracking, at the instant the image is of (the processes are stopped)."""
        mms = dict(_mms(image))
        self.extra = {}
        for pid in freezer.processes:
            injector = inject.Injector(pid, mms[pid], freezer.signals)
            self.extra[pid] = tracking.reset(pid, self.method, mms[pid], injector, pid,
                                             self.states[pid])

    def finish(self, path):
        """Record that the image now at `path` restarted tracking."""
        digest = self.file.sha256.hexdigest()
        identity = tracking.image_identity(path)
        for pid, extra in self.extra.items():
            tracking.save_state(pid, {**identity, "sha256": digest, "method": self.method,
                                      **extra})
        chain.remember_digest(path, bytes.fromhex(digest))


def _mms(image):
    seen = {}
    for task in image.tasks:
        if task.mm is not None:
            seen.setdefault(task.tgid, task.mm)
    return list(seen.items())


def _make_child(pid, mm, method):
    """Keep only the written private pages of `mm`; the count of pages left to the parent."""
    private = []
    for vma in mm.vmas:
        if vma.kind in PRIVATE_KINDS:
            private += [(a, a + n * PAGE_SIZE) for a, n, _, _ in vma.pages.runs()]
    written = tracking.written(pid, method, private)
    from_parent = tracking.subtract(private, written)
    _keep(pid, mm, tracking.subtract(mm.source.runs, from_parent), PRIVATE_KINDS)
    mm.parent_runs = [(lo, (hi - lo) // PAGE_SIZE) for lo, hi in from_parent]
    return sum(n for _, n in mm.parent_runs)


def _drop_markers(pid, mm):
    """Leave out of anonymous VMAs the uffd-wp markers pagemap shows as swapped pages."""
    anon = []
    for vma in mm.vmas:
        if vma.kind == "anon":
            anon += [(a, a + n * PAGE_SIZE) for a, n, _, _ in vma.pages.runs()]
    found = tracking.markers(pid, anon)
    if found:
        _keep(pid, mm, tracking.subtract(mm.source.runs, found), ("anon",))


def _keep(pid, mm, keep, kinds):
    """Only the pages of `keep` (ascending runs) in the VMAs of `kinds` and the source."""
    for vma in mm.vmas:
        if vma.kind in kinds:
            pages = PageMap()
            for lo, hi in tracking.intersect(keep, [(vma.start, vma.end)]):
                pages.add_run(range(lo, hi, PAGE_SIZE), lo)
            vma.pages = pages
    on_read = mm.source.on_read
    mm.source.close()
    mm.source = ProcessMemory(pid, keep, on_read)
