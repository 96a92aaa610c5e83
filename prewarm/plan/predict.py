"""Predict which spans of which files each job frame will read. Pure (file sizes come
through an injected `lookup`).

Models, chosen per file from what the training frames (frames with traces) did:

* **Per-frame files** (`cache.0042.bgeo` read by frame 42): a traced path holding a
  number within `max_delta` of the frame that read it is a candidate sequence; a
  sequence is accepted when several frames each read their own member (motion blur:
  frame F reading F+1's file is a sequence with delta +1). Another frame's member is
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
* **Never seen** (no trace read the file, or there are no traces): warmed whole up to
  `unseen_cap`; larger files get their head and tail (where every format keeps its
  header, offset tables and footer). These come last in the plan.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.model import FileInfo, Reason
from prewarm.plan.ranges import Span, clip, clip_normal, normalize, subtract, total

MiB = 1 << 20

Lookup = Callable[[str], FileInfo | None]


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
    """Bytes by which spans borrowed from neighbouring frames are widened on each side:
    the knob that trades coverage for bytes (textures: nearby tiles). On the texture
    shot (every 4th frame traced) 0 gives recall 0.87 at 1.5x the needed bytes, 512 KiB
    0.89 at 2.4x, 1 MiB 0.90 at 3.1x; bench/predict.py sweeps it."""
    always_share: float = 0.9
    """A shared file read by this share of training frames is read by every job frame."""
    max_delta: int = 2
    """How far a per-frame file's number may be from the frame reading it (motion blur)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """`frames` will read `spans` of `path` (a normal span list)."""

    path: str
    frames: tuple[int, ...]
    spans: list[Span]
    reason: Reason


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file the manifest names (or a directory input holds): may be read, traces decide."""

    path: str
    frame: int | None = None
    """The job frame this file belongs to (a frame-pattern input), None for shared files."""
    whole: bool = False
    frames: tuple[int, ...] | None = None
    """A shared file read only by these frames, as a scene says (a value clip); None: every frame."""


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason): files traces say frames will read, which do not exist."""
    stats: dict[str, int] = field(default_factory=dict)


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


def find_sequences(ts: TraceSet, max_delta: int) -> list[_Sequence]:
    """Per-frame file sequences supported by at least two training frames."""
    cand: dict[tuple[SeqKey, int], dict[int, str]] = defaultdict(dict)
    for path, per in ts.reads.items():
        slots = _slots(path)
        if not slots:
            continue
        for t in per:
            for value, key in slots:
                d = value - t
                if -max_delta <= d <= max_delta:
                    cand[(key, d)][t] = path
    seqs = []
    for (key, d), members in cand.items():
        if len(members) >= 2 and len(set(members.values())) >= 2:
            seqs.append(_Sequence(key, d, members))
    return seqs


# ---------------------------------------------------------------- span statistics

def _read_by_share(per: Mapping[int, list[Span]], need: int) -> list[Span]:
    """Spans covered by at least `need` of the frames' span lists (a sweep over boundaries)."""
    events: list[tuple[int, int]] = []
    for spans in per.values():
        for s, e in spans:
            events.append((s, 1))
            events.append((e, -1))
    events.sort()
    out: list[Span] = []
    depth = 0
    start = 0
    for pos, delta in events:
        before = depth
        depth += delta
        if before < need <= depth:
            start = pos
        elif depth < need <= before and pos > start:
            out.append((start, pos))
    return normalize(out)


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
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    worst = max(abs(y - (a + b * x)) for x, y in zip(xs, ys))
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
    lengths = [e - s for s, e in zip(starts, ends)]
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


