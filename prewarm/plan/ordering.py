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

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from prewarm.plan.model import PlannedRange, Reason
from prewarm.plan.predict import Prediction

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
    Reason.UNREAD_TILE: 0.2,
}
"""How sure a reason is: it scales a segment's value under a budget and ranks equals."""


@dataclass(slots=True)
class _Seg:
    """Granules `[start, end)` of one file over which frames, reason, tier and lateness are the same."""

    start: int
    end: int
    frames: int      # bitset over the job's frame order: bit i = the i-th frame needs it
    reason: Reason
    tier: int
    last: bool

    @property
    def rank(self) -> int:
        """Index in the job's frame order of the first frame needing it."""
        return (self.frames & -self.frames).bit_length() - 1

    @property
    def count(self) -> int:
        return self.frames.bit_count()

    @property
    def value(self) -> float:
        return self.count * CONFIDENCE[self.reason]


@dataclass(frozen=True)
class Ordered:
    ranges: list[PlannedRange]
    dropped: list[PlannedRange]


def _segments(preds: list[tuple[Prediction, int]], granule: int, size: int) -> list[_Seg]:
    """One file's predictions (with their frame masks) cut into segments of constant properties.

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
    frames, sure, tier = [0] * n, [-1.0] * n, [0] * n
    reason: list[Reason | None] = [None] * n
    last = [True] * n
    for a, b, p, mask in spans:
        c, t, r, late = CONFIDENCE[p.reason], p.tier, p.reason, p.last
        for i in range(bisect_left(bounds, a), bisect_left(bounds, b)):
            frames[i] |= mask
            if sure[i] < 0:
                sure[i], reason[i], tier[i] = c, r, t
            else:
                if c > sure[i]:
                    sure[i], reason[i] = c, r
                if t < tier[i]:
                    tier[i] = t
            if not late:
                last[i] = False
    return [_Seg(bounds[i], bounds[i + 1], frames[i], cast(Reason, reason[i]), tier[i], last[i])
            for i in range(n) if sure[i] >= 0]


def _runs(path: str, segs: list[_Seg], granule: int, size: int, max_gap: int, max_len: int,
          frame_at: list[int]) -> list[tuple[PlannedRange, _Seg]]:
    """Join neighbouring segments of one file that share rank, reason, tier and lateness into ranges,
    each with the segment leading it (whose rank, tier and lateness order it)."""
    gap = max_gap // granule
    cap = max(1, max_len // granule)
    out: list[tuple[PlannedRange, _Seg]] = []
    run: list[_Seg] = []

    def close() -> None:
        head = run[0]
        start, end = head.start, run[-1].end
        count = max(s.count for s in run)
        while start < end:
            stop = min(end, start + cap)
            nbytes = min(stop * granule, size) - start * granule
            out.append((PlannedRange(path, start * granule, nbytes, frame_at[head.rank], count, head.reason), head))
            start = stop

    head_rank = -1
    for seg in segs:
        rank = seg.rank  # a bit scan of a job-long mask: once per segment
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
    return out


def _sort_key(r: PlannedRange, seg: _Seg) -> tuple[bool, int, int, int, str, int]:
    return seg.last, seg.rank, seg.tier, -r.frames, r.path, r.offset


def order_ranges(preds: Iterable[Prediction], job_frames: list[int], sizes: Mapping[str, int],
                 granule: int, max_gap: int = 0, max_bytes: int | None = None,
                 max_range: int = 64 << 20) -> Ordered:
    """Granule-aligned, budgeted, ordered ranges for the plan."""
    rank_of = {f: i for i, f in enumerate(job_frames)}
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
    segs = {path: _segments(ps, granule, sizes[path]) for path, ps in by_path.items()}
    dropped: dict[str, list[_Seg]] = {}
    if max_bytes is not None:
        segs, dropped = _budget(segs, sizes, granule, max_bytes)
    keyed: list[tuple[tuple[bool, int, int, int, str, int], PlannedRange]] = []
    for path, ss in segs.items():
        for r, head in _runs(path, ss, granule, sizes[path], max_gap, max_range, job_frames):
            keyed.append((_sort_key(r, head), r))
    keyed.sort(key=lambda kr: kr[0])
    lost: list[PlannedRange] = []
    for path, ss in dropped.items():
        lost.extend(r for r, _ in _runs(path, ss, granule, sizes[path], 0, max_range, job_frames))
    return Ordered([r for _, r in keyed], lost)


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
            head = _Seg(s.start, s.start + fit, s.frames, s.reason, s.tier, s.last)
            kept.setdefault(path, []).append(head)
            left -= fit * granule
            s = _Seg(s.start + fit, s.end, s.frames, s.reason, s.tier, s.last)
        dropped.setdefault(path, []).append(s)
    for ss in (*kept.values(), *dropped.values()):
        ss.sort(key=lambda s: s.start)
    return kept, dropped
