"""The directory of one image: format, header, verify, records, tasks/<pid>/...

Everything here is built lazily from the model when first looked up: each directory
makes its children once, from the model objects it was given.
"""

import errno
from bisect import bisect_right

from crfs import render, svg_layout
from crfs.errors import FsError, Unsupported
from crfs.formats.x86 import PAGE_SIZE
from crfs.fs import ns_tree
from crfs.fs.nodes import (File, NumberedDir, RangeFile, StaticDir, Symlink,
                           TextFile)
from crfs.model.core import CoreFile


class ModelDir(StaticDir):
    """A directory of an image: its children's keys extend its own, and share its mtime."""

    def _key(self, name):
        return self.key + (name,)

    def _text(self, name, make, mtime_ns=None):
        """(name, file) of a text file whose content `make()` renders when first read."""
        mtime_ns = self.mtime_ns if mtime_ns is None else mtime_ns
        return name, TextFile(self._key(name), make, mtime_ns)


class ImageDir(ModelDir):
    """<image>/ for a store entry (crfs.fs.store.Entry): the image, or why it cannot be read.

    The directory itself shows the store file's mtime, so looking it up (and listing the
    top of the mount) needs no index: FUSE serializes lookups in one directory, and an
    image being indexed must not hold up the others. Its children, made once the image
    is indexed, show the checkpoint time."""

    live = True     # its name means another ImageDir once the file is replaced

    def __init__(self, entry):
        super().__init__((entry.name, entry.generation), entry.file_mtime_ns)
        self.entry = entry
        self.owner = entry      # of the whole tree: its uid, gid, read bits and access

    def make_children(self):
        entry = self.entry
        mtime = entry.mtime_ns      # indexes the image (else crfs.fs.store.Unindexed)
        if entry.error is not None:
            yield self._text("error", lambda: str(entry.error) + "\n", mtime)
            yield self._text("verify", entry.verify_text, mtime)
            return
        image = entry.image
        yield self._text("format", lambda: image.description + "\n", mtime)
        yield self._text("header", lambda: render.header(image), mtime)
        yield self._text("verify", entry.verify_text, mtime)
        yield self._text("records", entry.records_text, mtime)
        yield "tasks", TasksDir(self._key("tasks"), image, mtime)
        yield from ns_tree.image_children(self, image, mtime)
        source = image.source
        if getattr(source, "container", None):     # a container checkpoint archive
            yield "container", ContainerDir(self._key("container"), source, mtime)


class ContainerDir(ModelDir):
    """container/: the container's files beside the CRIU dump of a checkpoint archive
    (config.dump, spec.dump, network.status, ...: crfs.formats.criu_tar.container_files),
    each as stored."""

    def __init__(self, key, archive, mtime_ns):
        super().__init__(key, mtime_ns)
        self.archive = archive

    def make_children(self):
        for name in sorted(self.archive.container):
            data = self.archive.container_source(name)
            yield name, RangeFile(self._key(name), data.size, data.pread, self.mtime_ns)


class TasksDir(ModelDir):
    """tasks/: one directory per task (threads too), named by its pid in the image."""

    def __init__(self, key, image, mtime_ns):
        super().__init__(key, mtime_ns)
        self.image = image

    def make_children(self):
        for task in self.image.tasks:
            name = str(task.pid)
            yield name, TaskDir(self._key(name), self.image, task, self.mtime_ns)


