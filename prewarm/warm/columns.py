"""A plan's spans merged and cut into reads as columns: numpy arrays, never an object per range or read.

Each file's overlapping or touching spans are merged (a plan naming the same bytes twice, or
a hostile plan of a hundred thousand adjacent one-byte ranges, costs one read), the merged
spans are kept in the order the plan first needs them (the earliest plan position in each),
and they are cut at granule boundaries into reads, a block at a time as batches are taken.

Why numpy: at a million 4 KiB reads the merge and the cut were the warm's largest cost, more
than the reads (1.3 us of CPU per span through `array` appends and sorts in compiled code,
while the reader threads waited); as whole-array operations (a stable sort, a running maximum,
reductions over segments) they take a few tens of nanoseconds a span. Memory follows the
plan's ranges: a few arrays of them, and of a block of reads at a time, never of its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from prewarm.plan.rangetable import RangeTable

Ints = npt.NDArray[np.int64]

_DISJOINT_LIMIT = 1 << 62
"""Files are laid end to end to merge all of them in one pass; past this many bytes of file ends
they are merged one file at a time (a plan naming offsets near 2^63)."""


@dataclass(frozen=True, eq=False)
class Merged:
    """Merged spans in first-need order: each one's path (an index into `paths`), start and end;
    per path, the index of its last merged span (-1: none)."""

    paths: list[str]
    pid: Ints
    start: Ints
    end: Ints
    last: Ints

    @property
    def nbytes(self) -> int:
        return int((self.end - self.start).sum())

    @property
    def nfiles(self) -> int:
        return int(np.count_nonzero(self.last >= 0))


def _i64(values: Any) -> Ints:
    return np.asarray(values, dtype=np.int64)


def merge_columns(paths: list[str], pid: npt.NDArray[np.integer[Any]], offset: Ints, length: Ints) -> Merged:
    """Spans given as columns (`pid` indexes `paths`; plan order) merged per file, in first-need order.

    Written for memory as much as time: what the sort must reorder is copied once, the running
    maximum is taken in place, and each temporary is dropped as soon as it is used.
    """
    if length.size and int(length.min()) > 0:
        pos = np.lexsort((offset, pid))  # by file, then start; stable: ties keep plan order
    else:
        keep = np.flatnonzero(length > 0)
        if not keep.size:
            empty = _i64([])
            return Merged(paths, empty, empty, empty, np.full(len(paths), -1, dtype=np.int64))
        pos = keep[np.lexsort((offset[keep], pid[keep]))]
        del keep
    p = pid[pos]
    s = offset[pos]
    e = s + length[pos]
    fstart = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    heads, m_end = _merge_sorted(s, e, fstart)
    del e
    m_pid, m_start, m_pos = p[heads].astype(np.int64), s[heads], np.minimum.reduceat(pos, heads)
    del p, s, pos
    first_need = np.argsort(m_pos, kind="stable")
    del m_pos
    m_pid, m_start, m_end = m_pid[first_need], m_start[first_need], m_end[first_need]
    last = np.full(len(paths), -1, dtype=np.int64)
    np.maximum.at(last, m_pid, np.arange(len(m_pid), dtype=np.int64))
    return Merged(paths, m_pid, m_start, m_end, last)


def _merge_sorted(s: Ints, e: Ints, fstart: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], Ints]:
    """Spans sorted by file, then start (files beginning at `fstart`): the index of each merged span's
    first span, and each merged span's end. A span starts a new merged span when it starts past
    every end before it in its file (touching spans merge)."""
    n = len(e)
    counts = np.diff(np.r_[fstart, n])
    fmax = np.maximum.reduceat(e, fstart)
    if sum(fmax.tolist()) + len(fmax) < _DISJOINT_LIMIT:  # in Python ints: a numpy sum would wrap
        # files laid end to end: one running maximum over all of them never crosses a file
        base = np.repeat(np.r_[0, np.cumsum(fmax + 1)[:-1]], counts)
        run = e + base
        np.maximum.accumulate(run, out=run)
        run -= base
        del base
    else:
        run = np.empty_like(e)
        for a, k in zip(fstart.tolist(), counts.tolist(), strict=True):
            run[a:a + k] = np.maximum.accumulate(e[a:a + k])
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.greater(s[1:], run[:-1], out=new[1:])
    new[fstart] = True
    heads = np.flatnonzero(new)
    del new
    ends: Ints = run[np.r_[heads[1:] - 1, n - 1]]
    return heads, ends


def merge_spans(spans: Iterable[tuple[str, int, int]]) -> Merged:
    """`(path, offset, length)` spans in plan order, merged (small plans, heads and retries)."""
    ids: dict[str, int] = {}
    pid: list[int] = []
    offset: list[int] = []
    length: list[int] = []
    for path, off, n in spans:
        pid.append(ids.setdefault(path, len(ids)))
        offset.append(off)
        length.append(n)
    return merge_columns(list(ids), _i64(pid), _i64(offset), _i64(length))


def merge_table(table: RangeTable, without: frozenset[str] = frozenset()) -> Merged:
    """A plan's range table merged straight from its columns, leaving out the files in `without`."""
    paths, pid, offset, length = table.columns()
    p = np.frombuffer(pid, dtype=np.uint32)
    n = np.frombuffer(length, dtype=np.int64)
    if without:
        skip = np.zeros(len(paths), dtype=bool)
        skip[[i for i, path in enumerate(paths) if path in without]] = True
        n = np.where(skip[p], 0, n)
    return merge_columns(paths, p, np.frombuffer(offset, dtype=np.int64), n)


