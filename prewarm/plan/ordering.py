"""From predictions to the plan's ordered ranges: granules, budget, order. Pure.

Everything is decided per granule (the unit the gateway fetches): for each granule,
the earliest job frame that needs it, how many frames need it, and the most certain
reason it is there. The budget keeps the granules that serve the most frames per
byte (weighted by how certain the prediction is); the order puts what the first
frames need, and what most frames need, first; uncertain fallbacks go last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prewarm.plan.model import PlannedRange, Reason
from prewarm.plan.predict import Prediction

CONFIDENCE = {
    Reason.TRACE: 1.0,
    Reason.WHOLE: 1.0,
    Reason.PATTERN: 1.0,
    Reason.PROGRESSION: 0.9,
    Reason.ANCHORED: 0.9,
    Reason.NEIGHBOURS: 0.7,
    Reason.FALLBACK: 0.3,
}
"""How sure a reason is: it scales a granule's value under a budget and ranks equals."""

_FALLBACK_TIER = 1


@dataclass(slots=True)
class _Granule:
    frames: int      # bitset over the job's frame order: bit i = the i-th frame needs it
    reason: Reason

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


def _granules(preds: Iterable[Prediction], rank_of: Mapping[int, int], granule: int,
              sizes: Mapping[str, int]) -> dict[str, dict[int, _Granule]]:
    """Per file, per granule index: which frames need it (a union, so no frame counts twice)."""
    out: dict[str, dict[int, _Granule]] = {}
    masks: dict[int, tuple[tuple[int, ...], int]] = {}
    """Masks by the identity of the frames tuple (predictions share tuples; hashing a
    10,000-frame tuple for every prediction costs more than the mask), the tuple kept alive."""
    for p in preds:
        if not p.spans:
            continue
        known = masks.get(id(p.frames))
        if known is None:
            known = masks[id(p.frames)] = (p.frames, sum(1 << rank_of[f] for f in set(p.frames)))
        mask = known[1]
        conf = CONFIDENCE[p.reason]
        per = out.setdefault(p.path, {})
        limit = -(-sizes[p.path] // granule)
        for g in {g for s, e in p.spans for g in range(s // granule, min(-(-e // granule), limit))}:
            cur = per.get(g)
            if cur is None:
                per[g] = _Granule(mask, p.reason)
            else:
                cur.frames |= mask
                if conf > CONFIDENCE[cur.reason]:
                    cur.reason = p.reason
    return out


def _runs(path: str, per: Mapping[int, _Granule], granule: int, size: int, max_gap: int,
          max_len: int, frame_at: list[int]) -> list[PlannedRange]:
    """Join neighbouring granules of one file that share rank and reason into ranges."""
    gap = max_gap // granule
    cap = max(1, max_len // granule)
    out: list[PlannedRange] = []
    start = prev = -1
    head: _Granule | None = None
    count = 0

    def close() -> None:
        assert head is not None
        end = min((prev + 1) * granule, size)
        out.append(PlannedRange(path, start * granule, end - start * granule,
                                frame_at[head.rank], count, head.reason))

    for g in sorted(per):
        info = per[g]
        if head is not None and g - prev - 1 <= gap and info.rank == head.rank \
                and info.reason == head.reason and g - start < cap:
            prev = g
            count = max(count, info.count)
            continue
        if head is not None:
            close()
        start = prev = g
        head = info
        count = info.count
    if head is not None:
        close()
    return out


def order_ranges(preds: Iterable[Prediction], job_frames: list[int], sizes: Mapping[str, int],
                 granule: int, max_gap: int = 0, max_bytes: int | None = None,
                 max_range: int = 64 << 20) -> Ordered:
    """Granule-aligned, budgeted, ordered ranges for the plan."""
    rank_of = {f: i for i, f in enumerate(job_frames)}
    grans = _granules(preds, rank_of, granule, sizes)
    dropped: dict[str, dict[int, _Granule]] = {}
    if max_bytes is not None:
        grans, dropped = _budget(grans, sizes, granule, max_bytes)
    ranges: list[PlannedRange] = []
    for path, per in grans.items():
        ranges.extend(_runs(path, per, granule, sizes[path], max_gap, max_range, job_frames))
    ranges.sort(key=lambda r: (_FALLBACK_TIER if r.reason == Reason.FALLBACK else 0,
                               rank_of.get(r.frame, 0) if r.frame is not None else 0,
                               -r.frames, r.path, r.offset))
    lost: list[PlannedRange] = []
    for path, per in dropped.items():
        lost.extend(_runs(path, per, granule, sizes[path], 0, max_range, job_frames))
    return Ordered(ranges, lost)


def _budget(grans: dict[str, dict[int, _Granule]], sizes: Mapping[str, int], granule: int,
            max_bytes: int) -> tuple[dict[str, dict[int, _Granule]], dict[str, dict[int, _Granule]]]:
    """Keep the granules worth the most frames per byte until the budget is spent."""
    items = []
    for path, per in grans.items():
        size = sizes[path]
        for g, info in per.items():
            nbytes = min((g + 1) * granule, size) - g * granule
            items.append((-info.value / nbytes, info.rank, path, g, nbytes))
    items.sort()
    kept: dict[str, dict[int, _Granule]] = {}
    dropped: dict[str, dict[int, _Granule]] = {}
    spent = 0
    for _, _, path, g, nbytes in items:
        target = kept if spent + nbytes <= max_bytes else dropped
        if target is kept:
            spent += nbytes
        target.setdefault(path, {})[g] = grans[path][g]
    return kept, dropped
