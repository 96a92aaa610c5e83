"""Feed each gateway's queue a bounded window of batches, from the job whose frames start first.

Enqueueing every batch of every job at once would warm jobs in submission order and
make cancel a purge. Celery priorities on Redis are coarse (a few buckets, per
prefetch), so instead a small window of batches per gateway sits in the broker, and
whenever a batch ends (or a job arrives, or one is cancelled) the window is refilled
from the best waiting job: earliest `start`, then highest `priority`, then oldest.
The choice and the bookkeeping happen in one Lua script, so workers refilling at the
same moment never exceed the window nor send a batch twice.

A batch sent long ago and never finished (its message lost with a Redis that kept
no append-only file, or its sender died between choosing and sending) would hold a
window slot forever and stall its job; a refill sends such a batch again after
`stale_after_s`. Running a batch twice is harmless: results are recorded once.

Sending is passed in (`send(gateway, job_id, index)`), so this module needs no Celery.

Keys (`prewarm.state.keys`), per gateway G: `jobs`, a zset of job id -> start time (or
creation time) of jobs with batches to send; `inflight`, a zset of "J:index" -> time
sent, not yet finished (the window). The script is handed the job-key prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from prewarm.state import keys
from prewarm.state.jobs import WarmJob

Send = Callable[[str, str, int], None]
"""`send(gateway, job_id, index)`: put one batch on the gateway's queue."""

_REFILL = """
local jobs, inflight, window, jobkey = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
if ARGV[2] ~= '' then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now - tonumber(ARGV[2]))) do
    redis.call('ZADD', inflight, now, m)
    table.insert(out, m)
  end
end
while redis.call('ZCARD', inflight) < window do
  local cands = redis.call('ZRANGE', jobs, 0, 31, 'WITHSCORES')
  if #cands == 0 then break end
  local best, bscore, bprio, bcreated = nil, nil, nil, nil
  for i = 1, #cands, 2 do
    local id, score = cands[i], tonumber(cands[i + 1])
    if bscore ~= nil and score > bscore then break end
    local h = redis.call('HMGET', jobkey .. id, 'priority', 'created')
    local prio, created = tonumber(h[1] or '0'), tonumber(h[2] or '0')
    if best == nil or prio > bprio or (prio == bprio and created < bcreated) then
      best, bscore, bprio, bcreated = id, score, prio, created
    end
  end
  local jk = jobkey .. best
  local state = redis.call('HGET', jk, 'state')
  local total = tonumber(redis.call('HGET', jk, 'batches') or '0')
  local nxt = 0
  if state == 'queued' or state == 'running' then
    nxt = redis.call('HINCRBY', jk, 'next', 1) - 1
  else
    nxt = total
  end
  if nxt >= total - 1 then redis.call('ZREM', jobs, best) end
  if nxt < total then
    redis.call('ZADD', inflight, now, best .. ':' .. nxt)
    table.insert(out, best .. ':' .. nxt)
  end
end
return out
"""


def submit(r: redis.Redis[bytes], job: WarmJob, gateway: str, start: float | None, created: float) -> None:
    """Make a job eligible for its gateway's window."""
    r.zadd(keys.gateway(gateway, "jobs"), {job.id: start if start is not None else created})


def refill(r: redis.Redis[bytes], gateway: str, window: int, send: Send, stale_after_s: float | None = None) -> int:
    """Top the gateway's window up (and re-send stale batches); returns how many batches were sent."""
    stale = "" if stale_after_s is None else repr(float(stale_after_s))
    picked = r.register_script(_REFILL)(
        keys=[keys.gateway(gateway, "jobs"), keys.gateway(gateway, "inflight")],
        args=[window, stale, keys.JOB_PREFIX])
    for item in picked:
        job_id, _, index = item.decode().rpartition(":")
        send(gateway, job_id, int(index))
    return len(picked)


def finished(r: redis.Redis[bytes], gateway: str, job_id: str, index: int) -> None:
    """A batch left the window (done, or skipped because its job was cancelled)."""
    r.zrem(keys.gateway(gateway, "inflight"), f"{job_id}:{index}")


def withdraw(r: redis.Redis[bytes], gateway: str, job_id: str) -> list[str]:
    """Take a cancelled job out of dispatch; returns the task ids still queued or running, to revoke."""
    r.zrem(keys.gateway(gateway, "jobs"), job_id)
    sent = (m.decode() for m in r.zrange(keys.gateway(gateway, "inflight"), 0, -1))
    mine = sorted((m for m in sent if m.startswith(job_id + ":")),
                  key=lambda m: int(m.rpartition(":")[2]))
    if mine:
        r.zrem(keys.gateway(gateway, "inflight"), *mine)
    return [keys.task_id(job_id, int(m.rpartition(":")[2])) for m in mine]


def busy_gateways(r: redis.Redis[bytes]) -> set[str]:
    """Gateways with batches waiting to be sent or in flight."""
    return {keys.gateway_of(k) for part in ("jobs", "inflight") for k in r.scan_iter(keys.gateway_pattern(part))}


def window(r: redis.Redis[bytes], gateway: str) -> tuple[int, int]:
    """(batches waiting to be sent, batches sent and unfinished) of one gateway."""
    waiting = 0
    for raw in r.zrange(keys.gateway(gateway, "jobs"), 0, -1):
        total, sent = r.hmget(keys.job(raw.decode()), "batches", "next")
        waiting += max(int(total or 0) - int(sent or 0), 0)
    return waiting, int(r.zcard(keys.gateway(gateway, "inflight")))


def overdue(r: redis.Redis[bytes], gateway: str, job_id: str, older_than_s: float, now: float) -> list[int]:
    """Batches of a job sent more than `older_than_s` ago and not finished: their worker died (the
    broker hands them out again after its visibility timeout), or their message was lost."""
    mine = []
    for member in r.zrangebyscore(keys.gateway(gateway, "inflight"), "-inf", now - older_than_s):
        job, _, index = member.decode().rpartition(":")
        if job == job_id:
            mine.append(int(index))
    return sorted(mine)
