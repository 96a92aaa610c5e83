"""How good was a plan: its ranges against what the rendered frames really read. Pure.

Scored on 64 KiB blocks, as the prediction targets are defined: recall = needed
blocks that were planned / needed blocks; over-fetch = planned blocks / needed blocks
(1.0 is perfect, whole-file warming is often 10-100x). Overall, and per input, where an
input is a file or a frame/tile sequence (digit runs of the file name folded to `#`,
so `fluid.1001.vdb` and `fluid.1002.vdb` are one input, as in the manifest).

Every missed byte gets a reason, so the next plan of the shot can do better:
- `never seen`: the plan has nothing of the file; with the training traces at hand
  this splits into "file never read in training" and "pattern never seen";
- `frame with no neighbours`: the frame that missed has no training frame within
  `NEIGHBOUR_FRAMES` (per-frame reads are predicted from neighbours);
- `outside the prediction`: the file was planned, the region was not.
`bench/predict.py` scores train/test splits with these same functions.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.model import Plan
from prewarm.plan.ranges import subtract, total

BLOCK = 64 * 1024
"""Scoring granularity: the prediction targets are stated on 64 KiB blocks."""

NEIGHBOUR_FRAMES = 8
"""A frame further than this from every training frame has no neighbours to predict it from."""

MISSED_ROWS = 200
"""Missed files kept in a stored evaluation, largest first."""

Block = tuple[str, int]
_DIGITS = re.compile(r"\d+")


def input_of(path: str) -> str:
    """The manifest-style input a file belongs to: digit runs of its name become `#` (same width)."""
    head, _, name = path.rpartition("/")
    return f"{head}/{_DIGITS.sub(lambda m: '#' * len(m.group()), name)}"


def blocks_of(spans_by_path: Mapping[str, Iterable[tuple[int, int]]]) -> set[Block]:
    return {(p, b) for p, spans in spans_by_path.items() for s, e in spans if e > s
            for b in range(s // BLOCK, (e - 1) // BLOCK + 1)}


def plan_blocks(plan: Plan) -> set[Block]:
    return {(r.path, b) for r in plan.ranges if r.length > 0
            for b in range(r.offset // BLOCK, (r.end - 1) // BLOCK + 1)}


def needed_blocks(ts: TraceSet, frames: Iterable[int] | None = None) -> dict[Block, set[int]]:
    """Blocks the frames read, each with the frames that read it (all traced frames by default)."""
    want = None if frames is None else set(frames)
    out: dict[Block, set[int]] = defaultdict(set)
    for p, per in ts.reads.items():
        for f, spans in per.items():
            if want is not None and f not in want:
                continue
            for s, e in spans:
                for b in range(s // BLOCK, (e - 1) // BLOCK + 1):
                    out[(p, b)].add(f)
    return dict(out)


def score(planned: set[Block], needed: Iterable[Block]) -> tuple[float, float]:
    """(recall, over-fetch); both 0 when nothing was needed."""
    need = needed if isinstance(needed, (set, frozenset)) else set(needed)
    if not need:
        return 0.0, 0.0
    return len(planned & need) / len(need), len(planned) / len(need)


@dataclass(frozen=True)
class Training:
    """What the plan was trained on, when known: sharpens the reasons for misses."""

    paths: frozenset[str]
    inputs: frozenset[str]
    frames: tuple[int, ...]

    @classmethod
    def of(cls, ts: TraceSet) -> Training:
        return cls(frozenset(ts.reads), frozenset(input_of(p) for p in ts.reads), tuple(sorted(ts.frames)))

    def lonely(self, frame: int) -> bool:
        return not any(abs(frame - f) <= NEIGHBOUR_FRAMES for f in self.frames)


@dataclass(frozen=True)
class Score:
    """A plan against what the rendered frames read, on `BLOCK`s."""

    recall: float
    """Needed blocks the plan held."""
    overfetch: float
    """Planned blocks per needed block."""
    needed_bytes: int
    planned_bytes: int
    hit_bytes: int


@dataclass(frozen=True)
class InputScore:
    """The score of one input (`input_of`: a file, or a sequence folded by its digits)."""

    input: str
    recall: float
    overfetch: float | None
    """None: the frames read nothing of it."""
    needed_bytes: int
    planned_bytes: int


@dataclass(frozen=True)
class Miss:
    """Needed bytes of a file the plan did not hold, and why."""

    path: str
    why: str
    bytes: int


@dataclass(frozen=True)
class Evaluation:
    """What `prewarm evaluate` says of a plan; kept as its JSON with the warm job and the shot."""

    job: str
    block: int
    frames_traced: int
    frames_planned: int
    overall: Score
    per_input: list[InputScore]
    missed_by_reason: dict[str, int]
    """Missed bytes by why, most first."""
    missed: list[Miss]
    """The largest misses (at most `MISSED_ROWS`)."""
    missed_files: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evaluation:
        """An evaluation `to_json` wrote (kept in Redis or beside a plan)."""
        return cls(job=data["job"], block=data["block"], frames_traced=data["frames_traced"],
                   frames_planned=data["frames_planned"], overall=Score(**data["overall"]),
                   per_input=[InputScore(**r) for r in data["per_input"]],
                   missed_by_reason=dict(data["missed_by_reason"]), missed=[Miss(**m) for m in data["missed"]],
                   missed_files=data["missed_files"])


def evaluate(plan: Plan, rendered: TraceSet, training: Training | None = None) -> Evaluation:
    """The plan scored against the rendered frames' reads, overall, per input, and what was missed and why."""
    planned = plan_blocks(plan)
    needed = needed_blocks(rendered, [f for f in rendered.frames if not plan.frames or f in set(plan.frames)])
    recall, over = score(planned, needed.keys())
    planned_paths = {p for p, _ in planned}
    per_need: Counter[str] = Counter(input_of(p) for p, _ in needed)
    per_plan: Counter[str] = Counter(input_of(p) for p, _ in planned)
    per_hit: Counter[str] = Counter(input_of(p) for p, b in needed if (p, b) in planned)
    per_input = [InputScore(i, round(per_hit[i] / n, 4) if n else 0.0, round(per_plan[i] / n, 3) if n else None,
                            n * BLOCK, per_plan[i] * BLOCK)
                 for i in sorted(set(per_need) | set(per_plan), key=lambda i: (-per_need[i], i))
                 for n in (per_need[i],)]
    missed: dict[tuple[str, str], int] = Counter()
    why_total: Counter[str] = Counter()
    for blk, frames in needed.items():
        if blk in planned:
            continue
        why = _why(blk[0], frames, planned_paths, training)
        missed[(blk[0], why)] += BLOCK
        why_total[why] += BLOCK
    rows = sorted((Miss(p, w, n) for (p, w), n in missed.items()), key=lambda r: (-r.bytes, r.path))
    return Evaluation(
        job=plan.job, block=BLOCK, frames_traced=len(rendered.frames), frames_planned=len(plan.frames),
        overall=Score(round(recall, 4), round(over, 3), len(needed) * BLOCK, len(planned) * BLOCK,
                      len(planned & needed.keys()) * BLOCK),
        per_input=per_input, missed_by_reason=dict(why_total.most_common()), missed=rows[:MISSED_ROWS],
        missed_files=len({p for p, _ in missed}))


