"""Frame events in Redis: when each frame of a running job started and finished, and on which node.

A farm tells prewarm about frames in whatever order its event system delivers them
(EventBridge: best effort, possibly out of order; Deadline 10 scripts: retried; a
hook that fires twice). So every event is applied by one Lua script that reads the
frame's state and decides, atomically, what the event means:

    start  waiting|requeued|failed -> running          "started"
           running (same node)                          "duplicate"
           running (another node)  -> running, again    "restarted"
           done, event older than its done              "late_start" (start filled in) or "duplicate"
           done, event newer       -> running, again    "restarted" (the farm re-rendered it)
    done   running                 -> done              "done"
           waiting|requeued|failed -> done              "done_without_start" (its start never came)
           done                                         "duplicate" (finished twice)
    requeue  any but waiting       -> waiting            "requeued"
    fail   running                 -> failed             "failed"
    progress running               (unchanged)           "progress" (its records so far come with it)
           any other state                               "late_progress" (not filed: a finished frame's
                                                          own trace is the truth, a waiting one read nothing)

Events for a job nobody registered ("unknown_job") or a frame not in the job
("unknown_frame") are refused and counted; everything else is counted per outcome in
the job's `meta` hash, and each odd one (duplicates, late, unknown frames) leaves one
line in the job's `log`, capped at `LOG_LINES`. Nothing here warms: a duplicate can
never cause a second warm because warming only follows from re-planning, which is
asked for once per job (`ask_replan`, a zset member, coalesced) and reads the state
as it is when it runs.

Memory is bounded by the job, not by the event rate: one hash field per frame of the
job, a capped log, one `due` member per job. A flood of events costs Redis one small
script each and the caller no queue at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from prewarm.state import keys
from prewarm.warm.job import JobState

RETENTION_S = 7 * 86400
"""Live job records expire a week after registration, like warm jobs."""

LOG_LINES = 200
"""Odd events kept per job (the newest): enough to see what a farm is doing, never a flood's worth."""

MAX_FRAMES = 1_000_000
"""Frames a live job may register (a manifest's frame spec is bounded well below this)."""


class Kind(StrEnum):
    START = "start"
    DONE = "done"
    REQUEUE = "requeue"
    FAIL = "fail"
    PROGRESS = "progress"
    """A running frame's records so far: what it read in its first minutes, long before it ends."""


class Outcome(StrEnum):
    STARTED = "started"
    DONE = "done"
    RESTARTED = "restarted"
    LATE_START = "late_start"
    DONE_WITHOUT_START = "done_without_start"
    REQUEUED = "requeued"
    FAILED = "failed"
    PROGRESS = "progress"
    LATE_PROGRESS = "late_progress"
    DUPLICATE = "duplicate"
    UNKNOWN_JOB = "unknown_job"
    UNKNOWN_FRAME = "unknown_frame"

    @property
    def refused(self) -> bool:
        return self in (Outcome.UNKNOWN_JOB, Outcome.UNKNOWN_FRAME)


class FrameState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class FrameEvent:
    """One thing a farm said about one frame. `at` is the farm's time of it (epoch seconds)."""

    kind: Kind
    job: str
    frame: int
    at: float
    node: str = ""


@dataclass(frozen=True)
class Frame:
    """What is known of one frame: state, node, when it started and finished, how many attempts."""

    frame: int
    state: FrameState
    node: str = ""
    started: float | None = None
    finished: float | None = None
    attempts: int = 0


