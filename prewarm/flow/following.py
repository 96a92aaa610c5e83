"""Waiting for submitted warm jobs to end: the loop `prewarm warm` runs after it submits through Redis.

It reads the jobs' state every `POLL_S`, re-sends batches lost on the way (`runner.refill`) every
`REFILL_S`, notes a stall and gives up on one, and fails when the jobs vanish from Redis. What it
shows is the caller's: progress goes to `on_progress`, notes to `say`, so the command keeps the
printing and this module the waiting (and a test can follow a job without a terminal).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from prewarm.errors import ServiceError
from prewarm.site.settings import Settings
from prewarm.state import keys
from prewarm.warm.job import JobInfo

if TYPE_CHECKING:
    import redis

    from prewarm.state import dispatch

POLL_S = 0.5
"""How often a waiting `prewarm warm` reads job state from Redis."""

STALL_S = 60.0
"""A waiting `prewarm warm` says so when no batch has finished for this long (no worker on the queue?)."""

GIVE_UP_S = 600.0
"""A waiting `prewarm warm` stops waiting (exit 3) when no batch has finished for this long: its warm jobs
stay queued for a worker to come, and `prewarm status` follows them."""

REFILL_S = 5.0
"""How often a waiting `prewarm warm` tops up the dispatch window (re-sending lost batches)."""


def follow(r: redis.Redis[bytes], ids: Sequence[str], settings: Settings, send: dispatch.Send, give_up_s: float,
           on_progress: Callable[[JobInfo], None], say: Callable[[str], None],
           lost: Callable[[list[str]], str]) -> list[JobInfo]:
    """Wait for the jobs to end and return their final state; meanwhile re-send batches lost on the way
    (see dispatch). ServiceError when no batch finishes for `give_up_s`, or when jobs vanish from Redis
    (`lost(ids)` says what to do then: the command knows how it was called)."""
    from prewarm.state import runner  # with Redis's client: not for the commands that only register flags
    from prewarm.state.jobs import WarmJob

    handles = [WarmJob(r, i) for i in ids]
    next_refill = time.monotonic() + REFILL_S
    seen: tuple[int, ...] = ()
    moved_at = time.monotonic()
    stall = Stall(list(ids), give_up_s, say)
    while True:
        infos = [h.info(findings=False) for h in handles]
        gone = [h.id for h, i in zip(handles, infos, strict=True) if i is None]
        if gone:
            raise ServiceError(lost(gone))
        live = [i for i in infos if i is not None]
        on_progress(combined(live))
        if all(i.state.final for i in live):
            break
        now = time.monotonic()
        mark = tuple(i.batches_done for i in live)
        if mark != seen:
            seen, moved_at = mark, now
        else:
            stall.check(now - moved_at, live)
        if time.monotonic() >= next_refill:
            for gw in {i.gateway for i in live}:
                runner.refill(r, gw, settings, send)
            next_refill = time.monotonic() + REFILL_S
        time.sleep(POLL_S)
    return [i for i in (h.info() for h in handles) if i is not None]


class Stall:
    """What a waiting `prewarm warm` says while no batch finishes: a note every `STALL_S`, and after
    `give_up_s` it stops waiting (ServiceError, exit 3), naming the queues and what to do."""

    def __init__(self, ids: list[str], give_up_s: float, say: Callable[[str], None]) -> None:
        self.ids = ids
        self.give_up_s = give_up_s
        self.say = say
        self.noted = 0.0

    def check(self, stalled_s: float, live: list[JobInfo]) -> None:
        gateways = sorted({i.gateway for i in live})
        queues = ", ".join(keys.queue(g) for g in gateways)
        if stalled_s >= self.give_up_s:
            workers = " ".join(f"--gateway {g}" for g in gateways)
            raise ServiceError(f"no batch finished for {stalled_s:.0f}s: no worker is warming {queues}. The warm "
                               f"stays queued: start one (`prewarm worker {workers}`) and follow it with "
                               f"`prewarm status {self.ids[0]}`, or `prewarm cancel {self.ids[0]}`")
        if stalled_s - self.noted >= STALL_S:
            self.noted = stalled_s
            self.say(f"no batch finished for {stalled_s:.0f}s: is a worker consuming {queues}? (still waiting, "
                     f"at most {self.give_up_s:.0f}s)")
        elif stalled_s < self.noted:
            self.noted = 0.0


def combined(infos: list[JobInfo]) -> JobInfo:
    """One job's view of several (one per gateway): sums of what they planned and moved, for one progress line."""
    first = infos[0]
    if len(infos) == 1:
        return first
    out = replace(first, id=",".join(i.id for i in infos), counters=dict(first.counters),
                  bytes_planned=sum(i.bytes_planned for i in infos), files_planned=sum(i.files_planned for i in infos),
                  bytes_read_live=sum(i.bytes_read_live for i in infos),
                  started=min((i.started for i in infos if i.started), default=None))
    for i in infos[1:]:
        for k, v in i.counters.items():
            out.counters[k] += v
    return out
