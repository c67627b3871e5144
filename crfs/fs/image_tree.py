"""The directory of one image: format, header, verify, records, tasks/<pid>/...

Everything here is built lazily from the model when first looked up.
"""

import errno
from bisect import bisect_right

from crfs import render
from crfs.formats.x86 import PAGE_SIZE
from crfs.errors import FsError
from crfs.fs.nodes import Dir, File, LazyNames, RangeFile, StaticDir, TextFile
from crfs.model.core import CoreFile


def image_dir(entry):
    """Directory for a store entry (crfs.fs.store.Entry): the image, or its error."""
    key = (entry.name, entry.generation)
    mtime = entry.mtime_ns

    def text(name, make):
        return name, TextFile(key + (name,), make, mtime)

    def children():
        if entry.error is not None:
            yield text("error", lambda: str(entry.error) + "\n")
            yield text("verify", entry.verify_text)
            return
        image = entry.image
        yield text("format", lambda: image.description + "\n")
        yield text("header", lambda: render.header(image))
        yield text("verify", entry.verify_text)
        yield text("records", entry.records_text)
        yield "tasks", StaticDir(key + ("tasks",), lambda: _tasks(image, key, mtime), mtime)

    return StaticDir(key, children, mtime)


def _tasks(image, key, mtime):
    for task in image.tasks:
        tkey = key + ("tasks", str(task.pid))
        yield str(task.pid), StaticDir(
            tkey, lambda task=task, tkey=tkey: _task(image, task, tkey, mtime), mtime)


def _task(image, task, key, mtime):
    def text(name, make):
        return name, TextFile(key + (name,), make, mtime)

    yield text("comm", lambda: task.comm + "\n")
    yield text("status", lambda: render.status(task))
    if task.regs is not None:
        yield text("regs", lambda: render.regs(task.regs))
    if task.fpu is not None:
        yield text("fpu", lambda: task.fpu)
    mm = task.mm
    if mm is None:
        return
    yield "mm", StaticDir(key + ("mm",), lambda: _mm(image, mm, key + ("mm",), mtime), mtime)
    yield "pages", PagesDir(key + ("pages",), mm, mtime)
    yield "mem", MemFile(key + ("mem",), mm, mtime)
    if task.regs is not None:
        yield "core", _core_file(image, task, key + ("core",), mtime)


def _core_file(image, task, key, mtime):
    """tasks/<pid>/core: an ELF core of the task's process, generated range by range."""
    core = CoreFile(image, task)
    return RangeFile(key, core.size, core.read, mtime)


def _mm(image, mm, key, mtime):
    yield "info", TextFile(key + ("info",), lambda: _mm_info(mm), mtime)
    yield "maps", TextFile(key + ("maps",), lambda: render.maps(mm, image.arch), mtime)
    yield "vmas", StaticDir(key + ("vmas",), lambda: _vmas(mm, key + ("vmas",), mtime), mtime)


def _mm_info(mm):
    info = {name: f"{value:#x}" for name, value in mm.fields.items()}
    info["vmas"] = len(mm.vmas)
    info["pages dumped"] = mm.page_count()
    text = render.key_values(info)
    if mm.auxv:
        text += "".join(f"auxv {kind}: {value:#x}\n" for kind, value in mm.auxv)
    return text


def _vmas(mm, key, mtime):
    for vma in mm.vmas:
        name = render.vma_dirname(vma)
        vkey = key + (name,)
        yield name, StaticDir(vkey, lambda vma=vma, vkey=vkey: _vma(mm, vma, vkey, mtime), mtime)


def _vma(mm, vma, key, mtime):
    yield "info", TextFile(key + ("info",), lambda: render.vma_info(vma), mtime)
    yield "data", RangeFile(key + ("data",), vma.size,
                            lambda offset, size: mm.read(vma.start + offset, size), mtime)


class PagesDir(Dir):
    """pages/<vaddr>: every dumped page of an address space, 4096 bytes each."""

    def __init__(self, key, mm, mtime_ns):
        super().__init__(key, mtime_ns)
        self.mm = mm
        # Pages are ascending within a VMA and VMAs are ascending: index i is found by
        # bisecting the running totals.
        self._firsts = []
        total = 0
        for vma in mm.vmas:
            self._firsts.append(total)
            total += len(vma.pages)
        self._total = total

    def _addr_at(self, index):
        # The last VMA whose running total is <= index: empty VMAs share the total of the
        # next one, so this is the VMA that holds page `index`.
        v = bisect_right(self._firsts, index) - 1
        return self.mm.vmas[v].pages.addr_at(index - self._firsts[v])

    def names(self):
        return LazyNames(self._total, lambda i: f"{self._addr_at(i):08x}")

    def child(self, name):
        try:
            addr = int(name, 16)
        except ValueError:
            return None
        if name != f"{addr:08x}":
            return None
        offset = self.mm.page_offset(addr)
        if offset is None or addr % PAGE_SIZE:
            return None
        source = self.mm.source
        return RangeFile(self.key + (name,), PAGE_SIZE,
                         lambda off, size: source.pread(offset + off, size), self.mtime_ns)


class MemFile(File):
    """/proc/<pid>/mem semantics: offset = virtual address; EIO outside every VMA."""

    direct_io = True

    def __init__(self, key, mm, mtime_ns):
        super().__init__(key, mtime_ns)
        self.mm = mm

    def size(self):
        return self.mm.vmas[-1].end if self.mm.vmas else 0

    def read(self, offset, size):
        out = bytearray()
        while size > 0:
            chunk = self.mm.read(offset, size)
            if not chunk:
                break
            out += chunk
            offset += len(chunk)
            size -= len(chunk)
        if not out and size > 0:
            raise FsError(f"address {offset:#x} is in no VMA", errno.EIO)
        return bytes(out)
