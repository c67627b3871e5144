"""Page bytes copied out of an image by the writers: one pread per run of adjacent pages.

Checking and indexing the vaddr arrays is crfs.formats.pagewords (no per-page Python work).
"""

from crfs.errors import FormatError
from crfs.formats.x86 import PAGE_SIZE

MAX_RUN = 256   # pages per pread when copying pages (1 MiB)


def copy_pages(source, offsets, out):
    """Write the pages at `offsets` of `source` to `out`, one pread per run of adjacent pages."""
    i = 0
    while i < len(offsets):
        j = i + 1
        while j < len(offsets) and j - i < MAX_RUN and offsets[j] == offsets[j - 1] + PAGE_SIZE:
            j += 1
        length = (j - i) * PAGE_SIZE
        data = source.pread(offsets[i], length)
        if len(data) != length:
            raise FormatError("page data runs past the end of its image", offset=offsets[i])
        out.write(data)
        i = j


def read_page(source, offset):
    """The page at `offset` of `source`, for writers that frame each page."""
    data = source.pread(offset, PAGE_SIZE)
    if len(data) != PAGE_SIZE:
        raise FormatError("page data runs past the end of its image", offset=offset)
    return data
