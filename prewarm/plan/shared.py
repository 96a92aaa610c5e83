"""Traced files many frames read (`plan/predict.py` describes the models): the spans common to the
frames reading a file go to every frame; what is frame-specific is placed for other frames by a
progression (a region moving steadily with the frame), the region model of a shared cache
(`analyse_regions`), or the neighbouring traced frames' reads (`neighbour_groups`). A structured
file is predicted in tile space (`plan/texture.py`). What traced frames read goes to frames whose
traced neighbours did not read it as occasional, last.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, pairwise

from prewarm.plan.knobs import PredictOptions
from prewarm.plan.prediction import Prediction
from prewarm.plan.ranges import Span, clip, clip_normal, covered_by, intersect, normalize, subtract, total, widen
from prewarm.plan.records import Reason
from prewarm.plan.structure import Structure
from prewarm.plan.texture import META_TIER, coarser, footprints, grow, predict_tiles, tiers

# ---------------------------------------------------------------- span statistics

def _hull(spans: list[Span]) -> Span | None:
    return (spans[0][0], spans[-1][1]) if spans else None


@dataclass(frozen=True)
class _Progression:
    """start(f) = a + b*f, end(f) = c + d*f, from a least-squares fit of frame-specific hulls."""

    a: float
    b: float
    c: float
    d: float
    slack: int

    def region(self, frame: int, size: int) -> list[Span]:
        s = int(self.a + self.b * frame) - self.slack
        e = int(self.c + self.d * frame) + self.slack
        return clip([(s, e)], size)


def _fit_line(xs: list[int], ys: list[int]) -> tuple[float, float, float]:
    n = len(xs)
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    worst = max(abs(y - (a + b * x)) for x, y in zip(xs, ys, strict=True))
    return a, b, worst


@dataclass(frozen=True)
class _Progressions:
    """Several frame-specific regions, each moving at its own stride (see `fit_progression`)."""

    parts: tuple[_Progression, ...]

    def region(self, frame: int, size: int) -> list[Span]:
        return normalize(s for p in self.parts for s in p.region(frame, size))


MAX_PARTS = 8
"""Frame-specific regions fitted one by one when every training frame reads that many."""


def fit_progression(specific: Mapping[int, list[Span]]) -> _Progression | _Progressions | None:
    """A frame-specific region moving at a steady stride, or None.

    Needs three frames: two points always fit a line. Requires a real stride, a
    steady region length, and residuals small against the region's length. When the
    frames' regions do not fit as one but every frame reads the same number of
    separate spans, each is fitted on its own: a USD crate's time sample is its value
    block (240 KB further per frame in tests/data/usd_traces) and its 8-byte entry in
    the value table near the end of the file (8 bytes further per frame).
    """
    whole = _fit_hulls({t: h for t, sp in specific.items() if (h := _hull(sp)) is not None})
    if whole is not None:
        return whole
    counts = {len(sp) for sp in specific.values() if sp}
    if len(counts) != 1 or not 1 < (k := counts.pop()) <= MAX_PARTS:
        return None
    parts = [_fit_hulls({t: sp[i] for t, sp in specific.items() if sp}) for i in range(k)]
    return _Progressions(tuple(p for p in parts if p is not None)) if all(parts) else None


def _fit_hulls(hulls: Mapping[int, Span]) -> _Progression | None:
    pts = sorted(hulls.items())
    if len(pts) < 3:
        return None
    xs = [t for t, _ in pts]
    starts = [h[0] for _, h in pts]
    ends = [h[1] for _, h in pts]
    lengths = [e - s for s, e in zip(starts, ends, strict=True)]
    if min(lengths) <= 0 or max(lengths) > 1.5 * min(lengths):
        return None
    a, b, ws = _fit_line(xs, starts)
    c, d, we = _fit_line(xs, ends)
    mean_len = sum(lengths) / len(lengths)
    tol = max(4096.0, 0.05 * mean_len)
    if abs(b) < 0.5 * mean_len / max(1, (xs[-1] - xs[0])) or ws > tol or we > tol:
        return None
    return _Progression(a, b, c, d, slack=int(max(ws, we)) + 1)


# ---------------------------------------------------------------- neighbours

def _neighbours(train: list[int], frame: int, k: int) -> tuple[int, ...]:
    """The k nearest training frames at or before `frame` and the k at or after it."""
    i = bisect_left(train, frame)
    if i < len(train) and train[i] == frame:
        return (frame,)
    before = train[max(0, i - k):i]
    after = train[i:i + k]
    return tuple(before) + tuple(after)


# ---------------------------------------------------------------- shared files: common spans, regions, neighbours

Groups = list[tuple[tuple[int, ...], bool, list[int]]]


def neighbour_groups(train: list[int], job: list[int], k: int) -> Groups:
    """Job frames grouped by the training frames they borrow from, the same for every file.

    A traced frame is its own group (`exact`): it reads what it was seen reading.
    """
    trained = set(train)
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = defaultdict(list)
    for f in job:
        exact = f in trained
        groups[((f,) if exact else _neighbours(train, f, k), exact)].append(f)
    return [(nb, exact, frames) for (nb, exact), frames in groups.items()]


@dataclass(frozen=True)
class _Regions:
    """What the traced frames' own regions of a shared cache say about unseen frames' regions."""

    hulls: Mapping[int, Span]
    sample: Span
    """Where every region lies: between the common spans (archive header, index) around them."""
    ordered: bool
    """Regions advance with the frame number: a frame between two traced ones lies between them."""
    repeats: bool
    """Some frame read a region another frame read (a cycle, a hold: identical samples stored once)."""
    progression: _Progression | _Progressions | None


def _sample_span(common: list[Span], hulls: Iterable[Span], size: int) -> Span:
    hs = list(hulls)
    lo, hi = min(h[0] for h in hs), max(h[1] for h in hs)
    before = [e for s, e in common if e <= lo]
    after = [s for s, e in common if s >= hi]
    return (max(before) if before else 0, min(after) if after else size)


def analyse_regions(specific: Mapping[int, list[Span]], common: list[Span], size: int,
                    compact: float) -> _Regions | None:
    """The region model of a shared file, or None when frames' own reads are scattered, not regions."""
    hulls = {t: h for t, sp in specific.items() if (h := _hull(sp)) is not None}
    if len(hulls) < 2 or any(total(specific[t]) < compact * (h[1] - h[0]) for t, h in hulls.items()):
        return None
    frames = sorted(hulls)
    ordered = all(hulls[a][0] < hulls[b][0] for a, b in pairwise(frames))
    repeats = _repeats(specific, hulls)
    return _Regions(hulls, _sample_span(common, hulls.values(), size), ordered, repeats,
                    fit_progression(specific) if ordered and not repeats else None)


