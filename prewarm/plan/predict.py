"""Predict which spans of which files each job frame will read. Pure (file sizes come
through an injected `lookup`).

Models, chosen per file from what the training frames (frames with traces) did:

* **Per-frame files** (`cache.0042.bgeo` read by frame 42): a traced path holding a
  number within `max_delta` of the frame that read it is a candidate sequence; a
  sequence is accepted when several frames each read their own member (motion blur:
  frame F reading F+1's file is a sequence with delta +1) and the number follows the
  frame: frames read members relative to their own number, no member is read by most
  frames far from its number, and no file of a tile pattern (`<UDIM>`) is a member.
  Shots are numbered from 1001 like UDIM tiles: `diff.1001.tx` and `diff.1002.tx` read
  by frames 1001 and 1002 alike are a tile set. Another frame's member is
  predicted read the way members were: whole, or by spans anchored to the file's
  start and end (headers, offset tables, footers survive a different size).
* **Shared files** read by many frames: spans read by at least `common_share` of the
  frames reading the file are read by every frame (scene files, environment maps,
  the Alembic header). What remains is frame-specific: if its position moves
  linearly with the frame (an Alembic cache holding the whole shot) unseen frames'
  regions are extrapolated; otherwise an unseen frame borrows the frame-specific
  spans of its `neighbours` nearest training frames on each side (tiled textures:
  the tiles and MIP levels change slowly with the camera). `neighbours` is the knob
  that trades coverage for bytes.
* **Structured files** (a reader found levels and tiles: `.tx`, tiled EXR): predicted in
  tile space by `prewarm.plan.texture` (footprints grown by tiles, children one level
  finer on a push-in, coarser levels over every region), headers and tables first; far
  beyond the traced frames, levels finer still under the footprint's centre (reason
  `finer_far`), after everything the frames are known to read.
* **Regions of a shared cache** (an Alembic archive: a compact region per frame): a steady
  progression inside the sample data is extrapolated; a frame between two traced
  frames of ordered regions lies between them; anything else (repeats of a cycle,
  holds, regions out of frame order, a progression running off the data) cannot be
  placed, and gets the span of the sample data every region lies in.
* **Never seen** (no trace read the file, or there are no traces): warmed whole up to
  `unseen_cap`; larger files get their head and tail (where every format keeps its
  header, offset tables and footer). These come last in the plan. A structured file
  comes by its levels: header, tables and levels up to `unseen_coarse` early, finer
  levels last (within the cap, coarse first), so a budget drops the finest first.
  A tile of a tile set that no traced frame read while a sibling was read is planned
  the same way, with reason `unread_tile` (the shots looked elsewhere so far; a frame
  that turns to it reads its header and a few coarse tiles): no level finer than the
  coarsest each traced frame read its siblings at (the finest of those), only for frames
  beyond the traced ones by more than their spacing, and a budget drops it first.
* **Re-published files** (traces from the store, `TraceSet.filed`): a structured file whose
  digest changed since its traces were filed, at the same levels and tile sizes, is
  predicted from the traced tiles at its new offsets; other levels or tile sizes, or
  traced reads that do not fit the file (`_misfit`), or, from raw `--traces`, a size now
  other than their `fstat`/`statx` returned, plan it by its levels. Either way a finding
  says so: a traced file is never dropped in silence.
* **Occasional files** (a decal every 12th frame, a prop that enters): a file a frame's
  traced neighbours did not read is still planned for it, with the footprint the traced
  frames read (`occasional`), after everything the frame is known to read; not a file
  whose name holds the number of a frame that read it (that frame's own file).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain, pairwise
from typing import Any

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.ranges import Span, clip, clip_normal, covered_by, intersect, normalize, subtract, total, widen
from prewarm.plan.records import FileInfo, Reason
from prewarm.plan.stats import PredictStats
from prewarm.plan.structure import Filed, Structure
from prewarm.plan.texture import (
    META_TIER,
    TextureOptions,
    coarser,
    footprints,
    grow,
    predict_tiles,
    spacing,
    tiers,
    whole_by_tier,
)

MiB = 1 << 20

Lookup = Callable[[str], FileInfo | None]
Structures = Callable[[str], Structure | None]
"""A file's structure (levels, tiles, tables) when a reader could read it, else None: the byte model."""