def ended_within(table: RangeTable, ks: Iterable[int]) -> tuple[int, list[str]]:
    """The first `k` of `ks` for which some paths are named by the plan's first `k` ranges and by none
    after them, and those paths in order of first appearance (their ranges can be merged and warmed
    before the rest of the plan is even looked at); `(0, [])` if none. Each path's last range is
    found once, whatever the plan's size (a set of the rest of a million ranges took 50 ms a `k`)."""
    paths, pid, _, _ = table.columns()
    p = np.frombuffer(pid, dtype=np.uint32)
    last = np.full(len(paths), -1, dtype=np.int64)
    np.maximum.at(last, p, np.arange(len(p), dtype=np.int64))
    for k in ks:
        ids, first = np.unique(p[:k], return_index=True)
        ids = ids[np.argsort(first)]
        done = [paths[i] for i in ids[last[ids] < k].tolist()]
        if done:
            return k, done
    return 0, []


@dataclass(frozen=True, eq=False)
class Block:
    """Consecutive reads cut from merged spans: path index, offset and length of each, and whether it
    is its file's last."""

    pid: Ints
    offset: Ints
    length: Ints
    final: npt.NDArray[np.bool_]


class Cutter:
    """Merged spans cut at granule boundaries (no read straddles one: the gateway fetches whole
    granules and the dedupe index records per granule), taken a block at a time: a 16 TiB span
    is 16 million 1 MiB reads, none of which exists before its block does."""

    def __init__(self, merged: Merged, granule: int) -> None:
        self.m = merged
        self.granule = granule
        self.ends = np.cumsum((merged.end - 1) // granule - merged.start // granule + 1)
        """Reads cut from the merged spans up to each one (the only column the cutter adds: 8 bytes a span)."""
        self.total = int(self.ends[-1]) if len(self.ends) else 0
        self.at = 0

    def take(self, n: int) -> Block:
        """The next `n` reads (fewer at the end)."""
        idx = np.arange(self.at, min(self.total, self.at + n), dtype=np.int64)
        span = np.searchsorted(self.ends, idx, side="right")
        g, m = self.granule, self.m
        first = m.start[span] // g
        count = (m.end[span] - 1) // g - first + 1
        block = first + idx - (self.ends[span] - count)
        start = np.maximum(m.start[span], block * g)
        end = np.minimum(m.end[span], (block + 1) * g)
        pid = m.pid[span]
        return Block(pid, start, end - start, (m.last[pid] == span) & (end == m.end[span]))

    def advance(self, n: int) -> None:
        """The first `n` reads of the last block taken are used; the next `take` starts after them."""
        self.at += n