def _same_region(a: list[Span], b: list[Span]) -> bool:
    return total(intersect(a, b)) >= 0.5 * min(total(a), total(b))


def _repeats(specific: Mapping[int, list[Span]], hulls: Mapping[int, Span]) -> bool:
    """Does some frame read a region another frame read? Only frames whose hulls overlap are compared."""
    by_start = sorted(hulls, key=lambda t: hulls[t])
    for i, a in enumerate(by_start):
        for b in by_start[i + 1:]:
            if hulls[b][0] >= hulls[a][1]:
                break
            if _same_region(specific[a], specific[b]):
                return True
    return False


OFF_SAMPLE = 0.1
"""A progression's region may stick out of the sample data by this share of its length (fit error);
further out, the progression has run off the data (a cycle, a hold, the end of the shot)."""


def _region_for(reg: _Regions, frame: int, nb: tuple[int, ...], specific: Mapping[int, list[Span]],
                size: int) -> tuple[list[Span], Reason]:
    """Where an unseen frame's region lies, and how sure that is.

    A steady progression that stays inside the sample data is extrapolated; between
    two traced frames of ordered regions, the frame's region lies between theirs;
    two neighbours holding one region share it. Anything else (a cycle, regions out
    of frame order, a progression running off the sample data) cannot be placed: the
    whole sample data, bounded by the file, rather than a guess that misses.
    """
    lo, hi = reg.sample
    if reg.progression is not None:
        region = reg.progression.region(frame, size)
        if region:
            tol = OFF_SAMPLE * (region[-1][1] - region[0][0])
            if region[0][0] >= lo - tol and region[-1][1] <= hi + tol:
                return region, Reason.PROGRESSION
    before = [t for t in nb if t < frame and t in reg.hulls]
    after = [t for t in nb if t > frame and t in reg.hulls]
    if before and after:
        a, b = max(before), min(after)
        if reg.ordered and not reg.repeats:
            return [(reg.hulls[a][0], reg.hulls[b][1])], Reason.NEIGHBOURS
        if _same_region(specific[a], specific[b]):
            return normalize(specific[a] + specific[b]), Reason.NEIGHBOURS
    return [(lo, hi)], Reason.REGION


def _place(frame: int, progression: _Progression | _Progressions | None, regions: _Regions | None,
           near: tuple[int, ...], specific: Mapping[int, list[Span]], size: int) -> tuple[list[Span], Reason]:
    """An unseen frame's region of a shared file: extrapolated, or by the region model."""
    if progression is not None:
        return progression.region(frame, size), Reason.PROGRESSION
    assert regions is not None
    return _region_for(regions, frame, near, specific, size)


