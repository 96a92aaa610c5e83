"""`prewarm verify ID|PLAN.json [--sample N] [--agent URL] [--rewarm]`: how much of a warm is cached now.

Samples the planned ranges and asks the gateway (see `prewarm.report.verify`): through the
agent's counters when `--agent` is given and answers, else by timed O_DIRECT reads.
Prints the cached percentage with its 95% interval, method and sample size; `--rewarm` then warms
again, in this process, the planned ranges of every file a cold sample was found in.
Exit 0 when every judged sample was cached (or after a re-warm that finished), 1 otherwise,
3 when timing cannot tell hits from misses here (then nothing is re-warmed: see
`prewarm.report.verify` for how timing is calibrated, and use `--agent` where there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from prewarm.cli.options import (
    add_path_map_flags,
    add_redis_flag,
    redis_of,
    site_settings,
)
from prewarm.errors import ConfigError, ServiceError
from prewarm.plan.ranges import ByteRange
from prewarm.report import verify
from prewarm.report.verify import Counters, SampleFile, Verdict
from prewarm.warm.job import JobState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="measure how much of a warm the gateway really holds now")
    p.add_argument("source", metavar="ID|PLAN.json", help="warm job id (plan from Redis) or a plan file")
    p.add_argument("--sample", type=int, default=64, metavar="N", help="ranges to sample (default 64)")
    p.add_argument("--agent", metavar="URL",
                   help="the gateway's knfsd-cache-utils agent (or twin), e.g. http://proxy:80: judge by its counters")
    p.add_argument("--seed", type=int, help="sampling seed, for a repeatable sample")
    p.add_argument("--rewarm", action="store_true", help="warm again the files found cold")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_redis_flag(p)
    add_path_map_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.flow import warming
    from prewarm.warm import embedded
    from prewarm.warm.reader import site_reader

    if args.sample <= 0:
        raise ConfigError("--sample", "must be a positive integer")
    settings = site_settings(args)
    if os.path.exists(args.source):
        from prewarm.cli.warm import load_source

        plan, settings = load_source(args.source, [], settings, args)
    else:
        from prewarm.state.jobs import WarmJob

        job = WarmJob(redis_of(settings, "verify"), args.source)
        if job.state() is None:
            raise ConfigError(args.source, "neither a plan file nor a warm job id (expired or never created)")
        plan = job.plan()
    plan = warming.check_plan(plan, settings, args.source)
    ranges = [ByteRange(r.path, r.offset, r.length) for r in plan.ranges]
    samples = verify.choose(ranges, args.sample, plan.granule, args.seed)
    reader = site_reader(settings)

    def open_file(path: str) -> SampleFile:
        try:
            return _Sample(reader.open(path), path)
        except OSError as exc:
            raise _unreadable(path, exc) from exc

    verdict, note = _judge(args.agent, samples, open_file, lambda: verify.cold_probes(
        ranges, {path: info.size for path, info in plan.files.items()}, verify.COLD_PROBES, args.seed))
    out = verdict.to_json()
    if note:
        out["note"] = note
    rewarmed: Rewarmed | None = None
    if args.rewarm and verdict.cold:
        files = {s.path for s in verdict.cold}
        sub = replace(plan, ranges=tuple(r for r in plan.ranges if r.path in files), metadata=())
        info = embedded.run_embedded(sub, settings)
        rewarmed = Rewarmed(len(files), sub.bytes, info.state)
        out["rewarmed"] = rewarmed.to_json()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        _print(plan.job, verdict, note, rewarmed)
    if verdict.undecided:
        return 3
    all_cached = verdict.judged > 0 and not verdict.cold
    return 0 if all_cached or (rewarmed is not None and rewarmed.state is JobState.DONE) else 1


@dataclass(frozen=True)
class Rewarmed:
    """What `--rewarm` warmed again: the cold samples' files."""

    files: int
    bytes: int
    state: JobState

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "state": self.state.value}


def _unreadable(path: str, exc: OSError) -> ConfigError:
    return ConfigError(path, f"cannot read a sample: {exc.strerror or type(exc).__name__}")


class _Sample:
    """A planned file opened for samples: a read that fails is one line naming the file."""

    def __init__(self, f: SampleFile, path: str) -> None:
        self.f, self.path = f, path

    def read(self, offset: int, length: int) -> int:
        try:
            return self.f.read(offset, length)
        except OSError as exc:
            raise _unreadable(self.path, exc) from exc

    def close(self) -> None:
        self.f.close()


def _judge(agent: str | None, samples: list[ByteRange], open_file: verify.Open,
           probes: Callable[[], list[ByteRange]]) -> tuple[Verdict, str]:
    """By the agent's counters when it answers (the note says when it did not), else by timing."""
    counters = _agent(agent) if agent else None
    if counters is not None:
        try:
            counters()
        except ServiceError as exc:
            return verify.by_timing(samples, probes(), open_file), f"{exc}; judged by timing instead"

        def read(s: ByteRange) -> None:
            f = open_file(s.path)
            try:
                f.read(s.offset, s.length)
            finally:
                f.close()

        return verify.by_counters(samples, read, counters), ""
    return verify.by_timing(samples, probes(), open_file), ""


def _print(job: str, verdict: Verdict, note: str, rewarmed: Rewarmed | None) -> None:
    if verdict.undecided:
        print(f"{job}: {verdict.undecided} (method {verdict.method}, {verdict.samples} samples)")
    else:
        low, high = verdict.interval_pct or (0.0, 100.0)
        t = verdict.timings
        extra = "" if t is None else "".join(f", {k} {v}" for k, v in (("hit_ms", t.hit_ms), ("miss_ms", t.miss_ms),
                                                                        ("threshold_ms", t.threshold_ms))
                                             if v is not None)
        print(f"{job}: {verdict.cached_pct or 0.0:.1f}% cached (95% within {low:.0f}-{high:.0f}%; "
              f"{verdict.cached}/{verdict.judged} samples, method {verdict.method}{extra}"
              f"{f', {verdict.unreached} never reached the gateway' if verdict.unreached else ''})")
    if note:
        print(f"  {note}", file=sys.stderr)
    if rewarmed is not None:
        print(f"  re-warmed {rewarmed.files} file(s), {rewarmed.bytes / 1e6:,.1f} MB: {rewarmed.state.value}")


def _agent(url: str) -> Counters:
    """(normalRead, serverRead) summed over the gateway's mounts, through the one agent client."""
    from prewarm.farm.agent import Agent

    agent = Agent(url)

    def counters() -> tuple[int, int]:
        mounts = agent.mount_stats()
        return sum(m.normal_read for m in mounts), sum(m.server_read for m in mounts)

    return counters