@dataclass(frozen=True)
class PredictOptions:
    neighbours: int = 1
    """Training frames on each side whose frame-specific reads an unseen frame borrows."""
    common_share: float = 0.5
    """A span read by this share of the frames reading a file is read by every frame."""
    whole_share: float = 0.9
    """Per-frame files whose members were read to this fraction are predicted whole."""
    unseen_cap: int = 256 * MiB
    """Files no trace read are warmed whole up to this size ..."""
    probe: int = MiB
    """... and beyond it, this many bytes at the head and at the tail."""
    spread: int = 512 << 10
    """Bytes by which scattered spans borrowed from neighbouring frames are widened on each
    side (a texture whose structure could not be read: nearby tiles): coverage for bytes.
    On shot200 by bytes only, every 4th frame traced, 512 KiB gives recall 0.89 at 2.35x
    the needed bytes (`bench/predict.py`, its `bytes only` rows); 0 gave 0.87 at 1.5x."""
    always_share: float = 0.9
    """A shared file read by this share of training frames is read by every job frame."""
    max_delta: int = 2
    """How far a per-frame file's number may be from the frame reading it (motion blur)."""
    texture: TextureOptions = field(default_factory=TextureOptions)
    """The tile-space model of files whose structure was read (`prewarm.plan.texture`)."""
    unseen_coarse: int = 512
    """A never-traced texture's levels up to this resolution (pixels, the larger side) go early in
    the warm with its header and tables, finer levels last. A wide shot samples a 2k texture at
    256-512 pixels (shot200's first frames), so the first frame is ready after a few percent of it."""
    structure: bool = True
    """Read structured files' headers and tables (textures, EXR) and predict them by tile; off: bytes only."""
    compact: float = 0.5
    """A frame's own reads of a shared file are one region (an Alembic frame's samples) when they
    fill this share of their hull; scattered reads (tiles of an unread texture) are not."""


KNOBS: dict[str, tuple[str, int]] = {
    "spread": ("size", 0), "neighbours": ("int", 1), "unseen_cap": ("size", 0),
    "tile_grow": ("int", 0), "finer": ("int", 0), "unseen_coarse": ("int", 1), "structure": ("bool", 0),
}
"""The prediction knobs a manifest (`predict:`) and the command line may set: kind and least value.
`tile_grow` and `finer` are the texture model's `grow` and `finer`."""


def with_knobs(opts: PredictOptions, knobs: Mapping[str, int | bool]) -> PredictOptions:
    """`opts` with `knobs` (checked values, by the names of `KNOBS`) applied."""
    texture: dict[str, Any] = {("grow" if k == "tile_grow" else k): v for k, v in knobs.items()
                               if k in ("tile_grow", "finer")}
    plain: dict[str, Any] = {k: v for k, v in knobs.items() if k not in ("tile_grow", "finer")}
    return replace(opts, **plain, texture=replace(opts.texture, **texture))


def check_knob(name: str, value: object, size: Callable[[object], int] | None = None) -> int | bool:
    """A knob's value checked (ValueError with the reason); `size` parses sizes such as `512KiB`
    (without it a size must already be an integer of bytes)."""
    if name not in KNOBS:
        raise ValueError(f"unknown prediction knob {name!r} (one of {', '.join(KNOBS)})")
    kind, least = KNOBS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false")
        return value
    plain_int = isinstance(value, int) and not isinstance(value, bool)
    got = size(value) if kind == "size" and not plain_int and size is not None else value
    if not isinstance(got, int) or isinstance(got, bool) or got < least:
        raise ValueError(f"{name}: expected an integer >= {least}")
    return got


