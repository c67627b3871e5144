"""Image, Task, Mm, Vma: what a checkpoint holds, whatever format it came in."""

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Optional

from crfs.formats.x86 import PAGE_SIZE
from crfs.model.pages import PageMap
from crfs.model.registers import Registers

# Vma.kind values, format-neutral.
VMA_KINDS = ("anon", "file", "shm-anon", "shm-file", "shm-ipc", "vdso", "ignore")


@dataclass(eq=False)
class ShmSegment:
    """A shared memory object dumped once and mapped by one or more VMAs.

    Its pages are keyed by byte offset in the segment (page index * PAGE_SIZE).
    """
    objref: int
    size: int
    pages: PageMap = field(default_factory=PageMap)


@dataclass(eq=False)
class Vma:
    start: int
    end: int
    vm_flags: int
    prot: int                    # the pgprot value as stored
    pgoff: int                   # in pages
    kind: str                    # one of VMA_KINDS
    file: Optional[str] = None
    shm: Optional[ShmSegment] = None
    pages: PageMap = field(default_factory=PageMap)   # dumped pages at their addresses
    extra: dict = field(default_factory=dict)        # stored fields worth showing ("key": value)

    @property
    def size(self):
        return self.end - self.start

    def __contains__(self, addr):
        return self.start <= addr < self.end


@dataclass(eq=False)
class Mm:
    """An address space. Threads share one Mm object."""
    fields: dict = field(default_factory=dict)   # start_code, end_code, ..., in stored order
    vmas: list = field(default_factory=list)     # ascending, non-overlapping
    auxv: Optional[list] = None                  # [(type, value), ...] up to AT_NULL
    ldt: Optional[bytes] = None
    source: object = None                        # where page offsets point (crfs.formats.source)

    def vma_at(self, addr):
        """The VMA containing `addr`, or None. O(log n)."""
        i = bisect_right(self._starts(), addr) - 1
        if i >= 0 and addr in self.vmas[i]:
            return self.vmas[i]
        return None

    def _starts(self):
        cached = getattr(self, "_start_cache", None)
        if cached is None or len(cached) != len(self.vmas):
            cached = [v.start for v in self.vmas]
            self._start_cache = cached
        return cached

    def page_offset(self, addr):
        """File offset of the dumped page containing `addr`, or None."""
        vma = self.vma_at(addr)
        return None if vma is None else vma.pages.lookup(addr & ~(PAGE_SIZE - 1))

    def read(self, addr, size):
        """Bytes [addr, addr+size) of one VMA: dumped pages, zeros elsewhere.

        Returns fewer bytes if the range leaves the VMA, b"" if addr is in no VMA.
        """
        vma = self.vma_at(addr)
        if vma is None:
            return b""
        end = min(addr + size, vma.end)
        first_page = addr & ~(PAGE_SIZE - 1)
        extents = list(vma.pages.extents(first_page, end))
        if len(extents) == 1:
            page, length, offset = extents[0]
            if page <= addr and page + length >= end:
                # The common case, a range inside one stored run: one read, no copies.
                return self.source.pread(offset + (addr - page), end - addr)
        out = bytearray(end - addr)
        for page, length, offset in extents:
            lo, hi = max(page, addr), min(page + length, end)
            out[lo - addr:hi - addr] = self.source.pread(offset + (lo - page), hi - lo)
        return bytes(out)

    def page_count(self):
        return sum(len(v.pages) for v in self.vmas)


@dataclass(eq=False)
class Task:
    pid: int
    tgid: int
    ppid: int
    comm: str
    state: Optional[int] = None
    creds: Optional[dict] = None          # uid, euid, suid, fsuid, gid, egid, sgid, fsgid
    regs: Optional[Registers] = None
    fpu: Optional[bytes] = None           # FPU/xstate bytes as stored
    tls: Optional[list] = None            # GDT TLS descriptors as u64 (b << 32 | a)
    mm: Optional[Mm] = None
    extra: dict = field(default_factory=dict)


@dataclass(eq=False)
class Image:
    format: str                 # "linux-cr" | "openvz"
    dialect: str                # e.g. "cr_hdr v4", "ckpt_hdr v21", "cpt v2"
    arch: str                   # "i386" | "x86_64"
    header: dict = field(default_factory=dict)   # "key": value, shown as the header file
    time: Optional[int] = None  # checkpoint time, seconds since the epoch
    tasks: list = field(default_factory=list)
    source: object = None
    record_count: int = 0       # records indexed while opening
    has_trailer: Optional[bool] = None   # None: the format has no trailer

    @property
    def description(self):
        """One line, e.g. "linux-cr cr_hdr v4 i386"."""
        return f"{self.format} {self.dialect} {self.arch}"

    def task(self, pid):
        for t in self.tasks:
            if t.pid == pid:
                return t
        raise KeyError(pid)

    def mms(self):
        """Each distinct address space once."""
        seen = {}
        for t in self.tasks:
            if t.mm is not None:
                seen.setdefault(id(t.mm), t.mm)
        return list(seen.values())

    def close(self):
        if self.source is not None:
            self.source.close()
