"""Page index: page address -> offset of that page's bytes in the image file."""

from array import array
from bisect import bisect_right

from crfs.formats.common import u64_bytes
from crfs.formats.pagewords import WORD, runs
from crfs.formats.x86 import PAGE_SIZE


class PageMap:
    """Dumped pages as runs: pages consecutive in memory, each `stride` bytes of the file
    after the one before (PAGE_SIZE when they are back to back).

    A fully dumped VMA is a run per chunk of the image, so indexing it costs Python work per
    chunk, not per page, and 32 bytes per run. Runs are kept in the order added (loaders add
    ascending pages); lookups are O(log runs) by bisection over the run starts.
    """

    __slots__ = ("_starts", "_firsts", "_offsets", "_strides", "_count")

    def __init__(self):
        self._starts = array("Q")    # address of the run's first page
        self._firsts = array("Q")    # index among all pages of the run's first page
        self._offsets = array("Q")   # file offset of the run's first page
        self._strides = array("Q")   # file bytes from one page of the run to the next
        self._count = 0

    @classmethod
    def from_runs(cls, starts, firsts, offsets, strides, count):
        """A PageMap of the runs given as four u64 arrays (as a saved index holds them);
        ValueError unless they are runs another PageMap could have: run i starts at page
        index firsts[i], from 0 up, each at least one page, `count` pages in all."""
        n = len(starts)
        if not (len(firsts) == len(offsets) == len(strides) == n):
            raise ValueError("run columns differ in length")
        if (n == 0) != (count == 0) or (n and firsts[0] != 0):
            raise ValueError("runs do not start at page 0")
        if any(firsts[r] >= firsts[r + 1] for r in range(n - 1)) or (n and firsts[-1] >= count):
            raise ValueError("run lengths are not positive")
        pages = cls()
        pages._starts = array("Q", starts)
        pages._firsts = array("Q", firsts)
        pages._offsets = array("Q", offsets)
        pages._strides = array("Q", strides)
        pages._count = count
        return pages

    # -- building --

    def add(self, addr, offset):
        self._add(addr, 1, offset, PAGE_SIZE)

    def add_run(self, addrs, first_offset, stride=PAGE_SIZE):
        """Page i of `addrs` at first_offset + i*stride.

        `addrs` (a range or a sequence of ints) must be page-aligned and ascending: they are
        split into runs of consecutive pages without a Python loop over the pages.
        """
        if isinstance(addrs, range) and addrs.step == PAGE_SIZE:
            if addrs:
                self._add(addrs.start, len(addrs), first_offset, stride)
            return
        self.add_words(u64_bytes(addrs), first_offset, stride)

    def add_words(self, words, first_offset, stride=PAGE_SIZE):
        """add_run for addresses given as little-endian u64 bytes, as images store them
        (page-aligned and ascending, as for add_run)."""
        for index, count in runs(words):
            addr = int.from_bytes(words[index * WORD:(index + 1) * WORD], "little")
            self._add(addr, count, first_offset + index * stride, stride)

    def add_shifted(self, other, start, end, shift):
        """The pages of PageMap `other` with start <= address < end, at address + shift."""
        for addr, count, offset, stride in other._runs_within(start, end):
            self._add(addr + shift, count, offset, stride)

    def _add(self, addr, count, offset, stride):
        """Append a run, or extend the last one when the pages continue it in memory and file."""
        if self._starts:
            last = self._count - self._firsts[-1]
            last_stride = self._strides[-1]
            if (addr == self._starts[-1] + last * PAGE_SIZE
                    and offset == self._offsets[-1] + last * last_stride
                    and (count == 1 or stride == last_stride)):
                self._count += count
                return
        self._starts.append(addr)
        self._firsts.append(self._count)
        self._offsets.append(offset)
        self._strides.append(stride)
        self._count += count

    # -- queries --

    def _place(self, addr):
        """(run, index in that run) of the page at page-aligned `addr`, or None if it was
        not dumped."""
        r = bisect_right(self._starts, addr) - 1
        if r < 0:
            return None
        index, misalign = divmod(addr - self._starts[r], PAGE_SIZE)
        if misalign or index >= self._run_length(r):
            return None
        return r, index

    def lookup(self, addr):
        """File offset of the page at page-aligned `addr`, or None if it was not dumped."""
        place = self._place(addr)
        if place is None:
            return None
        r, index = place
        return self._offsets[r] + index * self._strides[r]

    def within(self, start, end):
        """(addr, offset) of the pages with start <= addr < end, ascending."""
        return _pages(self._runs_within(start, end))

    def extents(self, start, end):
        """(addr, length, offset) of the bytes of dumped pages with start <= addr < end, one
        per stretch contiguous in both memory and file (one pread each), ascending."""
        for addr, count, offset, stride in self._runs_within(start, end):
            if stride == PAGE_SIZE:
                yield addr, count * PAGE_SIZE, offset
                continue
            for i in range(count):
                yield addr + i * PAGE_SIZE, PAGE_SIZE, offset + i * stride

    def addr_at(self, index):
        """Address of the index-th page (in the order added)."""
        if not 0 <= index < self._count:
            raise IndexError(f"page {index} of {self._count}")
        r = bisect_right(self._firsts, index) - 1
        return self._starts[r] + (index - self._firsts[r]) * PAGE_SIZE

    def index_of(self, addr):
        """The index of the page at page-aligned `addr` (in the order added), or None if
        it was not dumped."""
        place = self._place(addr)
        if place is None:
            return None
        r, index = place
        return self._firsts[r] + index

    def page_at(self, index):
        """(address, file offset) of the index-th page (in the order added)."""
        if not 0 <= index < self._count:
            raise IndexError(f"page {index} of {self._count}")
        r = bisect_right(self._firsts, index) - 1
        i = index - self._firsts[r]
        return self._starts[r] + i * PAGE_SIZE, self._offsets[r] + i * self._strides[r]

    def runs_from(self, index):
        """(first page address, page count, file offset, stride) of the runs cut to the
        pages from the index-th on, in order."""
        if not 0 <= index < self._count:
            return
        r = bisect_right(self._firsts, index) - 1
        skip = index - self._firsts[r]
        addr, count, offset, stride = self._run(r)
        yield addr + skip * PAGE_SIZE, count - skip, offset + skip * stride, stride
        for r in range(r + 1, len(self._starts)):
            yield self._run(r)

    @property
    def first(self):
        """Address of the first page added, None if there is none."""
        return self._starts[0] if self._count else None

    @property
    def last(self):
        """Address of the last page added, None if there is none."""
        return self.addr_at(self._count - 1) if self._count else None

    def columns(self):
        """(addresses, file offsets) of every page, as two u64 arrays (for writers)."""
        addrs, offsets = array("Q"), array("Q")
        for addr, count, offset, stride in self.runs():
            addrs.extend(range(addr, addr + count * PAGE_SIZE, PAGE_SIZE))
            if stride:
                offsets.extend(range(offset, offset + count * stride, stride))
            else:
                offsets.extend(array("Q", [offset]) * count)
        return addrs, offsets

    def is_ascending(self):
        return all(self._run_end(r) <= self._starts[r + 1] for r in range(len(self._starts) - 1))

    def __len__(self):
        return self._count

    def __iter__(self):
        return _pages(self.runs())

    # -- runs --

    def _run_length(self, r):
        following = self._firsts[r + 1] if r + 1 < len(self._firsts) else self._count
        return following - self._firsts[r]

    def _run_end(self, r):
        return self._starts[r] + self._run_length(r) * PAGE_SIZE

    def _run(self, r):
        return self._starts[r], self._run_length(r), self._offsets[r], self._strides[r]

    def runs(self):
        """(first page address, page count, file offset, stride) of every run, in order."""
        return (self._run(r) for r in range(len(self._starts)))

    def _runs_within(self, start, end):
        """(addr, count, offset, stride) of the runs cut to the pages in [start, end)."""
        r = max(bisect_right(self._starts, start) - 1, 0)
        while r < len(self._starts) and self._starts[r] < end:
            addr, count, offset, stride = self._run(r)
            skip = max(0, -(-(start - addr) // PAGE_SIZE))      # pages below start
            stop = min(count, -(-(end - addr) // PAGE_SIZE))    # pages below end
            if skip < stop:
                yield addr + skip * PAGE_SIZE, stop - skip, offset + skip * stride, stride
            r += 1


def _pages(page_runs):
    """(addr, offset) of every page of the runs."""
    for addr, count, offset, stride in page_runs:
        for i in range(count):
            yield addr + i * PAGE_SIZE, offset + i * stride