_APPLY = """
local meta, frames, known, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local kind, frame, node, at, maxlog = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', meta) == 0 then return 'unknown_job' end
local function note(outcome, odd)
  redis.call('HINCRBY', meta, 'ev:' .. outcome, 1)
  if odd then
    redis.call('LPUSH', log, cjson.encode({at = at, kind = kind, frame = tonumber(frame), node = node,
                                           outcome = outcome}))
    redis.call('LTRIM', log, 0, maxlog - 1)
  end
  return outcome
end
if redis.call('SISMEMBER', known, frame) == 0 then return note('unknown_frame', true) end
local raw = redis.call('HGET', frames, frame)
local f = {s = 'waiting', a = 0}
if raw then f = cjson.decode(raw) end
local out, odd = 'duplicate', true
if kind == 'start' then
  if f.s == 'running' then
    if node ~= '' and f.n ~= node then f.n = node; f.t0 = at; f.a = f.a + 1; out = 'restarted' end
  elseif f.s == 'done' then
    if at < f.t1 then
      if f.t0 == nil then f.t0 = at; f.n = node; out = 'late_start' end
    else
      f.s = 'running'; f.t0 = at; f.t1 = nil; f.n = node; f.a = f.a + 1; out = 'restarted'
    end
  else
    f.s = 'running'; f.t0 = at; f.t1 = nil; f.n = node; f.a = f.a + 1; out = 'started'; odd = false
  end
elseif kind == 'done' then
  if f.s == 'running' then
    f.s = 'done'; f.t1 = at; out = 'done'; odd = false
    if node ~= '' and f.n == '' then f.n = node end
  elseif f.s ~= 'done' then
    f.s = 'done'; f.t1 = at; f.t0 = nil; out = 'done_without_start'
    if node ~= '' then f.n = node end
  end
elseif kind == 'requeue' then
  if f.s ~= 'waiting' then f = {s = 'waiting', a = f.a}; out = 'requeued'; odd = false end
elseif kind == 'fail' then
  if f.s == 'running' then f.s = 'failed'; f.t1 = at; out = 'failed'; odd = false end
elseif kind == 'progress' then
  if f.s == 'running' then return note('progress', false) end
  return note('late_progress', true)
end
if out ~= 'duplicate' then redis.call('HSET', frames, frame, cjson.encode(f)) end
return note(out, odd)
"""

_REQUEUE_ALL = """
local n = 0
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  local f = cjson.decode(redis.call('HGET', KEYS[1], k))
  if f.s ~= 'waiting' and (ARGV[1] == '1' or f.s ~= 'done') then
    redis.call('HSET', KEYS[1], k, cjson.encode({s = 'waiting', a = f.a}))
    n = n + 1
  end
end
return n
"""


def _keys(job: str) -> list[str]:
    return [keys.live(job, "meta"), keys.live(job, "frames"), keys.live(job, "known"), keys.live(job, "log")]


Fields = Mapping[str | bytes, bytes | float | int | str]


def register(r: redis.Redis[bytes], job: str, frames: Sequence[int], fields: Fields) -> None:
    """Make `job` known with its frames (render order) and `fields` (the caller's: manifest, warm ids ...).

    Registering again replaces the fields and frames but keeps what events said: a hook
    that fires twice must not forget frames already running."""
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames: a live job may have at most {MAX_FRAMES}")
    meta, _, known, _ = _keys(job)
    with r.pipeline(transaction=True) as p:
        p.hset(meta, mapping={"registered": time.time(), "order": json.dumps(list(frames)), **fields})
        p.delete(known)
        for i in range(0, len(frames), 10_000):
            p.sadd(known, *frames[i:i + 10_000])
        for k in (*_keys(job), keys.live(job, "covered")):
            p.expire(k, RETENTION_S)
        p.execute()


def registered(r: redis.Redis[bytes], job: str) -> dict[str, str] | None:
    """The job's meta fields, or None if nobody registered it (or it expired)."""
    raw = r.hgetall(keys.live(job, "meta"))
    return {k.decode(): v.decode() for k, v in raw.items()} if raw else None


def update(r: redis.Redis[bytes], job: str, fields: Fields) -> None:
    r.hset(keys.live(job, "meta"), mapping=fields)


def apply(r: redis.Redis[bytes], event: FrameEvent) -> Outcome:
    """Apply one event atomically; what it meant (see the module's table)."""
    return apply_many(r, [event])[0]


def apply_many(r: redis.Redis[bytes], events: Iterable[FrameEvent]) -> list[Outcome]:
    """Apply events in order in one round trip (a farm's batch, or a flood coalesced by its sender)."""
    script = r.register_script(_APPLY)
    batch = list(events)
    with r.pipeline(transaction=False) as p:
        for ev in batch:
            script(keys=_keys(ev.job), args=[ev.kind.value, str(ev.frame), ev.node, repr(float(ev.at)), LOG_LINES],
                   client=p)
        results = p.execute()
    out = [Outcome(x.decode() if isinstance(x, bytes) else str(x)) for x in results]
    refused = [o for o in out if o is Outcome.UNKNOWN_JOB]
    if refused:
        r.hincrby(keys.LIVE_REFUSED, Outcome.UNKNOWN_JOB.value, len(refused))
    return out


