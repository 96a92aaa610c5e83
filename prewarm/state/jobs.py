"""Warm job state in Redis: a thin `WarmJob` handle over plain `JobInfo` data (arq-style).

Counters must stay true when a batch runs twice: Celery redelivers a batch whose
worker died (acks_late), and a worker can finish a batch and die before its ack.
So a batch's result is recorded by one Lua script that adds the batch index to the
job's done set and, only if it was not there, adds its counters, findings and
failed ranges, and closes the job when the last batch lands, by the one rule of
`prewarm.warm.job.final_state` (its counter lists are passed to the script). Lua
scripts are atomic and reach the append-only file as one unit, so a Redis restart
cannot keep half of a batch.

Keys are named in `prewarm.state.keys`: the job hash holds name, gateway, state,
created, started, finished, priority, start, granule, batches, batches_done, next,
bytes/files/meta planned, the counters and retry_of; its parts hold the plan, the
batches (workers load one, never the plan), the done set, findings (first per
file), failed ranges, per-second samples and the last evaluation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator

import redis

from prewarm.errors import ServiceError
from prewarm.plan.evaluate import Evaluation
from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.state import keys
from prewarm.warm.batches import Batch
from prewarm.warm.job import (
    FAILURE_COUNTERS,
    JOB_COUNTERS,
    PLANNED_COUNTERS,
    PROGRESS_COUNTERS,
    JobInfo,
    JobState,
    final_state,
)
from prewarm.warm.results import FileFinding, WarmResult
from prewarm.warm.timeline import Point

RETENTION_S = 7 * 86400
"""Job records expire a week after creation: status history, not an archive."""








_COMPLETE = """
local job, done, findings, failed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', job) == 0 then return -1 end
if redis.call('SADD', done, ARGV[1]) == 0 then return 0 end
local res = cjson.decode(ARGV[2])
for _, k in ipairs(res.names) do
  redis.call('HINCRBY', job, k, string.format('%.0f', res.counters[k]))
end
for _, f in ipairs(res.findings) do
  redis.call('HSETNX', findings, f.path, cjson.encode(f))
end
for _, r in ipairs(res.failed) do
  redis.call('RPUSH', failed, cjson.encode(r))
end
redis.call('HINCRBY', job, 'batches_done', 1)
if redis.call('SCARD', done) >= tonumber(redis.call('HGET', job, 'batches')) then
  if redis.call('HGET', job, 'state') ~= 'cancelled' then
    local function any(names)
      for _, k in ipairs(names) do
        if tonumber(redis.call('HGET', job, k) or '0') > 0 then return true end
      end
      return false
    end
    local state = 'done'
    if redis.call('HLEN', findings) > 0 or any(res.failure) then
      if any(res.planned) and not any(res.progress) then state = 'failed' else state = 'partial' end
    end
    redis.call('HSET', job, 'state', state)
  end
  redis.call('HSETNX', job, 'finished', ARGV[3])
end
return 1
"""

_START = """
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started', ARGV[1])
end
return 1
"""

_CANCEL = """
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled')
  redis.call('HSETNX', KEYS[1], 'finished', ARGV[1])
  return 1
