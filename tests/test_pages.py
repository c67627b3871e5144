"""PageMap (runs of pages) and the big-integer checks of crfs.formats.pagewords."""

import random
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crfs.formats import pagewords
from crfs.formats.pagewords import (aligned_ascending, each_page_after, indices_ascending,
                                    page_keys, runs)
from crfs.model.pages import PageMap

PAGE = 4096
BASE = 0x400000


def words(values):
    return array("Q", values).tobytes()


def plain_runs(vaddrs):
    found = []
    for i, addr in enumerate(vaddrs):
        if found and addr == vaddrs[i - 1] + PAGE:
            found[-1] = (found[-1][0], found[-1][1] + 1)
        else:
            found.append((i, 1))
    return found


def page_map(*runs_):
    """A PageMap from (first address, page count, first offset) runs, added with add_run."""
    pages = PageMap()
    for addr, count, offset in runs_:
        pages.add_run(range(addr, addr + count * PAGE, PAGE), offset)
    return pages


# -- PageMap --

def test_adjacent_pages_are_one_run():
    pages = PageMap()
    for i in range(5):
        pages.add(BASE + i * PAGE, 100 + i * PAGE)
    pages.add_run(range(BASE + 5 * PAGE, BASE + 8 * PAGE, PAGE), 100 + 5 * PAGE)
    assert len(pages) == 8
    assert len(pages._starts) == 1
    assert list(pages) == [(BASE + i * PAGE, 100 + i * PAGE) for i in range(8)]


def test_a_gap_in_memory_or_in_the_file_starts_a_run():
    pages = PageMap()
    pages.add(BASE, 0)
    pages.add(BASE + PAGE, 2 * PAGE)          # memory-adjacent, not file-adjacent
    pages.add(BASE + 3 * PAGE, 3 * PAGE)      # file-adjacent, not memory-adjacent
    assert len(pages._starts) == 3
    assert list(pages) == [(BASE, 0), (BASE + PAGE, 2 * PAGE), (BASE + 3 * PAGE, 3 * PAGE)]


def test_sparse_array_is_split_into_runs():
    addrs = array("Q", [BASE, BASE + PAGE, BASE + 5 * PAGE, BASE + 9 * PAGE, BASE + 10 * PAGE])
    pages = PageMap()
    pages.add_run(addrs, 1000)
    assert len(pages._starts) == 3
    assert list(pages) == [(a, 1000 + i * PAGE) for i, a in enumerate(addrs)]


def test_strided_run_and_lookup_at_its_edges():
    pages = PageMap()
    pages.add_run(range(BASE, BASE + 4 * PAGE, PAGE), 32, stride=PAGE + 32)
    assert len(pages._starts) == 1
    assert pages.lookup(BASE) == 32
    assert pages.lookup(BASE + 3 * PAGE) == 32 + 3 * (PAGE + 32)
    assert pages.lookup(BASE - PAGE) is None
    assert pages.lookup(BASE + 4 * PAGE) is None
    assert list(pages.extents(BASE, BASE + 2 * PAGE)) == [(BASE, PAGE, 32),
                                                          (BASE + PAGE, PAGE, 32 + PAGE + 32)]


def test_lookup_hits_and_misses_at_run_edges():
    pages = page_map((BASE, 3, 0), (BASE + 5 * PAGE, 2, 10 * PAGE))
    assert pages.lookup(BASE) == 0
    assert pages.lookup(BASE + 2 * PAGE) == 2 * PAGE
    assert pages.lookup(BASE + 3 * PAGE) is None       # just past the first run
    assert pages.lookup(BASE + 4 * PAGE) is None
    assert pages.lookup(BASE + 5 * PAGE) == 10 * PAGE
    assert pages.lookup(BASE + 6 * PAGE) == 11 * PAGE
    assert pages.lookup(BASE + 7 * PAGE) is None
    assert pages.lookup(BASE - PAGE) is None
    assert pages.lookup(BASE + 1) is None              # not page-aligned
    assert PageMap().lookup(BASE) is None


def test_within_across_runs():
    pages = page_map((BASE, 3, 0), (BASE + 5 * PAGE, 2, 10 * PAGE))
    assert list(pages.within(BASE + PAGE, BASE + 6 * PAGE)) == [
        (BASE + PAGE, PAGE), (BASE + 2 * PAGE, 2 * PAGE), (BASE + 5 * PAGE, 10 * PAGE)]
    assert list(pages.within(BASE + 1, BASE + PAGE + 1)) == [(BASE + PAGE, PAGE)]
    assert list(pages.within(BASE + 3 * PAGE, BASE + 5 * PAGE)) == []
    assert list(pages.within(0, 2**64)) == list(pages)
    assert list(pages.extents(BASE + PAGE, BASE + 6 * PAGE)) == [
        (BASE + PAGE, 2 * PAGE, PAGE), (BASE + 5 * PAGE, PAGE, 10 * PAGE)]


def test_order_length_and_positions():
    pages = page_map((BASE, 3, 0), (BASE + 5 * PAGE, 2, 10 * PAGE))
    addrs = [BASE, BASE + PAGE, BASE + 2 * PAGE, BASE + 5 * PAGE, BASE + 6 * PAGE]
    assert len(pages) == 5 and bool(pages)
    assert [addr for addr, _ in pages] == addrs
    assert [pages.addr_at(i) for i in range(5)] == addrs
    assert (pages.first, pages.last) == (BASE, BASE + 6 * PAGE)
    assert pages.columns() == (array("Q", addrs), array("Q", [0, PAGE, 2 * PAGE, 10 * PAGE,
                                                              11 * PAGE]))
    with pytest.raises(IndexError):
        pages.addr_at(5)
    empty = PageMap()
    assert (len(empty), list(empty), empty.first, empty.last) == (0, [], None, None)