def _predict_shared(path: str, size: int, per: Mapping[int, list[Span]], train: list[int],
                    groups: Groups, opts: PredictOptions, every: tuple[int, ...] = ()) -> Iterator[Prediction]:
    """`every`: all the groups' frames in group order, shared by the files every group reads
    (a plan of 10,000 frames would otherwise hold a 10,000-frame tuple per shared file)."""
    readers = sorted(per)
    need = max(1, math.ceil(opts.common_share * len(readers)))
    common = clip_normal(_read_by_share(per, need), size)
    specific = {t: subtract(clip_normal(per[t], size), common) for t in readers}
    progression = fit_progression(specific)
    everyone = len(readers) >= opts.always_share * len(train)

    present: list[int] = []
    included = 0
    borrow: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    extrapolate: list[int] = []
    for nb, exact, frames in groups:
        reading = tuple(t for t in nb if t in per)
        if exact:
            if reading:
                present.extend(frames)
                included += 1
                borrow[(reading, True)] = frames
            continue
        if not (reading or everyone or progression):
            continue
        present.extend(frames)
        included += 1
        if progression is not None:
            extrapolate.extend(frames)
        else:
            borrow.setdefault((reading, False), []).extend(frames)
    if common and present:
        yield Prediction(path, every if included == len(groups) and every else tuple(present), common, Reason.TRACE)
    for (nb, exact), frames in borrow.items():
        spans = normalize(s for t in nb for s in specific[t])
        if not exact:
            spans = clip([(s - opts.spread, e + opts.spread) for s, e in spans], size)
        if spans:
            yield Prediction(path, tuple(frames), spans, Reason.TRACE if exact else Reason.NEIGHBOURS)
    if progression is not None:
        for f in extrapolate:
            region = subtract(progression.region(f, size), common)
            if region:
                yield Prediction(path, (f,), region, Reason.PROGRESSION)


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


def _candidate_frames(c: Candidate, all_frames: tuple[int, ...], job_set: set[int]) -> tuple[int, ...]:
    """The job frames that may read a candidate; `all_frames` is shared, not copied, per file."""
    if c.frame is not None:
        return (c.frame,) if c.frame in job_set else ()
    if c.frames is not None:
        reading = set(c.frames)
        return tuple(f for f in all_frames if f in reading)
    return all_frames


def predict(job: Iterable[int], candidates: Iterable[Candidate], ts: TraceSet, lookup: Lookup,
            traced_ok: Callable[[str], bool] = lambda p: True,
            opts: PredictOptions = PredictOptions()) -> PredictResult:
    """Predictions for every job frame; see the module docstring for the models.

    `traced_ok` says which traced files may enter the plan although no manifest
    input names them (the caller keeps them to the job's folders and roots).
    """
    job_frames = list(dict.fromkeys(job))
    train = sorted(ts.frames)
    result = PredictResult()
    out = result.predictions
    explained: set[str] = set()
    job_set = set(job_frames)
    all_frames = tuple(job_frames)  # one tuple shared by every file all frames read

    seqs = find_sequences(ts, opts.max_delta) if train else []
    in_sequence = {p for s in seqs for p in s.members.values()}
    for seq in seqs:
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
                out.append(Prediction(member, (f,), clip_normal(ts.reads[member][f], info.size), Reason.TRACE))
            else:
                spans = shape.spans(info.size)
                if spans:
                    out.append(Prediction(member, (f,), spans, Reason.PATTERN if shape.whole else Reason.ANCHORED))
    result.stats["sequences"] = len(seqs)

    shared = 0
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
        out.extend(_predict_shared(p, info.size, per, train, groups, opts, every))
    result.stats["shared_files"] = shared

    unseen = 0
    for c in candidates:
        if c.path in explained and not c.whole:
            continue
        frames = _candidate_frames(c, all_frames, job_set)
        info = lookup(c.path)
        if not frames or info is None or info.size == 0:
            continue
        explained.add(c.path)
        if c.whole:
            out.append(Prediction(c.path, frames, [(0, info.size)], Reason.WHOLE))
            continue
        unseen += 1
        if info.size <= opts.unseen_cap:
            spans = [(0, info.size)]
        else:
            spans = normalize([(0, opts.probe), (info.size - opts.probe, info.size)])
        out.append(Prediction(c.path, frames, spans, Reason.FALLBACK))
    result.stats["unseen_files"] = unseen
    return result

