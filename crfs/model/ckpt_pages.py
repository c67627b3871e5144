"""Page arrays of PGARR chunks: checked and indexed without per-page Python work.

A 1 GiB image holds 256k pages, and indexing it must cost a few percent of reading it. So the
vaddr arrays are handled as big integers whose base-2**64 digits are the vaddrs: conversion,
masking and subtraction of those run in C, about 1 ns a page each. Reading pages back (the
writer) goes one pread per run of adjacent pages.
"""

from array import array
from functools import lru_cache

from crfs.errors import FormatError
from crfs.formats.x86 import PAGE_SIZE

WORD = 8        # PageMap stores u64 addresses and offsets
DIGIT = 64
MAX_RUN = 256   # pages per pread when copying pages (1 MiB)


def widen(raw, width):
    """Little-endian words of `width` bytes (4 or 8) as u64 words."""
    if width == WORD:
        return raw
    out = bytearray(len(raw) * 2)
    for i in range(width):
        out[i::WORD] = raw[i::width]
    return bytes(out)


def aligned_ascending(words):
    """Every u64 of `words` is page-aligned and greater than the one before.

    With the words as the digits of X, alignment is X & (0xfff in every digit) == 0. For
    ascending, take W = X[1:] - X[:-1] - PAGE_SIZE * (1 + 2**64 + 2**128 + ...): its digits are
    d_i - PAGE_SIZE, d_i being the step from word i to word i+1, a multiple of PAGE_SIZE. A
    step below PAGE_SIZE makes the subtraction borrow, which leaves the next digit at -1
    modulo PAGE_SIZE or, at the top, W negative. So W >= 0 with aligned digits <=> no borrow
    <=> every step is at least PAGE_SIZE.
    """
    count = len(words) // WORD
    x = int.from_bytes(words, "little")
    if x & _masks(count).offsets:
        return False
    if count < 2:
        return True
    masks = _masks(count - 1)
    steps = (x >> DIGIT) - (x & masks.digits) - masks.pages
    return steps >= 0 and not steps & masks.offsets


def page_offsets(first, count):
    """u64 words first, first + PAGE_SIZE, ... (`count` of them): pages stored back to back."""
    masks = _masks(count)
    return (masks.ramp + first * masks.ones).to_bytes(count * WORD, "little")


class _Masks:
    """Integers with `count` u64 digits, each digit being: 1 (ones), PAGE_SIZE (pages),
    PAGE_SIZE - 1 (offsets), all ones (digits), or i * PAGE_SIZE for digit i (ramp)."""

    def __init__(self, count):
        self.ones = int.from_bytes((b"\x01" + bytes(WORD - 1)) * count, "little")
        self.pages = self.ones * PAGE_SIZE
        self.offsets = self.ones * (PAGE_SIZE - 1)
        self.digits = (1 << DIGIT * count) - 1
        ramp = array("Q", range(0, count * PAGE_SIZE, PAGE_SIZE))
        self.ramp = int.from_bytes(ramp.tobytes(), "little")


@lru_cache(maxsize=8)
def _masks(count):
    """Cached: every full PGARR chunk of an image has the same page count."""
    return _Masks(count)


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
