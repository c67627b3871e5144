"""Arrays of page addresses (little-endian u64 words) checked and split at C speed.

A 1 GiB image holds 256k pages, and indexing it must cost a few percent of reading it. So
an array of page addresses is handled as one big integer whose base-2**64 digits are the
addresses: conversion, masking, shifts and subtraction of those run in C, about 1 ns a page
each, and Python work is per run of consecutive pages, never per page. Long arrays are
taken PIECE words at a time, so that the masks stay small and are reused.
"""

from array import array
from functools import cached_property, lru_cache
from sys import byteorder

from crfs.formats.x86 import PAGE_SHIFT, PAGE_SIZE

WORD = 8        # bytes of a u64
DIGIT = 64      # bits of a u64
_MARK = b"\x80"  # the top byte of a digit whose top bit alone is set
PIECE = 4096    # words handled as one integer (32 KiB)


def widen(raw, width):
    """Little-endian words of `width` bytes (4 or 8) as u64 words."""
    if width == WORD:
        return raw
    out = bytearray(len(raw) * 2)
    for i in range(width):
        out[i::WORD] = raw[i::width]
    return bytes(out)


def first_word(words):
    return int.from_bytes(words[:WORD], "little")


def last_word(words):
    return int.from_bytes(words[-WORD:], "little")


def aligned_ascending(words):
    """Every u64 of `words` is page-aligned and greater than the one before."""
    return all(_consecutive(piece) or _aligned_ascending(piece)
               for _, piece in _pieces(words, overlap=1))


def _consecutive(words):
    """The words are first, first + PAGE_SIZE, ..., first page-aligned: a fully dumped
    stretch, the common case, told with fewer big-integer operations than the general one."""
    count = len(words) // WORD
    first = first_word(words)
    if first % PAGE_SIZE or last_word(words) - first != (count - 1) * PAGE_SIZE:
        return False
    masks = _masks(count)
    return int.from_bytes(words, "little") == first * masks.ones + masks.ramp


def _aligned_ascending(words):
    """aligned_ascending of at most PIECE words.

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


def indices_ascending(words):
    """Every u64 of `words` is below 2**52 (a page index) and greater than the one before."""
    for _, piece in _pieces(words):
        if int.from_bytes(piece, "little") & _masks(len(piece) // WORD).high:
            return False
    return aligned_ascending(page_keys(words))


def page_keys(words):
    """Page indices (each below 2**52) as byte offsets: index * PAGE_SIZE in every word."""
    return _to_words(int.from_bytes(words, "little") << PAGE_SHIFT, len(words))


def each_page_after(ends, starts):
    """Every word of `ends` is the word of `starts` at its place plus PAGE_SIZE.

    For ascending page-aligned `starts`: below the last, a start is then at most
    2**64 - 2 * PAGE_SIZE, so the digit-wise addition cannot carry; a carry out of the last
    one makes the sum too long."""
    if len(ends) != len(starts):
        return False
    for base, piece in _pieces(starts):
        count = len(piece) // WORD
        x = int.from_bytes(piece, "little") + _masks(count).pages
        if x.bit_length() > count * DIGIT or _to_words(x, len(piece)) != _piece(ends, base):
            return False
    return True


def runs(words):
    """[(index, length)] of the runs of consecutive pages in `words`, ascending and aligned."""
    count = len(words) // WORD
    if not count:
        return []
    starts = [0]
    for base, piece in _pieces(words, overlap=1):
        starts += [base + index for index in _breaks(piece)]
    return [(start, end - start) for start, end in zip(starts, starts[1:] + [count])]


def _breaks(words):
    """Indices of the words of a piece (ascending, aligned) that are not the page after the
    word before.

    With the words as the digits of X, S = X[1:] ^ (X[:-1] + PAGE_SIZE in every digit) has a
    zero digit exactly where a page follows the one before it. The addition never carries:
    below the last word, an ascending page address is at most 2**64 - 2 * PAGE_SIZE. The
    non-zero digits of S are then marked by their top bit alone, so that each break is found
    by one bytes.find.
    """
    count = len(words) // WORD
    if count < 2 or last_word(words) - first_word(words) == (count - 1) * PAGE_SIZE:
        return []       # ascending pages spanning count pages: each follows the one before
    x = int.from_bytes(words, "little")
    masks = _masks(count - 1)
    steps = (x >> DIGIT) ^ ((x & masks.digits) + masks.pages)
    if not steps:
        return []
    # low 63 bits + 2**63 - 1 reaches the top bit iff they are not all zero
    marks = _to_words((((steps & masks.low) + masks.low) | steps) & masks.top, len(words) - WORD)
    found = []
    at = marks.find(_MARK)
    while at >= 0:
        found.append(at // WORD + 1)
        at = marks.find(_MARK, at + 1)
    return found


def _pieces(words, overlap=0):
    """(index of the first word, bytes) of pieces of at most PIECE words that cover `words`,
    each starting `overlap` words before the end of the one before."""
    count = len(words) // WORD
    return ((base, _piece(words, base)) for base in range(0, max(count - overlap, 1),
                                                          PIECE - overlap))


def _piece(words, base):
    return words[base * WORD:(base + PIECE) * WORD]


def _to_words(x, size):
    return x.to_bytes(size, "little")


class _Masks:
    """Integers with `count` u64 digits, each digit being: 1 (ones), PAGE_SIZE (pages),
    PAGE_SIZE - 1 (offsets), all ones (digits), the low 63 bits (low), the top bit (top),
    the 12 bits above a page index (high), or i * PAGE_SIZE for digit i (ramp)."""

    def __init__(self, count):
        self.ones = int.from_bytes((b"\x01" + bytes(WORD - 1)) * count, "little")
        self.pages = self.ones * PAGE_SIZE
        self.offsets = self.ones * (PAGE_SIZE - 1)
        self.digits = (1 << DIGIT * count) - 1
        self.top = self.ones << (DIGIT - 1)
        self.low = self.digits ^ self.top
        self.high = self.offsets << (DIGIT - PAGE_SHIFT)

    @cached_property
    def ramp(self):
        count = self.digits.bit_length() // DIGIT
        return int.from_bytes(array("Q", range(0, count * PAGE_SIZE, PAGE_SIZE)), byteorder)


@lru_cache(maxsize=16)
def _masks(count):
    """Cached: full pieces, and every full page chunk of an image, have the same size."""
    return _Masks(count)
