"""Range algebra: parametrised pure tests plus properties checked against a brute-force byte set."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prewarm.plan.ranges import (
    SpanAccumulator,
    clip,
    clip_normal,
    covered,
    covered_by,
    from_flat,
    intersect,
    normalize,
    split,
    subtract,
    total,
    union,
    widen,
)

spans_st = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])),
                    max_size=12)


def as_set(spans: list[tuple[int, int]]) -> set[int]:
    return {b for s, e in spans for b in range(s, e)}


@pytest.mark.parametrize("spans, gap, expected", [
    ([], 0, []),
    ([(5, 5)], 0, []),
    ([(0, 10), (10, 20)], 0, [(0, 20)]),
    ([(10, 20), (0, 5)], 0, [(0, 5), (10, 20)]),
    ([(10, 20), (0, 5)], 5, [(0, 20)]),
    ([(0, 100), (10, 20)], 0, [(0, 100)]),
])
def test_normalize(spans, gap, expected):
    assert normalize(spans, gap) == expected


@given(spans_st, spans_st)
def test_algebra_matches_byte_sets(a, b):
    na, nb = normalize(a), normalize(b)
    assert as_set(intersect(na, nb)) == as_set(na) & as_set(nb)
    assert as_set(subtract(na, nb)) == as_set(na) - as_set(nb)
    assert as_set(union(na, nb)) == as_set(na) | as_set(nb)
    assert total(a) == len(as_set(a))
    assert as_set(clip(a, 100)) == {x for x in as_set(a) if x < 100}
    for out in (intersect(na, nb), subtract(na, nb), union(na, nb)):
        assert out == normalize(out)


@given(spans_st, st.integers(0, 250))
def test_clip_normal_equals_clip_on_normal_lists(a, size):
    assert clip_normal(normalize(a), size) == clip(a, size)


@given(st.lists(spans_st, max_size=5), st.integers(1, 5))
def test_covered_by_keeps_the_bytes_at_least_need_lists_cover(lists, need):
    normal = [normalize(a) for a in lists]
    got = covered_by(normal, need)
    assert got == normalize(got)
    assert as_set(got) == {b for b in range(300) if sum(b in as_set(a) for a in normal) >= need}


@given(st.lists(st.integers(-2, 40) | st.sampled_from([True, 1.5, "3", None]), max_size=8))
def test_from_flat_takes_exactly_the_strictly_increasing_non_negative_int_pairs(flat):
    valid = (bool(flat) and len(flat) % 2 == 0 and all(type(x) is int for x in flat) and flat[0] >= 0
             and all(a < b for a, b in itertools.pairwise(flat)))
    got = from_flat(flat)
    assert got == (list(zip(flat[::2], flat[1::2], strict=True)) if valid else None)
    if got is not None:
        assert got == normalize(got)


@given(spans_st, st.integers(0, 40), st.integers(0, 250))
def test_widen_equals_clip_of_grown_spans(a, by, size):
    na = normalize(a)
    assert widen(na, by, size) == clip([(s - by, e + by) for s, e in na], size)


@given(spans_st, st.integers(0, 250), st.integers(0, 60))
def test_covered_counts_bytes_in_window(a, start, length):
    na = normalize(a)
    assert covered(na, start, start + length) == len(as_set(na) & set(range(start, start + length)))


@given(spans_st, st.integers(1, 17))
def test_split_keeps_bytes_and_bounds_pieces(a, n):
    pieces = split(normalize(a), n)
    assert all(e - s <= n for s, e in pieces)
    assert as_set(pieces) == as_set(a)


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 300)), max_size=300))
def test_accumulator_equals_normalize(reads):
    acc = SpanAccumulator()
    for s, n in reads:
        acc.add(s, s + n)
    assert acc.spans() == normalize((s, s + n) for s, n in reads)


def test_accumulator_extends_sequential_reads_in_place():
    acc = SpanAccumulator()
    for i in range(100_000):
        acc.add(i * 10, i * 10 + 10)
    assert acc.spans() == [(0, 1_000_000)]
