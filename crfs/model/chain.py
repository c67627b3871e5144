"""Incremental images: an image that holds only the pages written since its parent.

A child image (crfs checkpoint --parent, docs/checkpoint.md) is complete except for page
bytes: every task, register, VMA and other record is there, and so are the pages written
since the parent was taken. CRFS_HDR_PARENT names the parent (a file name in the child's own
directory), its size and the SHA-256 of its whole file; per address space,
CRFS_HDR_PARENT_PAGES lists the pages whose bytes are the parent's (present in the process
but not written since). A page in neither is not in the image (never touched, or dropped).

resolve() turns a loaded child into the image of the process at that point: each VMA's
PageMap holds its own pages and the parent's (which may come from the grandparent, ...), the
newest wins, and every Mm reads through a ChainSource over the files of the chain. A parent
that is missing, changed (another size or digest) or that lacks a page the child says it
holds is a FormatError naming it: that child shows `error`, nothing else does.

Why a whole-file digest: the chain must not silently mix a child with a parent rewritten
under the same name, and a header digest would not see pages that changed. The writer
computes it while writing (no extra read); readers pay one read of each parent per open.
"""

import errno
import hashlib
import os
import tempfile
from dataclasses import replace

from crfs.errors import FormatError
from crfs.formats.source import Source
from crfs.formats.x86 import PAGE_SIZE
from crfs.model.pages import PageMap

LEVEL = 1 << 48           # ChainSource offset = level * LEVEL + offset in that file
MAX_CHAIN = 64            # images in one chain
PRIVATE_KINDS = ("anon", "file")
HASH_CHUNK = 1 << 20
TRACKING_NAMES = {"CRFS_TRACKING_SOFT_DIRTY": "soft-dirty",
                  "CRFS_TRACKING_PAGEMAP_SCAN": "PAGEMAP_SCAN"}



class ChainError(FormatError):
    """An incremental image whose chain is broken: a parent missing, changed or short."""


_digests = {}             # (dev, ino, size, mtime_ns) -> sha256, for parents read already


class ChainSource:
    """pread over the files of a chain: level 0 is the child, 1 its parent, ..."""

    def __init__(self, sources):
        self.sources = sources
        self.path = sources[0].path
        self.size = sources[0].size
        self.fd = sources[0].fd

    def pread(self, offset, length):
        level, offset = divmod(offset, LEVEL)
        return self.sources[level].pread(offset, length)

    def readinto(self, buffer, offset):
        level, offset = divmod(offset, LEVEL)
        return self.sources[level].readinto(buffer, offset)

    def close(self):
        for source in self.sources:
            source.close()


def file_digest(fd):
    """SHA-256 of the whole file open as `fd` (cached by identity for parents)."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        offset = 0
        while True:
            data = os.pread(fd, HASH_CHUNK, offset)
            if not data:
                break
            h.update(data)
            offset += len(data)
        digest = _digests[key] = h.digest()
    return digest


def remember_digest(path, digest):
    """Record the digest a writer computed while writing `path` (saves a read later)."""
    st = os.stat(path)
    _digests[(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] = digest


def open_parent(ref, child_path):
    """The parent's Source, checked against `ref` (size and digest); FormatError naming it."""
    if child_path is None:
        raise ChainError(f"incremental image: parent {ref.name} cannot be found (the "
                         f"image has no path)")
    path = os.path.join(os.path.dirname(os.path.abspath(child_path)), ref.name)
    try:
        source = Source.open(path, follow_symlinks=False)
    except OSError as exc:
        why = "is missing" if exc.errno == errno.ENOENT else f"cannot be read: {exc.strerror}"
        raise ChainError(f"incremental image: its parent {ref.name} {why}") from None
    try:
        if source.size != ref.size:
            raise ChainError(f"incremental image: its parent {ref.name} changed "
                             f"({source.size} bytes, the image names one of {ref.size})")
        if file_digest(source.fd) != ref.sha256:
            raise ChainError(f"incremental image: its parent {ref.name} changed (its "
                             f"SHA-256 is not the one the image names)")
    except BaseException:
        source.close()
        raise
    return source