class TaskDir(ModelDir):
    """tasks/<pid>/: comm, status, regs, fpu, signals, limits, cwd, root, exe, fd/ and
    fdinfo/ and, with an address space, mm/ pages/ mem core. cwd, root and exe are text
    files holding the path, not symlinks as in /proc: the path names a directory of the checkpointed
    system, which a link in the mount would resolve on this one. fd/<n> are symlinks as in
    /proc, for `ls -l` and readlink; their targets too name the checkpointed system's
    files ("pipe:[3]", "socket:[4242]" name nothing here)."""

    def __init__(self, key, image, task, mtime_ns):
        super().__init__(key, mtime_ns)
        self.image = image
        self.task = task

    def make_children(self):
        task, mtime = self.task, self.mtime_ns
        yield self._text("comm", lambda: task.comm + "\n")
        yield self._text("status", lambda: render.status(task))
        if task.regs is not None:
            yield self._text("regs", lambda: render.regs(task.regs))
        if task.fpu is not None:
            yield self._text("fpu", lambda: task.fpu)
        signals = task.signals
        if signals is not None and signals.handlers is not None:
            yield self._text("signals", lambda: render.signals(signals.handlers))
        if signals is not None and signals.group is not None and signals.group.rlimits:
            yield self._text("limits", lambda: render.limits(signals.group.rlimits))
        if signals is not None and signals.group is not None \
                and signals.group.oom_score_adj is not None:
            yield self._text("oom_score_adj",
                             lambda: f"{signals.group.oom_score_adj}\n")
        if signals is not None and signals.group is not None and signals.group.posix_timers:
            yield self._text("timers", lambda: render.posix_timers(
                signals.group.posix_timers, task.tgid))
        if task.rseq is not None:
            yield self._text("rseq", lambda: render.rseq(task.rseq))
        if task.misc is not None:
            yield self._text("personality", lambda: f"{task.misc.personality:08x}\n")
            yield self._text("sched", lambda: render.sched(task))
        if task.exit.state:
            yield self._text("exit", lambda: render.exit_status(task.exit))
        fs = task.fs
        for name in ("cwd", "root"):
            path = getattr(fs, name, None)
            if path is not None:
                yield self._text(name, lambda path=path: path + "\n")
        if task.mm is not None and task.mm.exe is not None:
            yield self._text("exe", lambda: task.mm.exe + "\n")
        if task.files is not None:
            yield "fd", FdDir(self._key("fd"), task.files, mtime)
            yield "fdinfo", FdinfoDir(self._key("fdinfo"), task.files, mtime)
        yield from ns_tree.task_children(self, self.image, task)
        mm = task.mm
        if mm is None:
            return
        yield "mm", MmDir(self._key("mm"), self.image, mm, mtime)
        yield "pages", PagesDir(self._key("pages"), mm, mtime)
        yield "mem", MemFile(self._key("mem"), mm, mtime)
        if task.regs is not None:
            core = self._core_file()
            if core is not None:
                yield "core", core

    def _core_file(self):
        """core: an ELF core of the task's process, generated range by range; None when
        its address space is too large for one (crfs.model.core.CORE_LIMIT)."""
        try:
            core = CoreFile(self.image, self.task)
        except Unsupported:
            return None
        return RangeFile(self._key("core"), core.size, core.read, self.mtime_ns)


class FdDir(ModelDir):
    """tasks/<pid>/fd/: <n> -> what /proc/<pid>/fd/<n> linked to."""

    def __init__(self, key, files, mtime_ns):
        super().__init__(key, mtime_ns)
        self.files = files

    def make_children(self):
        for fd in self.files.fds:
            name = str(fd.fd)
            yield name, Symlink(self._key(name), fd.file.link(), self.mtime_ns)


class FdinfoDir(FdDir):
    """tasks/<pid>/fdinfo/: <n> as /proc/<pid>/fdinfo/<n> (pos, flags)."""

    def make_children(self):
        for fd in self.files.fds:
            yield self._text(str(fd.fd), lambda fd=fd: render.fdinfo(fd))


class MmDir(ModelDir):
    """tasks/<pid>/mm/: info, maps and vmas/ of an address space."""

    def __init__(self, key, image, mm, mtime_ns):
        super().__init__(key, mtime_ns)
        self.image = image
        self.mm = mm

    def make_children(self):
        mm = self.mm
        yield self._text("info", lambda: _mm_info(mm))
        yield self._text("maps", lambda: render.maps(mm, self.image.arch))
        yield self._text("layout.svg", lambda: svg_layout.svg(mm, _owners(self.image, mm)))
        yield "vmas", VmasDir(self._key("vmas"), mm, self.mtime_ns)