def test_is_ascending():
    assert page_map((BASE, 3, 0), (BASE + 3 * PAGE, 1, 0)).is_ascending()
    assert not page_map((BASE, 3, 0), (BASE + 2 * PAGE, 1, 0)).is_ascending()
    assert not page_map((BASE, 1, 0), (BASE - PAGE, 1, 0)).is_ascending()


def test_add_shifted_cuts_and_moves_runs():
    segment = page_map((0, 4, 0), (6 * PAGE, 2, 100 * PAGE))
    vma = PageMap()
    vma.add_shifted(segment, 2 * PAGE, 7 * PAGE, BASE - 2 * PAGE)
    assert list(vma) == [(BASE, 2 * PAGE), (BASE + PAGE, 3 * PAGE), (BASE + 4 * PAGE, 100 * PAGE)]


def test_a_page_shared_by_every_address():
    pages = PageMap()
    pages.add_run(range(BASE, BASE + 3 * PAGE, PAGE), 7, stride=0)
    assert list(pages) == [(BASE, 7), (BASE + PAGE, 7), (BASE + 2 * PAGE, 7)]
    assert pages.columns()[1] == array("Q", [7, 7, 7])


@given(st.lists(st.integers(0, 64), unique=True), st.integers(0, 1))
def test_pagemap_agrees_with_a_dict(page_numbers, gap):
    addrs = sorted(BASE + n * PAGE for n in page_numbers)
    pages = PageMap()
    pages.add_run(array("Q", addrs), 0, stride=PAGE + gap)
    expected = {a: i * (PAGE + gap) for i, a in enumerate(addrs)}
    assert list(pages) == list(expected.items())
    assert len(pages) == len(addrs)
    for n in range(-1, 66):
        assert pages.lookup(BASE + n * PAGE) == expected.get(BASE + n * PAGE)
    assert list(pages.within(BASE + 10 * PAGE, BASE + 20 * PAGE)) == [
        (a, o) for a, o in expected.items() if BASE + 10 * PAGE <= a < BASE + 20 * PAGE]


# -- pagewords --

@given(st.lists(st.integers(0, (1 << 52) - 1), max_size=8), st.booleans())
def test_aligned_ascending_agrees_with_a_plain_check(pages, sort):
    vaddrs = sorted(p * PAGE for p in pages) if sort else [p * PAGE for p in pages]
    plain = all(a < b for a, b in zip(vaddrs, vaddrs[1:]))
    assert aligned_ascending(words(vaddrs)) == plain
    if vaddrs:
        vaddrs[0] += 8
        assert not aligned_ascending(words(vaddrs))


@given(st.lists(st.integers(0, 2**64 - 1), max_size=8), st.booleans())
def test_indices_ascending_agrees_with_a_plain_check(indices, sort):
    indices = sorted(indices) if sort else indices
    plain = (all(a < b for a, b in zip(indices, indices[1:]))
             and all(i < 1 << 52 for i in indices))
    assert indices_ascending(words(indices)) == plain
    if plain:
        assert page_keys(words(indices)) == words([i * PAGE for i in indices])


@given(st.lists(st.integers(0, (1 << 52) - 3), min_size=1, max_size=8, unique=True))
def test_runs_agree_with_a_plain_split(pages):
    vaddrs = sorted(p * PAGE for p in pages)
    assert runs(words(vaddrs)) == plain_runs(vaddrs)
    assert each_page_after(words([v + PAGE for v in vaddrs]), words(vaddrs))
    assert not each_page_after(words([v + 2 * PAGE for v in vaddrs]), words(vaddrs))


def test_runs_of_the_highest_pages():
    top = 2**64 - PAGE
    assert runs(words([top - PAGE, top])) == [(0, 2)]
    assert runs(words([top - 3 * PAGE, top])) == [(0, 1), (1, 1)]
    assert runs(b"") == []
    assert not each_page_after(words([0]), words([top]))    # top + PAGE is not a u64


@pytest.mark.parametrize("piece", [2, 3, 5])
def test_long_arrays_are_taken_piece_by_piece(monkeypatch, piece):
    monkeypatch.setattr(pagewords, "PIECE", piece)
    rng = random.Random(piece)
    for _ in range(300):
        numbers = sorted(rng.sample(range(1, 30), rng.randint(0, 16)))
        vaddrs = [n * PAGE for n in numbers]
        assert runs(words(vaddrs)) == plain_runs(vaddrs)
        assert aligned_ascending(words(vaddrs))
        assert indices_ascending(words(numbers))
        assert each_page_after(words([v + PAGE for v in vaddrs]), words(vaddrs))
        if len(vaddrs) > 1:
            i = rng.randrange(1, len(vaddrs))
            swapped = vaddrs[:i - 1] + [vaddrs[i], vaddrs[i - 1]] + vaddrs[i + 1:]
            assert not aligned_ascending(words(swapped))
            assert not indices_ascending(words([v // PAGE for v in swapped]))
            ends = [v + PAGE for v in vaddrs]
            ends[i] += PAGE
            assert not each_page_after(words(ends), words(vaddrs))
