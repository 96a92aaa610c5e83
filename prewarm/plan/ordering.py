"""From predictions to the plan's ordered ranges: granules, budget, order. Pure.

Everything is decided per granule (the unit the gateway fetches, 4 KiB pages by
default): for each granule, the earliest job frame that needs it, how many frames
need it, the most certain reason it is there and its tier (headers and tables,
then a texture's levels coarse before fine). Granules are never enumerated one by
one: predictions are cut at their aligned boundaries into segments over which all
of that is constant, so a plan of whole 33 MB textures at 4 KiB costs what it cost
at 1 MiB. The budget keeps the segments that serve the most frames per byte
(weighted by how certain the prediction is), coarse tiers before fine ones among
equals; the order puts what the first frames need first (headers, then coarse
levels, then fine), then what most frames need; predictions marked `last`
(fallbacks, never-traced fine levels, unread tiles of a tile set) go last.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from prewarm.plan.prediction import Deferred, Prediction
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import Reason

CONFIDENCE = {
    Reason.TRACE: 1.0,
    Reason.WHOLE: 1.0,
    Reason.PATTERN: 1.0,
    Reason.PROGRESSION: 0.9,
    Reason.ANCHORED: 0.9,
    Reason.NEIGHBOURS: 0.7,
    Reason.FINER: 0.5,
    Reason.REGION: 0.5,
    Reason.FALLBACK: 0.3,
    Reason.OCCASIONAL: 0.25,
    Reason.UNREAD_TILE: 0.2,
    Reason.FINER_FAR: 0.2,
}
"""How sure a reason is: it scales a segment's value under a budget and ranks equals."""


@dataclass(slots=True)
class _Seg:
    """Granules `[start, end)` of one file over which frames, reason, tier and lateness are the same.

    The frames are kept as what ordering and the budget use of them, the first and the
    count, not as the mask itself: a 10,000-frame job's masks are 1.2 KB each, and a plan
    of a whole sequence cuts millions of segments (bench/scale.py --frames 10000)."""

    start: int
    end: int
    rank: int        # index in the job's frame order of the first frame needing it
    count: int       # how many of the job's frames need it
    reason: Reason
    tier: int
    last: bool

    @property
    def value(self) -> float:
        return self.count * CONFIDENCE[self.reason]


@dataclass(frozen=True)
class Ordered:
    ranges: RangeTable
    dropped: RangeTable