def state_of(r: redis.Redis[bytes], job: str, frame: int) -> FrameState:
    """One frame's state (a frame no event has named yet is waiting)."""
    raw = r.hget(keys.live(job, "frames"), str(frame))
    return FrameState.WAITING if raw is None else FrameState(json.loads(raw)["s"])


def add_evidence(r: redis.Redis[bytes], job: str, frame: int) -> int:
    """Note that `frame` has records in the store (finished, or so far); how many frames have."""
    key = keys.live(job, "traced")
    with r.pipeline(transaction=True) as p:
        p.sadd(key, frame)
        p.expire(key, RETENTION_S)
        p.scard(key)
        return int(p.execute()[2])


def evidence(r: redis.Redis[bytes], job: str) -> int:
    """Frames of the job with records in the store."""
    return int(r.scard(keys.live(job, "traced")))


def requeue_all(r: redis.Redis[bytes], job: str, include_done: bool = True) -> int:
    """The farm requeued the whole job: every frame waits again; how many changed."""
    return int(r.register_script(_REQUEUE_ALL)(keys=[keys.live(job, "frames")], args=["1" if include_done else "0"]))


def frames(r: redis.Redis[bytes], job: str) -> dict[int, Frame]:
    """Every frame an event has touched (frames never mentioned are waiting)."""
    out: dict[int, Frame] = {}
    for k, v in r.hgetall(keys.live(job, "frames")).items():
        f = json.loads(v)
        n = int(k)
        out[n] = Frame(n, FrameState(f["s"]), str(f.get("n") or ""), _num(f.get("t0")), _num(f.get("t1")),
                       int(f.get("a", 0)))
    return out


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) else None


def counters(r: redis.Redis[bytes], job: str) -> dict[str, int]:
    """Events per outcome for the job."""
    return {k.decode()[3:]: int(v) for k, v in r.hgetall(keys.live(job, "meta")).items()
            if k.startswith(b"ev:")}


def odd_events(r: redis.Redis[bytes], job: str, limit: int = LOG_LINES) -> list[dict[str, object]]:
    """The newest odd events (duplicates, late, unknown frames), newest first."""
    return [json.loads(x) for x in r.lrange(keys.live(job, "log"), 0, limit - 1)]


def note(r: redis.Redis[bytes], job: str, line: Mapping[str, object]) -> None:
    """One line in the job's log for something that is not an event (a trace that could not be filed)."""
    with r.pipeline(transaction=False) as p:
        p.lpush(keys.live(job, "log"), json.dumps(dict(line)))
        p.ltrim(keys.live(job, "log"), 0, LOG_LINES - 1)
        p.execute()


def ask_replan(r: redis.Redis[bytes], job: str, now: float) -> None:
    """Ask for a re-plan of `job`; asking again before it runs changes nothing (coalesced)."""
    r.zadd(keys.LIVE_DUE, {job: now}, nx=True)


def due(r: redis.Redis[bytes], asked_before: float, limit: int) -> list[str]:
    """Take up to `limit` jobs whose re-plan was asked for before `asked_before` (debounced)."""
    script = r.register_script(_TAKE_DUE)
    return [x.decode() for x in script(keys=[keys.LIVE_DUE], args=[repr(asked_before), limit])]


def covered(r: redis.Redis[bytes], job: str) -> dict[str, list[tuple[int, int]]]:
    """Per path, the spans already sent to the gateway for this job (normal span lists)."""
    return {k.decode(): [(int(a), int(b)) for a, b in json.loads(v)]
            for k, v in r.hgetall(keys.live(job, "covered")).items()}


def set_covered(r: redis.Redis[bytes], job: str, spans: Mapping[str, list[tuple[int, int]]]) -> None:
    if spans:
        r.hset(keys.live(job, "covered"), mapping={p: json.dumps(s) for p, s in spans.items()})


_TAKE_DUE = """
local jobs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #jobs > 0 then redis.call('ZREM', KEYS[1], unpack(jobs)) end
return jobs
"""


_STOP = """
local job, jobs, done, findings = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local s = redis.call('HGET', job, 'state')
if s ~= 'queued' and s ~= 'running' then return -1 end
redis.call('ZREM', jobs, ARGV[1])
local total = tonumber(redis.call('HGET', job, 'batches') or '0')
local sent = tonumber(redis.call('HGET', job, 'next') or '0')
if sent > total then sent = total end
redis.call('HSET', job, 'batches', sent, 'superseded_by', ARGV[3], 'batches_superseded', total - sent)
if redis.call('SCARD', done) >= sent then
  if sent == 0 then redis.call('HSET', job, 'state', 'cancelled')
  elseif redis.call('HLEN', findings) > 0 then redis.call('HSET', job, 'state', 'partial')
  else redis.call('HSET', job, 'state', 'done') end
  redis.call('HSETNX', job, 'finished', ARGV[2])
end
return sent
"""