def _owners(image, mm):
    """The title of mm/layout.svg: whose address space it is."""
    tasks = [t for t in image.tasks if t.mm is mm]
    return f"{tasks[0].comm} (pid {', '.join(str(t.pid) for t in tasks)})"


def _mm_info(mm):
    info = {name: f"{value:#x}" for name, value in mm.fields.items()}
    info["vmas"] = len(mm.vmas)
    info["pages dumped"] = mm.page_count()
    text = render.key_values(info)
    if mm.auxv:
        text += "".join(f"auxv {kind}: {value:#x}\n" for kind, value in mm.auxv)
    return text


class VmasDir(ModelDir):
    """mm/vmas/: one directory per VMA, named <start>-<end>."""

    def __init__(self, key, mm, mtime_ns):
        super().__init__(key, mtime_ns)
        self.mm = mm

    def make_children(self):
        for vma in self.mm.vmas:
            name = render.vma_dirname(vma)
            yield name, VmaDir(self._key(name), self.mm, vma, self.mtime_ns)


class VmaDir(ModelDir):
    """mm/vmas/<start>-<end>/: info, and data (its bytes; pages not dumped read as zeros)."""

    def __init__(self, key, mm, vma, mtime_ns):
        super().__init__(key, mtime_ns)
        self.mm = mm
        self.vma = vma

    def make_children(self):
        yield self._text("info", lambda: render.vma_info(self.vma))
        yield "data", RangeFile(self._key("data"), self.vma.size, self._read_data,
                                self.mtime_ns)

    def _read_data(self, offset, size):
        return self.mm.read(self.vma.start + offset, size)


class PagesDir(NumberedDir):
    """pages/<vaddr>: every dumped page of an address space, 4096 bytes each, numbered in
    address order (VMAs are ascending, and pages within each)."""

    def __init__(self, key, mm, mtime_ns):
        super().__init__(key, mtime_ns)
        self.mm = mm
        # Page i is found by bisecting the running totals of the VMAs' pages; a name by
        # bisecting the VMA starts.
        self._firsts = []
        self._starts = [vma.start for vma in mm.vmas]
        total = 0
        for vma in mm.vmas:
            self._firsts.append(total)
            total += len(vma.pages)
        self._total = total

    def count(self):
        return self._total

    def number_of(self, name):
        try:
            addr = int(name, 16)
        except ValueError:
            return None
        if name != f"{addr:08x}":
            return None
        v = bisect_right(self._starts, addr) - 1
        if v < 0 or addr not in self.mm.vmas[v]:
            return None
        index = self.mm.vmas[v].pages.index_of(addr)
        return None if index is None else self._firsts[v] + index

    def child_at(self, number):
        # The last VMA whose running total is <= number: empty VMAs share the total of the
        # next one, so this is the VMA that holds page `number`.
        v = bisect_right(self._firsts, number) - 1
        addr, offset = self.mm.vmas[v].pages.page_at(number - self._firsts[v])
        source = self.mm.source
        return self.adopt(RangeFile(self.key + (f"{addr:08x}",), PAGE_SIZE,
                                    lambda off, size: source.pread(offset + off, size),
                                    self.mtime_ns))

    def names_from(self, number):
        """Walked along the page runs: a listing of 256k pages costs no bisection per page."""
        if not 0 <= number < self._total:
            return
        v = bisect_right(self._firsts, number) - 1
        skip = number - self._firsts[v]
        for vma in self.mm.vmas[v:]:
            for addr, count, _, _ in vma.pages.runs_from(skip):
                for a in range(addr, addr + count * PAGE_SIZE, PAGE_SIZE):
                    yield number, f"{a:08x}"
                    number += 1
            skip = 0


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
