"""Page index: page address -> offset of that page's bytes in the image file."""

from array import array
from bisect import bisect_left

from crfs.formats.x86 import PAGE_SIZE


class PageMap:
    """Sorted page addresses with the file offset of each page (16 bytes a page).

    Built once while indexing; lookups are O(log n) by bisection.
    """

    __slots__ = ("addrs", "offsets")

    def __init__(self):
        self.addrs = array("Q")
        self.offsets = array("Q")

    def add(self, addr, offset):
        self.addrs.append(addr)
        self.offsets.append(offset)

    def add_run(self, addrs, first_offset, stride=PAGE_SIZE):
        """Pages stored back to back: page i of `addrs` at first_offset + i*stride."""
        self.addrs.extend(addrs)
        self.offsets.extend(range(first_offset, first_offset + stride * len(addrs), stride))

    def lookup(self, addr):
        """File offset of the page at page-aligned `addr`, or None if it was not dumped."""
        i = bisect_left(self.addrs, addr)
        if i < len(self.addrs) and self.addrs[i] == addr:
            return self.offsets[i]
        return None

    def within(self, start, end):
        """(addr, offset) of the pages with start <= addr < end, ascending."""
        lo = bisect_left(self.addrs, start)
        hi = bisect_left(self.addrs, end)
        return zip(self.addrs[lo:hi], self.offsets[lo:hi])

    def is_ascending(self):
        a = self.addrs
        return all(a[i] < a[i + 1] for i in range(len(a) - 1))

    def __len__(self):
        return len(self.addrs)

    def __iter__(self):
        return zip(self.addrs, self.offsets)