def _segments(preds: list[tuple[Prediction, int]], granule: int, size: int) -> list[_Seg]:
    """One file's predictions (with their frame masks) cut into segments of constant properties.

    A segment's rank is its first frame among the predictions that are not `last`: what a few
    traced frames read, planned late for every other frame, stays where the frames known to
    read it put it.

    Cells (the intervals between cuts) are kept as parallel lists rather than objects: a
    shared texture of a long job has hundreds of overlapping predictions, and this loop
    runs millions of times per plan (bench/scale.py)."""
    limit = -(-size // granule)
    cuts: set[int] = set()
    spans: list[tuple[int, int, Prediction, int]] = []
    for p, mask in preds:
        for s, e in p.spans:
            a, b = s // granule, min(-(-e // granule), limit)
            if b > a:
                cuts.update((a, b))
                spans.append((a, b, p, mask))
    bounds = sorted(cuts)
    n = max(len(bounds) - 1, 0)
    frames, early, sure, tier = [0] * n, [0] * n, [-1.0] * n, [0] * n
    reason: list[Reason | None] = [None] * n
    last = [True] * n
    for a, b, p, mask in spans:
        c, t, r, late = CONFIDENCE[p.reason], p.tier, p.reason, p.last
        for i in range(bisect_left(bounds, a), bisect_left(bounds, b)):
            frames[i] |= mask
            if not late:
                early[i] |= mask
            if sure[i] < 0:
                sure[i], reason[i], tier[i] = c, r, t
            else:
                if c > sure[i]:
                    sure[i], reason[i] = c, r
                if t < tier[i]:
                    tier[i] = t
            if not late:
                last[i] = False
    return [_Seg(bounds[i], bounds[i + 1], _first(early[i] or frames[i]), frames[i].bit_count(),
                 cast(Reason, reason[i]), tier[i], last[i])
            for i in range(n) if sure[i] >= 0]


def _first(mask: int) -> int:
    """The rank of the first frame in `mask`."""
    return (mask & -mask).bit_length() - 1


class _Pieces:
    """Ranges as they are cut, in columns, with what orders each (its leading segment's lateness,
    rank and tier): a whole sequence's plan is over a million ranges, and a million range
    objects with their sort-key tuples cost more memory than the rest of the plan."""

    __slots__ = ("frame", "frames", "last", "length", "offset", "path", "paths", "rank", "reason", "tier")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.path = array("I")
        self.offset = array("q")
        self.length = array("q")
        self.frame = array("q")
        self.frames = array("q")
        self.reason: list[Reason] = []
        self.last = array("B")
        self.rank = array("q")
        self.tier = array("q")

    def __len__(self) -> int:
        return len(self.path)

    @staticmethod
    def adopt(c: Columns) -> _Pieces:
        out = _Pieces()
        (out.paths, out.path, out.offset, out.length, out.frame, out.frames, out.reason, out.last, out.rank,
         out.tier) = c
        return out

    def columns(self) -> Columns:
        return (self.paths, self.path, self.offset, self.length, self.frame, self.frames, self.reason, self.last,
                self.rank, self.tier)

    def extend(self, c: Columns) -> None:
        """Append another part's pieces, its paths numbered after ours."""
        paths, path, offset, length, frame, frames, reason, last, rank, tier = c
        base = len(self.paths)
        self.paths.extend(paths)
        self.path.extend(array("I", [base + p for p in path]))
        self.offset.extend(offset)
        self.length.extend(length)
        self.frame.extend(frame)
        self.frames.extend(frames)
        self.reason.extend(reason)
        self.last.extend(last)
        self.rank.extend(rank)
        self.tier.extend(tier)

    def table(self, order: Iterable[int]) -> RangeTable:
        """The pieces in `order` as a plan's range table (paths numbered by first appearance)."""
        ids: dict[int, int] = {}
        index = list(order)
        path = array("I", [ids.setdefault(self.path[i], len(ids)) for i in index])
        paths = [""] * len(ids)
        for old, new in ids.items():
            paths[new] = self.paths[old]
        return RangeTable.from_columns(paths, path, array("q", [self.offset[i] for i in index]),
                                       array("q", [self.length[i] for i in index]),
                                       array("q", [self.frame[i] for i in index]),
                                       array("q", [self.frames[i] for i in index]),
                                       [self.reason[i] for i in index])

    def ordered(self) -> RangeTable:
        """Sorted by (lateness, rank, tier, most frames first, path, offset): each key packed into
        one int (mixed radix, so ints compare as the tuples would), sorted far faster than tuples."""
        n = len(self)
        if n == 0:
            return RangeTable()
        by_name = {name: i for i, name in enumerate(sorted(self.paths))}
        name_rank = [by_name[name] for name in self.paths]
        ranks = max(self.rank) + 1
        low = min(self.tier)
        tiers = max(self.tier) - low + 1
        most = max(self.frames)
        names = len(self.paths)
        offsets = max(self.offset) + 1
        keys: list[int] = []
        for i in range(n):
            k = self.last[i] * ranks + self.rank[i]
            k = k * tiers + self.tier[i] - low
            k = k * (most + 1) + most - self.frames[i]
            k = (k * names + name_rank[self.path[i]]) * offsets + self.offset[i]
            keys.append(k * n + i)
        keys.sort()
        return self.table(k % n for k in keys)


def _runs(path: str, segs: list[_Seg], granule: int, size: int, max_gap: int, max_len: int,
          frame_at: list[int], out: _Pieces) -> None:
    """Join neighbouring segments of one file that share rank, reason, tier and lateness into ranges,
    each ordered by the segment leading it (its rank, tier and lateness)."""
    gap = max_gap // granule
    cap = max(1, max_len // granule)
    pid = len(out.paths)
    out.paths.append(path)
    run: list[_Seg] = []

    def close() -> None:
        head = run[0]
        start, end = head.start, run[-1].end
        count = max(s.count for s in run)
        while start < end:
            stop = min(end, start + cap)
            out.path.append(pid)
            out.offset.append(start * granule)
            out.length.append(min(stop * granule, size) - start * granule)
            out.frame.append(frame_at[head.rank])
            out.frames.append(count)
            out.reason.append(head.reason)
            out.last.append(head.last)
            out.rank.append(head.rank)
            out.tier.append(head.tier)
            start = stop

    head_rank = -1
    for seg in segs:
        rank = seg.rank
        if run:
            head = run[0]
            if not (seg.start - run[-1].end <= gap and rank == head_rank and seg.reason == head.reason
                    and seg.tier == head.tier and seg.last == head.last):
                close()
                run = []
        if not run:
            head_rank = rank
        run.append(seg)
    if run:
        close()


Columns = tuple[list[str], "array[int]", "array[int]", "array[int]", "array[int]", "array[int]", list[Reason],
                "array[int]", "array[int]", "array[int]"]
"""`_Pieces` as plain values: what a part of the work hands back, perhaps from another process."""

FanOut = Callable[[Callable[[int, int], Columns], int], list[Columns]]
"""Runs `work(i, n)` for i in 0..n-1, perhaps in other processes, and returns the results in
order. The planner's caller passes one in: the pure core starts no processes."""


def serially(work: Callable[[int, int], Columns], n: int) -> list[Columns]:
    """The default fan-out: all the work here, as one part."""
    return [work(0, 1)]


def _grouped(preds: Iterable[Prediction], rank_of: Mapping[int, int]) -> dict[str, list[tuple[Prediction, int]]]:
    """Predictions with spans by path, each with its frames as a mask over the job's frame order."""
    masks: dict[int, tuple[tuple[int, ...], int]] = {}
    """Masks by the identity of the frames tuple (predictions share tuples; hashing a
    10,000-frame tuple for every prediction costs more than the mask), the tuple kept alive."""
    by_path: dict[str, list[tuple[Prediction, int]]] = {}
    for p in preds:
        if not p.spans:
            continue
        known = masks.get(id(p.frames))
        if known is None:
            known = masks[id(p.frames)] = (p.frames, sum(1 << rank_of[f] for f in set(p.frames)))
        by_path.setdefault(p.path, []).append((p, known[1]))
    return by_path


def order_ranges(preds: Iterable[Prediction], job_frames: list[int], sizes: Mapping[str, int],
                 granule: int, max_gap: int = 0, max_bytes: int | None = None,
                 max_range: int = 64 << 20, deferred: Iterable[tuple[str, Deferred]] = (),
                 fan_out: FanOut = serially, parts: int = 1) -> Ordered:
    """Granule-aligned, budgeted, ordered ranges for the plan.

    Without a budget each file is cut and joined on its own, so only one file's segments
    exist at a time, and the files (with the `deferred` ones' predictions, made there) are
    shared among `parts` parts that `fan_out` runs: files are independent until the final
    sort, which orders ranges of different files by key alone. A budget weighs every
    segment of the job, in one part."""
    rank_of = {f: i for i, f in enumerate(job_frames)}
    by_path = _grouped(preds, rank_of)
    later = dict(deferred)
    if max_bytes is None:
        paths = [*by_path, *(p for p in later if p not in by_path)]

        def work(i: int, n: int) -> Columns:
            out = _Pieces()
            for path in paths[i::n]:
                ps = by_path.pop(path, None)  # each file's masks freed once it is cut (1.2 KB each at 10,000 frames)
                if ps is None:  # a deferred file: its predictions made here, and gone with its ranges
                    ps = _grouped(later[path](), rank_of).get(path)
                if ps:
                    _runs(path, _segments(ps, granule, sizes[path]), granule, sizes[path], max_gap,
                          max_range, job_frames, out)
            return out.columns()

        done = fan_out(work, max(1, min(parts, len(paths))))
        kept = _Pieces.adopt(done.pop(0))  # the first part's columns taken, not copied; each other freed once merged
        while done:
            kept.extend(done.pop(0))
        return Ordered(kept.ordered(), RangeTable())
    kept, lost = _Pieces(), _Pieces()
    for make in later.values():
        by_path.update(_grouped(make(), rank_of))
    segs, dropped = _budget({path: _segments(ps, granule, sizes[path]) for path, ps in by_path.items()},
                            sizes, granule, max_bytes)
    for path, ss in segs.items():
        _runs(path, ss, granule, sizes[path], max_gap, max_range, job_frames, kept)
    for path, ss in dropped.items():
        _runs(path, ss, granule, sizes[path], 0, max_range, job_frames, lost)
    return Ordered(kept.ordered(), lost.table(range(len(lost))))


def _budget(segs: dict[str, list[_Seg]], sizes: Mapping[str, int], granule: int,
            max_bytes: int) -> tuple[dict[str, list[_Seg]], dict[str, list[_Seg]]]:
    """Keep the segments worth the most frames per byte until the budget is spent; among equals,
    coarse tiers before fine, then small segments before large (a small file done whole, rather
    than a part of a large one), then early frames before late."""
    items = sorted(((-s.value, s.last, s.tier, s.end - s.start, s.rank, path, s.start), s)
                   for path, ss in segs.items() for s in ss)
    kept: dict[str, list[_Seg]] = {}
    dropped: dict[str, list[_Seg]] = {}
    left = max_bytes
    for (*_, path, _start), s in items:
        end = min(s.end * granule, sizes[path])
        nbytes = end - s.start * granule
        if nbytes <= left:
            kept.setdefault(path, []).append(s)
            left -= nbytes
            continue
        fit = left // granule
        if fit > 0:
            head = _Seg(s.start, s.start + fit, s.rank, s.count, s.reason, s.tier, s.last)
            kept.setdefault(path, []).append(head)
            left -= fit * granule
            s = _Seg(s.start + fit, s.end, s.rank, s.count, s.reason, s.tier, s.last)
        dropped.setdefault(path, []).append(s)
    for ss in (*kept.values(), *dropped.values()):
        ss.sort(key=lambda s: s.start)
    return kept, dropped