@dataclass(frozen=True, slots=True)
class Prediction:
    """`frames` will read `spans` of `path` (a normal span list)."""

    path: str
    frames: tuple[int, ...]
    spans: list[Span]
    reason: Reason
    tier: int = 0
    """Order within a frame's needs: 0 for headers and tables, a level's resolution for its tiles."""
    last: bool = False
    """After everything a frame is known to need: fallbacks, finest levels of never-traced textures."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file the manifest names (or a directory input holds): may be read, traces decide."""

    path: str
    frame: int | None = None
    """The job frame this file belongs to (a frame-pattern input), None for shared files."""
    whole: bool = False
    frames: tuple[int, ...] | None = None
    """A shared file read only by these frames, as a scene says (a value clip); None: every frame."""
    tile_set: int | None = None
    """Files of one tile pattern (`<UDIM>`, `<UVTILE>`) share a number: siblings."""


Deferred = Callable[[], Iterable[Prediction]]
"""One traced file's predictions, not yet made: pure work, its IO (size, structure) done."""


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): files traces say frames will read, which do not exist."""
    stats: PredictStats = field(default_factory=PredictStats)
    changed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): traced files that changed since their traces were made (re-published)."""
    deferred: list[tuple[str, Deferred]] = field(default_factory=list)
    """With `predict(defer=True)`: the shared and structured traced files, by path, whose
    predictions the ordering makes file by file, perhaps in other processes."""


# ---------------------------------------------------------------- sequences

_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class SeqKey:
    """A path with one number made a frame slot: `prefix + frame(width) + suffix`."""

    prefix: str
    width: int
    suffix: str

    def path(self, frame: int) -> str | None:
        if frame < 0:
            return None
        return f"{self.prefix}{frame:0{self.width}d}{self.suffix}"

    def display(self) -> str:
        return f"{self.prefix}{'#' * self.width or '%d'}{self.suffix}"


def _slots(path: str) -> list[tuple[int, SeqKey]]:
    """Every number in the file name (not the folders) with the key that frees it."""
    base = path.rfind("/") + 1
    out = []
    for m in _DIGITS.finditer(path, base):
        g = m.group()
        width = len(g) if g.startswith("0") or len(g) > 1 else 1
        out.append((int(g), SeqKey(path[:m.start()], width, path[m.end():])))
    return out


@dataclass
class _Sequence:
    key: SeqKey
    delta: int
    members: dict[int, str]          # training frame -> the member it read