def stop_dispatch(r: redis.Redis[bytes], warm_id: str, gateway: str, successor: str) -> int | None:
    """Send no more batches of warm `warm_id` (a re-plan replaces what it has not sent); the number of
    batches it did send (those stay: in flight or done), or None when it had already ended.

    The job then ends when its sent batches have (its `batches` becomes what was sent), by the
    warm's own rule; one it has already finished is closed here: done, partial when it has
    findings, cancelled when it sent nothing. `superseded_by` names the warm that took over.
    """
    out = int(r.register_script(_STOP)(
        keys=[keys.job(warm_id), keys.gateway(gateway, "jobs"), keys.job_part(warm_id, "done"),
              keys.job_part(warm_id, "findings")],
        args=[warm_id, repr(time.time()), successor]))
    return None if out < 0 else out


# readiness: was a frame's data warm when it started?


def _needs(r: redis.Redis[bytes], job: str, warm_id: str) -> None:
    """For each frame of warm `warm_id`'s plan, the last batch holding a range it needs: ranges are
    in warm order and cut into the batches' reads in that order, so walking both side by side maps
    each range to its batch. A frame needs the ranges every frame needs (`frame` None) and those
    first needed by it or by a frame before it in the plan's order (a conservative bound: the
    plan records only the first frame that needs a range)."""
    from prewarm.state.jobs import WarmJob

    warm = WarmJob(r, warm_id)
    plan = warm.plan()
    reads = [(b.index, rd.length) for b in sorted(warm.batches(), key=lambda b: b.index) for rd in b.reads]
    last: dict[int | None, int] = {}
    i, left = 0, reads[0][1] if reads else 0
    for pr in plan.ranges:
        need = pr.length
        while need > 0 and i < len(reads):
            take = min(need, left)
            need -= take
            left -= take
            last[pr.frame] = max(last.get(pr.frame, -1), reads[i][0])
            if left == 0:
                i += 1
                left = reads[i][1] if i < len(reads) else 0
    every = last.pop(None, -1)
    out: dict[str | bytes, bytes | float | int | str] = {f"{warm_id}:": every}
    upto = every
    for f in plan.frames:
        upto = max(upto, last.get(f, -1))
        out[f"{warm_id}:{f}"] = upto
    r.hset(keys.live(job, "needs"), mapping=out)
    r.expire(keys.live(job, "needs"), RETENTION_S)


def record_readiness(r: redis.Redis[bytes], job: str, frame: int, at: float, warm_ids: Sequence[str]
                     ) -> bool | None:
    """Whether the batches frame `frame` needs of each of `warm_ids` had all been warmed when it
    started at `at`; recorded in the job's `ready` hash (the latest start of the frame counts).
    None, and nothing recorded, when none of the warms exists (any more)."""
    from prewarm.state.jobs import WarmJob

    missing = 0
    found = False
    for wid in warm_ids:
        warm = WarmJob(r, wid)
        state = warm.state()
        if state is None:
            continue
        found = True
        if state is JobState.DONE:  # every batch warmed: nothing to look up
            continue
        if not r.hexists(keys.live(job, "needs"), f"{wid}:"):
            _needs(r, job, wid)
        raw = r.hget(keys.live(job, "needs"), f"{wid}:{frame}") or r.hget(keys.live(job, "needs"), f"{wid}:")
        upto = int(raw or -1)
        done = warm.done()
        missing += sum(1 for i in range(upto + 1) if i not in done)
    if not found:
        return None
    r.hset(keys.live(job, "ready"), str(frame), json.dumps({"at": at, "warm": missing == 0, "missing": missing}))
    r.expire(keys.live(job, "ready"), RETENTION_S)
    return missing == 0


def readiness(r: redis.Redis[bytes], job: str) -> dict[int, dict[str, object]]:
    """Frame -> {at, warm, missing}: what `record_readiness` found at each frame's start."""
    return {int(k): json.loads(v) for k, v in r.hgetall(keys.live(job, "ready")).items()}
