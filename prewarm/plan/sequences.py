"""Per-frame files (`cache.0042.bgeo` read by frame 42; `plan/predict.py` describes the model):
the sequences a traced path's number makes with the frames reading it, accepted when the number
follows the frame, and their members predicted for other frames, whole or anchored to the
file's start and end.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.prediction import Lookup, Prediction, PredictResult
from prewarm.plan.ranges import Span, clip, clip_normal, normalize, total
from prewarm.plan.records import Reason

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


def predict_sequence(seq: _Sequence, job_frames: list[int], ts: TraceSet, lookup: Lookup,
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


def frame_numbered(path: str, per: Mapping[int, list[Span]], max_delta: int) -> bool:
    """Does the file's name hold the number of a frame that read it (within `max_delta`)?"""
    return any(abs(value - t) <= max_delta for value, _ in _slots(path) for t in per)