end
return 0
"""


def _chunks(pieces: Iterable[str], size: int) -> Iterator[str]:
    """`pieces` joined into strings of about `size` characters: a big plan is stored with APPENDs,
    never held as one string (and its encoded copy) in the submitter."""
    buf: list[str] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= size:
            yield "".join(buf)
            buf, n = [], 0
    if buf:
        yield "".join(buf)


class WarmJob:
    """Handle on one warm job in Redis. Holds no state of its own beyond the id."""

    def __init__(self, r: redis.Redis[bytes], job_id: str) -> None:
        self.r = r
        self.id = job_id
        self.key = keys.job(job_id)

    @classmethod
    def create(cls, r: redis.Redis[bytes], plan: Plan, batches: Iterable[Batch], gateway: str, granule: int,
               retry_of: str | None = None) -> WarmJob:
        """Store the job and its batches, taken one at a time (a big plan's batches never all exist at once)."""
        job = cls(r, uuid.uuid4().hex[:12])
        now = time.time()
        names = [job.key, job.part("plan"), job.part("batches")]
        count = planned = meta = 0
        paths: set[str] = set()
        with r.pipeline(transaction=False) as p:
            p.set(names[1], "")
            for i, part in enumerate(_chunks(plan.json_text(), 1 << 20)):
                p.append(names[1], part)
                if i % 16 == 15:
                    p.execute()
            chunk: dict[str | bytes, bytes | float | int | str] = {}
            for b in batches:
                count += 1
                planned += b.bytes
                meta += len(b.meta)
                paths.update(rd.path for rd in b.reads)
                chunk[str(b.index)] = json.dumps(b.to_json())
                if len(chunk) >= 500:
                    p.hset(names[2], mapping=chunk)
                    p.execute()
                    chunk = {}
            if chunk:
                p.hset(names[2], mapping=chunk)
            fields: dict[str | bytes, bytes | float | int | str] = {
                "name": plan.job, "gateway": gateway, "state": JobState.QUEUED.value, "created": now,
                "priority": plan.priority, "start": "" if plan.start is None else plan.start, "granule": granule,
                "batches": count, "batches_done": 0, "next": 0, "bytes_planned": planned,
                "files_planned": len(paths), "meta_planned": meta, "retry_of": retry_of or "",
                **dict.fromkeys(WarmResult.COUNTERS, 0),
                "inputs_missing": 0 if retry_of else plan.missing_inputs,
            }
            if not count:  # nothing to send: the job ends now, by the same rule
                numbers = {str(k): int(v) for k, v in fields.items() if k in (*JOB_COUNTERS, *PLANNED_COUNTERS)}
                fields.update(state=final_state(numbers, 0).value, started=now, finished=now)
            p.hset(names[0], mapping=fields)
            p.zadd(keys.JOBS, {job.id: now})
            for k in names:
                p.expire(k, RETENTION_S)
            p.execute()
        return job

    def part(self, name: str) -> str:
        return keys.job_part(self.id, name)

    def state(self) -> JobState | None:
        s = self.r.hget(self.key, "state")
        return None if s is None else JobState(s.decode())

    def cancelled(self) -> bool:
        return self.state() is JobState.CANCELLED

    def batch(self, index: int) -> Batch:
        raw = self.r.hget(self.part("batches"), str(index))
        if raw is None:
            raise ServiceError(f"warm job {self.id} has no batch {index}")
        return Batch.from_json(json.loads(raw))

    def batches(self) -> list[Batch]:
        return [Batch.from_json(json.loads(v)) for v in self.r.hvals(self.part("batches"))]

    def done(self) -> set[int]:
        """Indexes of the batches whose results are recorded."""
        return {int(x) for x in self.r.smembers(self.part("done"))}

    def evaluation(self) -> Evaluation | None:
        """The last `prewarm evaluate` of this job, if any; one of another shape (kept by another
        version of prewarm) is none, not a failed report."""
        raw = self.r.get(self.part("evaluation"))
        if raw is None:
            return None
        try:
            return Evaluation.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None

    def store_evaluation(self, shot: str, evaluation: Evaluation, history: int) -> str:
        """Keep an evaluation with the job and at the head of its shot's history (the newest `history`)."""
        result = evaluation.to_json()
        text = json.dumps(result)
        shot_key = keys.shot_evaluations(shot)
        with self.r.pipeline() as p:
            p.set(self.part("evaluation"), text, ex=RETENTION_S)
            p.lpush(shot_key, json.dumps({**result, "warm_job": self.id}))
            p.ltrim(shot_key, 0, history - 1)
            p.expire(shot_key, RETENTION_S * 4)
            p.execute()
        return f"Redis ({self.part('evaluation')}, {shot_key})"

    def batch_done(self, index: int) -> bool:
        return bool(self.r.sismember(self.part("done"), str(index)))

    def plan(self) -> Plan:
        raw = self.r.get(self.part("plan"))
        if raw is None:
            raise ServiceError(f"warm job {self.id} has no stored plan (expired?)")
        return Plan.from_json(json.loads(raw), where=f"warm job {self.id} plan")

    def mark_running(self) -> None:
        self.r.register_script(_START)(keys=[self.key], args=[time.time()])

    def complete_batch(self, index: int, result: WarmResult) -> bool:
        """Record a batch's result once; False if it was already recorded (a redelivery)."""
        payload = {"names": list(WarmResult.COUNTERS), "counters": result.counters(),
                   "failure": list(FAILURE_COUNTERS), "progress": list(PROGRESS_COUNTERS),
                   "planned": list(PLANNED_COUNTERS),
                   "findings": [f.to_json() for f in result.findings.values()],
                   "failed": [[r.path, r.offset, r.length] for r in result.failed]}
        names = [self.key, self.part("done"), self.part("findings"), self.part("failed")]
        return int(self.r.register_script(_COMPLETE)(keys=names, args=[index, json.dumps(payload), time.time()])) == 1

    def record_point(self, point: Point) -> None:
        """One second of one batch: added to what other batches recorded for that second."""
        key = self.part("samples")
        with self.r.pipeline(transaction=False) as p:
            p.hincrby(key, f"b:{point.t}", point.bytes)
            p.hincrby(key, f"f:{point.t}", point.in_flight)
            p.hincrby(self.key, "bytes_read_live", point.bytes)  # progress while batches run
            p.expire(key, RETENTION_S)
            p.execute()

    def points(self) -> list[Point]:
        acc: dict[int, list[int]] = {}
        for k, v in self.r.hgetall(self.part("samples")).items():
            kind, _, sec = k.decode().partition(":")
            acc.setdefault(int(sec), [0, 0])[0 if kind == "b" else 1] = int(v)
        return [Point(t, b, f) for t, (b, f) in sorted(acc.items())]

    def cancel(self) -> bool:
        """queued/running -> cancelled; False if the job had already ended."""
        return int(self.r.register_script(_CANCEL)(keys=[self.key], args=[time.time()])) == 1

    def failed_ranges(self) -> list[ByteRange]:
        return [ByteRange(p, int(o), int(n)) for p, o, n in
                (json.loads(x) for x in self.r.lrange(self.part("failed"), 0, -1))]

    def info(self, findings: bool = True) -> JobInfo | None:
        h = {k.decode(): v.decode() for k, v in self.r.hgetall(self.key).items()}
        if not h:
            return None
        found: list[FileFinding] = []
        if findings:
            found = [FileFinding.from_json(json.loads(v)) for v in self.r.hvals(self.part("findings"))]
            found.sort(key=lambda f: f.path)

        def num(k: str) -> float | None:
            return float(h[k]) if h.get(k) else None

        return JobInfo(
            id=self.id, name=h["name"], gateway=h["gateway"], state=JobState(h["state"]),
            created=float(h["created"]), started=num("started"), finished=num("finished"),
            priority=int(h["priority"]), start=num("start"), batches=int(h["batches"]),
            batches_done=int(h["batches_done"]), bytes_planned=int(h["bytes_planned"]),
            files_planned=int(h["files_planned"]), meta_planned=int(h["meta_planned"]),
            counters={k: int(h.get(k, 0)) for k in JOB_COUNTERS}, findings=found,
            failed_ranges=int(self.r.llen(self.part("failed"))), retry_of=h.get("retry_of") or None,
            bytes_read_live=int(h.get("bytes_read_live") or 0))


def recent(r: redis.Redis[bytes], limit: int = 20) -> list[JobInfo]:
    """The most recent jobs, newest first (expired ones dropped from the list)."""
    out = []
    for raw in r.zrevrange(keys.JOBS, 0, limit - 1):
        job_id = raw.decode()
        info = WarmJob(r, job_id).info(findings=False)
        if info is None:
            r.zrem(keys.JOBS, job_id)
        else:
            out.append(info)
    return out


RECENT_PLANS = 50
"""Recent jobs looked at when a restarted gateway's metadata is warmed again."""


def recent_plans(r: redis.Redis[bytes], gateway: str, since: float, limit: int = RECENT_PLANS) -> list[Plan]:
    """Plans of the gateway's jobs created after `since` that read something, soonest frame start first."""
    jobs = [i for i in recent(r, limit) if i.gateway == gateway and i.created >= since
            and i.state in (JobState.RUNNING, JobState.DONE, JobState.PARTIAL)]
    jobs.sort(key=lambda i: (i.start if i.start is not None else i.created))
    plans = []
    for info in jobs:
        try:
            plans.append(WarmJob(r, info.id).plan())
        except ServiceError:  # expired between the listing and now
            continue
    return plans