def predict_shared(path: str, size: int, per: Mapping[int, list[Span]], train: list[int],
                    groups: Groups, opts: PredictOptions, every: tuple[int, ...] = (),
                    occasional: bool = True) -> Iterator[Prediction]:
    """`every`: all the groups' frames in group order, shared by the files every group reads
    (a plan of 10,000 frames would otherwise hold a 10,000-frame tuple per shared file).
    `occasional`: plan what traced frames read for frames whose neighbours did not read it.

    Frames' own reads that are one region each go to the region model; scattered ones
    (several far spans a frame, as a USD crate's value block and its table entry) are
    extrapolated when each moves steadily, else borrowed from the neighbours."""
    readers = sorted(per)
    need = max(1, math.ceil(opts.common_share * len(readers)))
    common = clip_normal(covered_by(per.values(), need), size)
    specific = {t: subtract(clip_normal(per[t], size), common) for t in readers}
    regions = analyse_regions(specific, common, size, opts.compact)
    progression = fit_progression(specific) if regions is None else None
    everyone = len(readers) >= opts.always_share * len(train)

    present: list[int] = []
    included = 0
    borrow: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    placed: dict[tuple[tuple[Span, ...], Reason], list[int]] = defaultdict(list)
    reads = per.__contains__
    absent: list[int] = []
    for nb, exact, frames in groups:
        reading = tuple(filter(reads, nb))  # C-level: groups x shared files of them a plan
        if exact:
            if reading:
                present.extend(frames)
                included += 1
                borrow[(reading, True)] = frames
            continue
        if not (reading or everyone or progression):
            absent.extend(frames)
            continue
        present.extend(frames)
        included += 1
        if progression is None and regions is None:
            borrow.setdefault((reading, False), []).extend(frames)
            continue
        for f in frames:
            spans, why = _place(f, progression, regions, reading or _neighbours(readers, f, opts.neighbours),
                                specific, size)
            placed[(tuple(spans), why)].append(f)
    if common and present:
        yield Prediction(path, every if included == len(groups) and every else tuple(present), common, Reason.TRACE)
    for (nb, exact), frames in borrow.items():
        spans = normalize(list(chain.from_iterable(map(specific.__getitem__, nb))))
        if not exact:
            spans = widen(spans, opts.spread, size)
        if spans:
            yield Prediction(path, tuple(frames), spans, Reason.TRACE if exact else Reason.NEIGHBOURS)
    for (spans_t, why), frames in placed.items():
        region = subtract(list(spans_t), common)
        if region:
            yield Prediction(path, tuple(frames), region, why)
    yield from _occasional(path, absent if occasional else [],
                           [(META_TIER, clip(list(chain.from_iterable(per.values())), size))])


def _occasional(path: str, frames: list[int], by_tier: list[tuple[int, list[Span]]]) -> Iterator[Prediction]:
    """What the traced frames read of a file, for `frames`, whose traced neighbours did not read it
    (a decal every 12th frame): after everything they are known to read, the first a budget drops."""
    if frames:
        for tier, spans in by_tier:
            if spans:
                yield Prediction(path, tuple(frames), spans, Reason.OCCASIONAL, tier, last=True)


def predict_texture(path: str, st: Structure, per: Mapping[int, list[Span]], train: list[int],
                     groups: Groups, opts: PredictOptions, occasional: bool = True) -> Iterator[Prediction]:
    """A structured file read by traced frames: tiles in texture space (`prewarm.plan.texture`)."""
    readers = sorted(per)
    fps = footprints(st, per)
    rest = normalize(s for t in readers for s in st.tiles_read(per[t])[1])
    everyone = len(readers) >= opts.always_share * len(train)
    present: list[int] = []
    by_tiles: dict[frozenset[tuple[tuple[int, int, int], Reason]], list[int]] = defaultdict(list)
    memo: dict[tuple[tuple[int, ...], bool, int, bool], frozenset[tuple[tuple[int, int, int], Reason]]] = {}
    absent: list[int] = []
    for nb, exact, frames in groups:
        reading = tuple(t for t in nb if t in per)
        if exact:
            if reading:
                present.extend(frames)
                by_tiles[frozenset((t, Reason.TRACE) for t in fps[reading[0]])].extend(frames)
            continue
        if not (reading or everyone):
            absent.extend(frames)
            continue
        present.extend(frames)
        for f in frames:
            near = reading or _neighbours(readers, f, opts.neighbours)
            # the prediction depends on the frame only through its sides and its distance
            bracketed = min(near) < f < max(near)
            key = (near, bracketed, 0 if bracketed else min(abs(f - t) for t in near), f > max(near))
            if key not in memo:
                memo[key] = frozenset(predict_tiles(st, fps, f, near, opts.texture).items())
            by_tiles[memo[key]].append(f)
    if present:
        yield Prediction(path, tuple(present), normalize([*st.meta, *rest]), Reason.TRACE, META_TIER)
    for tiles, frames in by_tiles.items():
        by_reason: dict[Reason, list[tuple[int, int, int]]] = defaultdict(list)
        for t, why in tiles:
            by_reason[why].append(t)
        for why, ts in by_reason.items():
            for tier, spans in tiers(st, ts):
                yield Prediction(path, tuple(frames), spans, why, tier, last=why is Reason.FINER_FAR)
    if absent and occasional:
        seen = grow(st, (t for fp in fps.values() for t in fp), opts.texture.grow)
        yield from _occasional(path, absent, [(META_TIER, normalize([*st.meta, *rest])),
                                              *tiers(st, seen | coarser(st, seen))])
