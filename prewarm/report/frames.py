"""The per-frame report of a live job: when each frame started, whether its data was warm then,
and how good the submission's prediction is against the frames finished so far.

Built from what frame events left in Redis (`prewarm.state.frames`): each frame's start,
end and node, and the readiness noted as it started (whether every batch of the warm
holding what it needs had been warmed). How long a frame waited on the WAN is not
something Redis knows: the gateway twin does, and `bench/farm.py` reports it per frame.

The live evaluation scores the plan the job was submitted with against the traces of its
finished frames, read from the job's own folder in the trace store (`prewarm evaluate`'s
scoring, `prewarm.plan.evaluate`), so prediction quality shows while the job renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from prewarm.errors import PrewarmError
from prewarm.plan.aggregate import restrict
from prewarm.plan.evaluate import Miss, Score, evaluate
from prewarm.site.settings import Settings
from prewarm.state import frames as fstate
from prewarm.state.frames import FrameState
from prewarm.state.jobs import WarmJob


@dataclass(frozen=True)
class LiveFrame:
    """One frame of a live job: its events, and whether its data was warm when it started."""

    frame: int
    state: FrameState
    node: str
    started: float | None
    finished: float | None
    attempts: int
    warm_at_start: bool | None
    """None: no readiness was noted (the frame has not started, or started before the warm was known)."""
    batches_missing_at_start: Any


@dataclass(frozen=True)
class LiveEvaluation:
    """The submitted plan against the finished frames' filed traces, or why it could not be scored."""

    frames_finished: int = 0
    frames_traced: int = 0
    overall: Score | None = None
    missed_by_reason: dict[str, int] = field(default_factory=dict)
    missed: list[Miss] = field(default_factory=list)
    """The 20 largest misses."""
    error: str | None = None
    """The plan or the traces could not be read: the only key written."""

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {"frames_finished": self.frames_finished, "frames_traced": self.frames_traced,
                "overall": None if self.overall is None else asdict(self.overall),
                "missed_by_reason": self.missed_by_reason, "missed": [asdict(m) for m in self.missed]}


@dataclass(frozen=True)
class LiveReport:
    job: str
    name: str | None
    state: str | None
    warm: list[str]
    """The warm job ids of the submission and of re-plans."""
    replans: int
    last_replan: Any
    """The last re-plan's outcome, as `prewarm.flow.live.Replan.to_json` wrote it."""
    events: dict[str, int]
    frames: list[LiveFrame]
    """In the order they started (not started last)."""
    traces_filed: int
    progress_filed: int
    """Records so far of running frames filed (`prewarm frame progress`)."""
    frames_with_records: int
    """Frames with any record filed, finished or so far: the evidence re-plans count."""
    traces_unreadable: int
    odd_events: list[Any]
    evaluated: bool = False
    """Asked for the live evaluation (the trace store was given): `evaluation` is written, None or not."""
    evaluation: LiveEvaluation | None = None

    @property
    def started_before_warm(self) -> list[int]:
        return [f.frame for f in self.frames if f.warm_at_start is False]

    def to_json(self) -> dict[str, Any]:
        """What `prewarm frame show --json` prints and the service's /live/jobs/JOB answers."""
        out: dict[str, Any] = {
            "job": self.job, "name": self.name, "state": self.state, "warm": list(self.warm),
            "replans": self.replans, "last_replan": self.last_replan, "events": dict(self.events),
            "frames": [asdict(f) for f in self.frames], "started_before_warm": self.started_before_warm,
            "traces_filed": self.traces_filed, "progress_filed": self.progress_filed,
            "frames_with_records": self.frames_with_records, "traces_unreadable": self.traces_unreadable,
            "odd_events": list(self.odd_events)}
        if self.evaluated:
            out["evaluation"] = None if self.evaluation is None else self.evaluation.to_json()
        return out


def live_report(r: redis.Redis[bytes], job: str, settings: Settings | None = None) -> LiveReport | None:
    """The job's frames and events; with `settings` (the trace store), the live evaluation too.
    None when no such live job is registered."""
    meta = fstate.registered(r, job)
    if meta is None:
        return None
    ready = fstate.readiness(r, job)
    frames = []
    for f in sorted(fstate.frames(r, job).values(), key=lambda x: (x.started is None, x.started or 0.0, x.frame)):
        at = ready.get(f.frame)
        frames.append(LiveFrame(f.frame, f.state, f.node, f.started, f.finished, f.attempts,
                                None if at is None else bool(at["warm"]), None if at is None else at["missing"]))
    return LiveReport(
        job=job, name=meta.get("name"), state=meta.get("state"), warm=json.loads(meta.get("warm", "[]")),
        replans=int(meta.get("replans", "0")), last_replan=json.loads(meta.get("last_replan", "null")),
        events=fstate.counters(r, job), frames=frames, traces_filed=int(meta.get("traces_filed", "0")),
        progress_filed=int(meta.get("progress_filed", "0")), frames_with_records=fstate.evidence(r, job),
        traces_unreadable=int(meta.get("traces_unreadable", "0")), odd_events=fstate.odd_events(r, job, 50),
        evaluated=settings is not None,
        evaluation=None if settings is None else live_evaluation(
            r, meta, [f.frame for f in frames if f.state is FrameState.DONE], settings))


def live_evaluation(r: redis.Redis[bytes], meta: dict[str, str], finished: list[int],
                    settings: Settings) -> LiveEvaluation | None:
    """The submitted plan scored against the finished frames' filed traces; None before any was
    filed (or when the submitted warm has expired)."""
    from prewarm.plan.aggregate import aggregate
    from prewarm.traces.catalogue import store_traces
    from prewarm.traces.files import read_traces

    folder = meta.get("store_folder")
    first = json.loads(meta.get("first_warm", "[]"))
    if not folder or not first or not finished:
        return None
    try:
        plan = WarmJob(r, str(first[0])).plan()
        rendered = restrict(aggregate(iter(read_traces(store_traces(settings, [folder]), settings.path_map))),
                            finished)
    except (PrewarmError, OSError) as exc:
        return LiveEvaluation(error=str(exc))
    if not rendered.frames:
        return None
    result = evaluate(plan, rendered)
    return LiveEvaluation(len(finished), len(rendered.frames), result.overall, result.missed_by_reason,
                          result.missed[:20])