def find_sequences(ts: TraceSet, max_delta: int, tiles: frozenset[str] = frozenset()) -> list[_Sequence]:
    """Per-frame file sequences supported by at least two training frames and by evidence that the
    number follows the frame (`_follows_frame`). `tiles`: files of a tile pattern (`<UDIM>`): a tile
    number is not a frame's, whatever frames the shot numbers (both run from 1001)."""
    cand: dict[tuple[SeqKey, int], dict[int, str]] = defaultdict(dict)
    near: dict[SeqKey, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    stray: dict[SeqKey, int] = defaultdict(int)
    files: dict[SeqKey, int] = defaultdict(int)
    for path, per in ts.reads.items():
        if path in tiles:
            continue
        for value, key in _slots(path):
            readers = [t for t in per if -max_delta <= value - t <= max_delta]
            if not readers:
                continue
            files[key] += 1
            stray[key] += int(len(readers) < len(per))
            for t in readers:
                cand[(key, value - t)][t] = path
                near[key][t].add(value)
    follows = {key for key in files if 2 * stray[key] <= files[key] and _follows_frame(near[key])}
    seqs = []
    for (key, d), members in cand.items():
        if key in follows and len(members) >= 2 and len(set(members.values())) >= 2:
            seqs.append(_Sequence(key, d, members))
    return seqs


def _follows_frame(numbers: Mapping[int, set[int]]) -> bool:
    """Do the numbers a frame reads under one key move with the frame? Frames agree more on the
    numbers relative to their own (`cache.F.bgeo`, `F+1` for motion blur) than on the numbers
    themselves (tiles 1001 and 1002 read by frames 1001 and 1002 alike: a tile set, not a sequence).
    A tie is no evidence."""
    def agreement(sets: Iterable[frozenset[int]]) -> int:
        counts: dict[frozenset[int], int] = defaultdict(int)
        for s in sets:
            counts[s] += 1
        return max(counts.values(), default=0)

    relative = agreement(frozenset(n - t for n in ns) for t, ns in numbers.items())
    return relative > agreement(frozenset(ns) for ns in numbers.values())


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


# ---------------------------------------------------------------- the models

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


def _predict_shared(path: str, size: int, per: Mapping[int, list[Span]], train: list[int],
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


def _frame_numbered(path: str, per: Mapping[int, list[Span]], max_delta: int) -> bool:
    """Does the file's name hold the number of a frame that read it (within `max_delta`)?"""
    return any(abs(value - t) <= max_delta for value, _ in _slots(path) for t in per)


def _occasional(path: str, frames: list[int], by_tier: list[tuple[int, list[Span]]]) -> Iterator[Prediction]:
    """What the traced frames read of a file, for `frames`, whose traced neighbours did not read it
    (a decal every 12th frame): after everything they are known to read, the first a budget drops."""
    if frames:
        for tier, spans in by_tier:
            if spans:
                yield Prediction(path, tuple(frames), spans, Reason.OCCASIONAL, tier, last=True)


def _predict_texture(path: str, st: Structure, per: Mapping[int, list[Span]], train: list[int],
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


@dataclass
class _Shape:
    """How members of a sequence are read, independent of each member's size."""

    whole: bool
    head: list[Span]         # offsets from the start
    tail: list[Span]         # (distance of end from EOF, distance of start from EOF)

    def spans(self, size: int) -> list[Span]:
        if self.whole:
            return [(0, size)] if size > 0 else []
        tail = [(size - ds, size - de) for de, ds in self.tail]
        return clip(self.head + tail, size)


def _shape(instances: Iterable[tuple[list[Span], int]], whole_share: float) -> _Shape:
    fractions = []
    head: list[Span] = []
    tail: list[Span] = []
    for spans, size in instances:
        size = max(size, spans[-1][1] if spans else 0)
        fractions.append(total(spans) / size if size else 1.0)
        for s, e in spans:
            if s < size / 2:
                head.append((s, e))
            else:
                tail.append((size - e, size - s))
    whole = bool(fractions) and sum(fractions) / len(fractions) >= whole_share
    return _Shape(whole, normalize(head), normalize(tail))


def predict(job: Iterable[int], candidates: Iterable[Candidate], ts: TraceSet, lookup: Lookup,
            traced_ok: Callable[[str], bool] = lambda p: True,
            opts: PredictOptions = PredictOptions(),
            structure: Structures = lambda p: None, defer: bool = False) -> PredictResult:
    """Predictions for every job frame; see the module docstring for the models.

    `traced_ok` says which traced files may enter the plan although no manifest
    input names them (the caller keeps them to the job's folders and roots).
    `structure` gives a file's levels and tiles where a reader could read them.
    `defer`: leave the traced shared and structured files' predictions in `deferred`
    (the bulk of the work of a long job), each file's to be made on its own.
    """
    job_frames = list(dict.fromkeys(job))
    train = sorted(ts.frames)
    result = PredictResult()
    explained: set[str] = set()
    candidates = list(candidates)
    tiles = frozenset(c.path for c in candidates if c.tile_set is not None)
    seqs = find_sequences(ts, opts.max_delta, tiles) if train else []
    in_sequence = {p for s in seqs for p in s.members.values()}
    for seq in seqs:
        _predict_sequence(seq, job_frames, ts, lookup, traced_ok, opts, result, explained)
    result.stats.sequences = len(seqs)

    shared = textures = 0
    result.stats.remapped_files = result.stats.identity_unknown = 0
    groups = neighbour_groups(train, job_frames, opts.neighbours)
    every = tuple(f for _, _, frames in groups for f in frames)
    for p, per in ts.reads.items():
        if p in in_sequence or p in explained or not traced_ok(p):
            continue
        info = lookup(p)
        explained.add(p)
        if info is None:
            result.missing.append((p, "not found: earlier renders of this shot read it"))
            continue
        shared += 1
        st = structure(p)
        make: Deferred
        reads, misfit = _fitted(p, st, per, info.size, None if ts.filed is None else ts.filed.get(p, {}), result,
                                ts.sizes.get(p, {}))
        if st is not None and misfit:
            result.predictions.extend(_by_levels(p, st, job_frames, Reason.FALLBACK, opts))
            continue
        # a file named by its reader's frame number (a per-frame file no sequence explained) is
        # that frame's, not an occasional file of every frame
        occasional = p in tiles or not _frame_numbered(p, reads, opts.max_delta)
        if st is not None:
            textures += 1
            make = partial(_predict_texture, p, st, reads, train, groups, opts, occasional)
        else:
            make = partial(_predict_shared, p, info.size, reads, train, groups, opts, every, occasional)
        if defer:
            result.deferred.append((p, make))
        else:
            result.predictions.extend(make())
    result.stats.shared_files = shared
    result.stats.changed_since_traced = len(result.changed) - result.stats.identity_unknown
    result.stats.tiled_files = textures
    _predict_unseen(candidates, job_frames, ts, lookup, structure, opts, result, explained)
    return result


def _predict_sequence(seq: _Sequence, job_frames: list[int], ts: TraceSet, lookup: Lookup,
                      traced_ok: Callable[[str], bool], opts: PredictOptions, result: PredictResult,
                      explained: set[str]) -> None:
    sizes = []
    for t, p in seq.members.items():
        info = lookup(p)
        sizes.append((ts.reads[p][t], info.size if info else 0))
    shape = _shape(sizes, opts.whole_share)
    for f in job_frames:
        member = seq.key.path(f + seq.delta)
        if member is None or not traced_ok(member):
            continue
        explained.add(member)
        info = lookup(member)
        if info is None:
            result.missing.append((member, f"not found: frame {f} should read it ({seq.key.display()})"))
            continue
        if f in ts.reads.get(member, {}):
            result.predictions.append(Prediction(member, (f,), clip_normal(ts.reads[member][f], info.size),
                                                 Reason.TRACE))
        else:
            spans = shape.spans(info.size)
            if spans:
                result.predictions.append(
                    Prediction(member, (f,), spans, Reason.PATTERN if shape.whole else Reason.ANCHORED))


def _by_levels(path: str, st: Structure, frames: Iterable[int], reason: Reason, opts: PredictOptions,
               finest: int | None = None) -> Iterator[Prediction]:
    """A texture no usable trace says anything about: header and tables, then levels coarse before
    fine up to `unseen_cap` (and no finer than `finest` pixels, when given); levels finer than
    `unseen_coarse` last."""
    room = opts.unseen_cap
    frames = tuple(frames)
    for tier, spans in whole_by_tier(st):
        room -= total(spans)
        if tier != META_TIER and (room < 0 or (finest is not None and tier > finest)):
            break  # coarse levels fit the cap (and the finest asked for), finer ones do not
        yield Prediction(path, frames, spans, reason, tier, last=tier > opts.unseen_coarse)


@dataclass(frozen=True, slots=True)
class _Refit:
    """A structured file's traced reads made to fit the file as it is now (`_refit`)."""

    reads: Mapping[int, list[Span]]
    lost: str | None = None
    """Why the traced tiles mean nothing in the file now (other levels or tile sizes)."""
    note: str | None = None
    """The finding when the reads were mapped, or their identity is unknown."""
    moved: int = 0
    unknown: int = 0


def _refit(st: Structure | None, per: Mapping[int, list[Span]], filed: Mapping[int, Filed] | None,
           size: int, stat_sizes: Mapping[int, int] | None = None) -> _Refit:
    """The traced reads of a structured file, at the offsets of the file as it is now.

    From the trace store (`filed` is not None), each frame's reads were filed in tiles with the
    file's identity then. Same digest: the traced offsets hold. Another digest of the same shape
    (a re-published texture: another compression, a colour tweak): its tiles are the same tiles at
    new offsets, read with the new header and tables. Another shape (other levels or tile sizes):
    the tiles mean nothing here (`lost`). A frame filed with no identity (an older prewarm) keeps its
    byte offsets, said once per file. A file structured when filed whose structure cannot be read now
    (`st` None) and whose size changed is `lost` too: the byte model plans it, with a finding.
    Raw traces carry no identity, only the sizes their stat calls returned (`stat_sizes`, by frame):
    another size now says the file changed (`lost`, as another shape), else their reads as they are."""
    if filed is None:
        stated = set((stat_sizes or {}).values())
        if stated and stated != {size}:
            return _Refit(per, f"{max(stated):,} bytes when traced (its traced stat), {size:,} now")
        return _Refit(per)
    if st is None:  # structured when filed, unreadable now: if it changed, the byte model says so
        sizes = {v.identity.size for f, v in filed.items() if f in per}
        if sizes and sizes != {size}:
            return _Refit(per, f"its structure cannot be read now; {max(sizes):,} bytes when traced, {size:,} now")
        return _Refit(per)
    digest = st.digest()
    shape = st.shape()
    out = dict(per)
    moved = unknown = 0
    then = 0
    for f in per:
        v = filed.get(f)
        if v is None:
            unknown += 1
            continue
        if v.identity.digest == digest:
            continue
        if v.identity.shape != shape:
            return _Refit(per, f"re-published with other levels or tile sizes: {len(v.identity.shape)} levels "
                               f"of {v.identity.shape[0][2]}x{v.identity.shape[0][3]} tiles when traced, "
                               f"{len(shape)} of {shape[0][2]}x{shape[0][3]} now")
        out[f] = normalize([*st.meta, *(st.span(t) for t in v.tiles if st.has(t))])
        moved += 1
        then = v.identity.size
    if moved:
        note = (f"re-published since traced ({then:,} bytes then, {st.size:,} now): the tiles {moved} traced "
                f"frame(s) read mapped to its new offsets")
        return _Refit(out, None, note, moved, unknown)
    if unknown:
        return _Refit(per, None, "identity when traced unknown (filed by an older prewarm, or rebuilt from its "
                                 "raw trace): its traced offsets taken as they are", 0, unknown)
    return _Refit(per)


def _fitted(path: str, st: Structure | None, per: Mapping[int, list[Span]], size: int,
            filed: Mapping[int, Filed] | None, result: PredictResult,
            stat_sizes: Mapping[int, int] | None = None) -> tuple[Mapping[int, list[Span]], bool]:
    """A traced file's reads as they fit the file now (`_refit`), and whether they do not (a finding
    either way: a traced file is never dropped, nor moved, in silence)."""
    refit = _refit(st, per, filed, size, stat_sizes)
    misfit = refit.lost or _misfit(st, refit.reads, size)
    if misfit:
        result.changed.append((path, f"changed since traced ({misfit}): "
                                     + ("planned by its levels, as never traced" if st else "planned by bytes")))
        return refit.reads, True
    if refit.note:
        result.changed.append((path, refit.note))
    result.stats.remapped_files += bool(refit.moved)
    result.stats.identity_unknown += bool(refit.unknown and not refit.moved)
    return refit.reads, False


MISFIT_SHARE = 0.25
"""Traced reads of a structured file starting inside its tiles, beyond this share of those that touch
tiles, say the file is not the one traced: a re-published texture, its tiles moved."""


def _misfit(st: Structure | None, per: Mapping[int, list[Span]], size: int) -> str | None:
    """Why the traced reads of a file do not fit the file as it is now, or None.

    Reads past its end say it shrank. A texture cache reads tiles from their start: reads
    starting inside the current tiles were made against another layout. Page-aligned starts
    (a reader going through 4 KiB buffers) are no evidence either way."""
    spans = {sp for frame in per.values() for sp in frame}
    if spans and max(e for _, e in spans) > size:
        return f"earlier renders read past its end, {size:,} bytes now"
    if st is None:
        return None
    inside = [s for s, _ in spans if st.inside_tile(s)]
    touching = sum(1 for sp in spans if st.tiles_read([sp])[0])
    if len(inside) >= 3 and len(inside) > MISFIT_SHARE * touching and any(s % 4096 for s in inside):
        return f"{len(inside):,} traced reads start inside its tiles"
    return None


def _candidate_frames(c: Candidate, all_frames: tuple[int, ...], job_set: set[int]) -> tuple[int, ...]:
    """The job frames that may read a candidate; `all_frames` is shared, not copied, per file."""
    if c.frame is not None:
        return (c.frame,) if c.frame in job_set else ()
    if c.frames is not None:
        reading = set(c.frames)
        return tuple(f for f in all_frames if f in reading)
    return all_frames


def _unread_siblings(candidates: list[Candidate], ts: TraceSet, structure: Structures) -> dict[str, int | None]:
    """Tiles of a tile set that no traced frame read while a sibling was: the traced shots did not
    look at them, so they are the least sure (and a budget drops them first). With each, the finest
    level to plan: the coarsest level each traced frame read of its set's tiles, the finest of those
    over the frames. A frame turning to an unread tile sees it at the edge of its view, sampled as the
    siblings' far areas are (their coarsest level read), not as their centre (shot300's truck: 6.4 MiB
    of unread tiles at the siblings' finest level, 1.85 at this one, no frame reading them)."""
    finest: dict[int, int] = {}
    for c in candidates:
        if c.tile_set is None or c.path not in ts.reads:
            continue
        st = structure(c.path)
        finest.setdefault(c.tile_set, 0)
        if st is not None:
            for spans in ts.reads[c.path].values():
                read = [st.levels[t[0]].resolution for t in st.tiles_read(spans)[0]]
                if read:
                    finest[c.tile_set] = max(finest[c.tile_set], min(read))
    out: dict[str, int | None] = {}
    for c in candidates:
        if c.tile_set is not None and c.tile_set in finest and c.path not in ts.reads and not c.whole:
            out[c.path] = finest[c.tile_set] or None
    return out


def _away(train: list[int], job_frames: list[int]) -> set[int]:
    """Job frames further beyond the traced frames than their spacing: the camera may have turned
    to a texture tile the traced frames did not read. Between traced frames, and next to them, the
    frames read the tiles the traced ones read (the push-in hedge's rule, `texture.predict_tiles`)."""
    if not train:
        return set(job_frames)
    gap = spacing(train)
    return {f for f in job_frames if f < train[0] - gap or f > train[-1] + gap}


def _predict_unseen(candidates: list[Candidate], job_frames: list[int], ts: TraceSet, lookup: Lookup,
                    structure: Structures, opts: PredictOptions, result: PredictResult,
                    explained: set[str]) -> None:
    """Inputs no trace read: whole (up to the cap) and last; a texture by its levels, coarse ones early."""
    job_set = set(job_frames)
    all_frames = tuple(job_frames)  # one tuple shared by every file all frames read
    unread_tiles = _unread_siblings(candidates, ts, structure)
    away = _away(sorted(ts.frames), job_frames)
    unseen = structured = 0
    for c in candidates:
        if c.path in explained and not c.whole:
            continue
        frames = _candidate_frames(c, all_frames, job_set)
        info = lookup(c.path)
        if not frames or info is None or info.size == 0:
            continue
        explained.add(c.path)
        if c.whole:
            result.predictions.append(Prediction(c.path, frames, [(0, info.size)], Reason.WHOLE))
            continue
        unseen += 1
        sibling = c.path in unread_tiles
        reason = Reason.UNREAD_TILE if sibling else Reason.FALLBACK
        st = structure(c.path)
        if st is not None:
            structured += 1
            if sibling:
                frames = tuple(f for f in frames if f in away)
            if frames:
                result.predictions.extend(_by_levels(c.path, st, frames, reason, opts, unread_tiles.get(c.path)))
            continue
        if info.size <= opts.unseen_cap:
            spans = [(0, info.size)]
        else:
            spans = normalize([(0, opts.probe), (info.size - opts.probe, info.size)])
        result.predictions.append(Prediction(c.path, frames, spans, reason, last=True))
    result.stats.unseen_files = unseen
    result.stats.unseen_tiled_files = structured
    result.stats.unread_tiles = len(unread_tiles)
