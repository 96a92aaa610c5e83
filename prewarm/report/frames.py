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
from dataclasses import asdict
from typing import Any

import redis

from prewarm.errors import PrewarmError
from prewarm.plan.aggregate import restrict
from prewarm.plan.evaluate import evaluate
from prewarm.site.settings import Settings
from prewarm.state import frames as fstate
from prewarm.state.jobs import WarmJob


def live_report(r: redis.Redis[bytes], job: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """The job's frames and events; with `settings` (the trace store), the live evaluation too.
    None when no such live job is registered."""
    meta = fstate.registered(r, job)
    if meta is None:
        return None
    ready = fstate.readiness(r, job)
    frames = []
    for f in sorted(fstate.frames(r, job).values(), key=lambda x: (x.started is None, x.started or 0.0, x.frame)):
        row: dict[str, Any] = f.to_json()
        at = ready.get(f.frame)
        row["warm_at_start"] = None if at is None else bool(at["warm"])
        row["batches_missing_at_start"] = None if at is None else at["missing"]
        frames.append(row)
    out: dict[str, Any] = {
        "job": job, "name": meta.get("name"), "state": meta.get("state"),
        "warm": json.loads(meta.get("warm", "[]")), "replans": int(meta.get("replans", "0")),
        "last_replan": json.loads(meta.get("last_replan", "null")), "events": fstate.counters(r, job),
        "frames": frames,
        "started_before_warm": [row["frame"] for row in frames if row["warm_at_start"] is False],
        "traces_filed": int(meta.get("traces_filed", "0")),
        "traces_unreadable": int(meta.get("traces_unreadable", "0")),
        "odd_events": fstate.odd_events(r, job, 50),
    }
    if settings is not None:
        out["evaluation"] = live_evaluation(r, meta, [row["frame"] for row in frames if row["state"] == "done"],
                                            settings)
    return out


def live_evaluation(r: redis.Redis[bytes], meta: dict[str, str], finished: list[int],
                    settings: Settings) -> dict[str, Any] | None:
    """The submitted plan scored against the finished frames' filed traces; None before any was
    filed (or when the submitted warm has expired)."""
    from prewarm.plan.aggregate import aggregate
    from prewarm.traces.files import read_traces
    from prewarm.traces.store import store_traces

    folder = meta.get("store_folder")
    first = json.loads(meta.get("first_warm", "[]"))
    if not folder or not first or not finished:
        return None
    try:
        plan = WarmJob(r, str(first[0])).plan()
        rendered = restrict(aggregate(iter(read_traces(store_traces(settings, [folder]), settings.path_map))),
                            finished)
    except (PrewarmError, OSError) as exc:
        return {"error": str(exc)}
    if not rendered.frames:
        return None
    result = evaluate(plan, rendered)
    return {"frames_finished": len(finished), "frames_traced": len(rendered.frames),
            "overall": asdict(result.overall), "missed_by_reason": result.missed_by_reason,
            "missed": [asdict(m) for m in result.missed[:20]]}