def resolve(image, path, load):
    """`image` (a child loaded from `path`) with its chain's pages; `load(source)` indexes
    a parent. Images without a parent come back unchanged."""
    if image.parent is None:
        return image
    images, sources = [image], [image.source]
    try:
        child_path = path
        while images[-1].parent is not None:
            if len(images) > MAX_CHAIN:
                raise ChainError(f"incremental image: a chain of more than {MAX_CHAIN} images")
            ref = images[-1].parent
            source = open_parent(ref, child_path)
            sources.append(source)
            images.append(load(source))
            child_path = source.path
    except BaseException:
        for source in sources[1:]:
            source.close()
        raise
    merged = {}                         # id(parent Mm) -> its merged {vma start: PageMap}
    for level in range(len(images) - 1, -1, -1):
        merged = _merge_level(images[level], level, images[level + 1:level + 2], merged)
    chain = ChainSource(sources)
    for mm in image.mms():
        mm.source = chain
        for vma in mm.vmas:
            vma.pages = merged[id(mm)].get(vma.start, vma.pages)
    image.source = chain
    image.chain = [(img.parent.name, img.parent.tracking) for img in images[:-1]]
    return image


def _merge_level(image, level, parents, parent_pages):
    """{id(mm): {vma.start: PageMap}} of `image`'s private VMAs in the chain's frame."""
    parent_mms = {}
    if parents:
        parent = parents[0]
        for task in parent.tasks:
            if task.mm is not None:
                parent_mms.setdefault(task.tgid, task.mm)
    out = {}
    for task in image.tasks:
        mm = task.mm
        if mm is None or id(mm) in out:
            continue
        pmm = parent_mms.get(task.tgid)
        if mm.parent_runs and pmm is None:
            raise ChainError(f"incremental image: pid {task.tgid} is not in the parent "
                             f"{image.parent.name}")
        inherited = parent_pages.get(id(pmm), {}) if pmm is not None else {}
        out[id(mm)] = _merge_mm(mm, level, pmm, inherited, image)
    return out


def _merge_mm(mm, level, pmm, inherited, image):
    """A page the child takes from its parent must be there, except in anonymous memory:
    a page read (not written) since the parent, where the parent had none, is the zero
    page it was then, and reads as zeros from neither image."""
    result = {}
    wanted = sum(n for _, n in mm.parent_runs)
    counted = 0
    for vma in mm.vmas:
        if vma.kind not in PRIVATE_KINDS:
            continue
        runs = [(addr, count, level * LEVEL + offset, stride)
                for addr, count, offset, stride in vma.pages.runs()]
        for start, npages in mm.parent_runs:
            lo, hi = max(start, vma.start), min(start + npages * PAGE_SIZE, vma.end)
            if lo < hi:
                got = _parent_runs(pmm, inherited, lo, hi)
                found = sum(count for _, count, _, _ in got)
                counted += (hi - lo) // PAGE_SIZE if vma.kind == "anon" else found
                runs += got
        result[vma.start] = _page_map(sorted(runs), vma)
    if counted != wanted:
        raise ChainError(f"incremental image: {wanted - counted} of the pages it takes from "
                         f"its parent {image.parent.name} are not there")
    return result


def _parent_runs(pmm, inherited, lo, hi):
    """(addr, count, offset, stride) of the parent's pages in [lo, hi)."""
    out = []
    addr = lo
    while addr < hi:
        vma = pmm.vma_at(addr)
        if vma is None:
            break
        end = min(hi, vma.end)
        pages = inherited.get(vma.start, vma.pages)
        out += list(pages._runs_within(addr, end))
        addr = end
    return out


def _page_map(runs, vma):
    pages = PageMap()
    prev = vma.start
    for addr, count, offset, stride in runs:
        if addr < prev:
            raise ChainError(f"incremental image: page {addr:#x} is both its own and its "
                             f"parent's")
        pages.add_run(range(addr, addr + count * PAGE_SIZE, PAGE_SIZE), offset, stride)
        prev = addr + count * PAGE_SIZE
    return pages


def flatten(image, directory, dump):
    """Write the resolved chain `image` as one complete image in a temporary file of
    `directory` (for the restart path: the kernel reads one file). Returns its path; the
    caller removes it. `dump(image, out)` writes an image."""
    flat = replace(image, parent=None, chain=None)
    saved = [(mm, mm.parent_runs) for mm in image.mms()]
    fd, path = tempfile.mkstemp(prefix=".crfs-flat-", dir=directory)
    try:
        for mm, _ in saved:
            mm.parent_runs = []
        with os.fdopen(fd, "wb") as out:
            dump(flat, out)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        for mm, runs in saved:
            mm.parent_runs = runs
    return path
