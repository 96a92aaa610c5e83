"""`prewarm evaluate JOB|PLAN.json --traces PATH`: how good was the plan, once the frames rendered.

Scores the plan against the traces of the frames that really rendered (recall and
over-fetch, overall and per input, and each miss with its reason; see
`prewarm.plan.evaluate`). The result is kept where the next plan of the shot can find it:
for a warm job, in Redis next to the job's state (`prewarm:job:J:evaluation`, shown by
`prewarm report`) and in the shot's history (`prewarm:shot:NAME:evaluations`, the 20
most recent); for a plan file, in `PLAN.evaluation.json` beside it (or `-o FILE`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from prewarm.cli.options import (
    add_path_map_flags,
    add_redis_flag,
    redis_of,
    site_settings,
)
from prewarm.errors import ConfigError
from prewarm.site import atomic

if TYPE_CHECKING:
    import redis

    from prewarm.plan.evaluate import Evaluation

HISTORY = 20
"""Evaluations kept per shot (job name) in Redis."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="score a plan against the traces of the frames that rendered")
    p.add_argument("source", metavar="JOB|PLAN.json", help="warm job id (plan from Redis) or a plan file")
    p.add_argument("--traces", action="append", default=[], required=True, metavar="PATH",
                   help="traces of the rendered frames (file or folder; strace or JSON Lines); repeatable")
    p.add_argument("--training", action="append", default=[], metavar="PATH",
                   help="the traces the plan was made from: tells 'never seen' and 'no neighbours' apart")
    p.add_argument("-o", "--output", metavar="FILE", help="write the evaluation here (default: beside the plan, "
                                                          "or in Redis for a job)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    add_redis_flag(p)
    add_path_map_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.flow.planning import load_traces
    from prewarm.plan.evaluate import Training, evaluate

    settings = site_settings(args)
    path_map = settings.path_map
    job_id, r = None, None
    if os.path.exists(args.source):
        from prewarm.cli.warm import load_source

        plan, _ = load_source(args.source, [], settings, args)
    else:
        from prewarm.state.jobs import WarmJob

        r = redis_of(settings, "evaluate")
        job = WarmJob(r, args.source)
        if job.state() is None:
            raise ConfigError(args.source, "neither a plan file nor a warm job id (expired or never created)")
        plan, job_id = job.plan(), job.id
    rendered, _ = load_traces(args.traces, path_map)
    if not rendered.frames:
        raise ConfigError("--traces", f"no framed reads in {', '.join(args.traces)}: nothing to evaluate against")
    training = Training.of(load_traces(args.training, path_map)[0]) if args.training else None
    result = evaluate(plan, rendered, training)
    where = _keep(args, r, job_id, plan.job, result)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        o = result.overall
        print(f"{plan.job}: recall {o.recall:.1%}, over-fetch {o.overfetch:.2f}x over "
              f"{result.frames_traced} rendered frame(s) ({o.needed_bytes / 1e6:,.1f} MB needed, "
              f"{o.planned_bytes / 1e6:,.1f} MB planned)")
        for why, n in result.missed_by_reason.items():
            print(f"  missed {n / 1e6:,.1f} MB: {why}")
        print(f"kept in {where}")
    return 0


def _keep(args: argparse.Namespace, r: redis.Redis[bytes] | None, job_id: str | None, shot: str,
          result: Evaluation) -> str:
    text = json.dumps(result.to_json())
    if args.output or r is None or job_id is None:
        path = args.output or f"{os.path.splitext(args.source)[0]}.evaluation.json"
        atomic.write_text(path, text, "--output")
        return path
    from prewarm.state.jobs import WarmJob

    return WarmJob(r, job_id).store_evaluation(shot, result, HISTORY)