def _why(path: str, frames: set[int], planned_paths: set[str], training: Training | None) -> str:
    if path not in planned_paths:
        if training is None:
            return "never seen: the plan has nothing of this file"
        if input_of(path) not in training.inputs:
            return "pattern never seen in the training traces"
        if path not in training.paths:
            return "file never read in the training traces (its pattern was)"
        return "read in training, dropped by the planner (budget or filter)"
    if training is not None and training.frames and all(training.lonely(f) for f in frames):
        return "frame with no neighbours in the training traces"
    return "region outside the prediction"


def ready_at(plan: Plan, ts: TraceSet, frame: int) -> float | None:
    """Share of the plan's bytes, in warm order, after which every byte `frame` read is planned:
    how early in the warm that frame could start without waiting on the WAN. None when the
    plan never covers it all (or the frame read nothing)."""
    need = {p: per[frame] for p, per in ts.reads.items() if frame in per}
    left = sum(total(spans) for spans in need.values())
    if not left or not plan.bytes:
        return None
    done = 0
    for r in plan.ranges:
        done += r.length
        before = need.get(r.path)
        if before:
            need[r.path] = subtract(before, [(r.offset, r.end)])
            left -= total(before) - total(need[r.path])
            if left <= 0:
                return done / plan.bytes
    return None
