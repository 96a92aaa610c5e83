"""Re-warm the metadata of recent jobs on a gateway that restarted with its cache disk intact.

fscache keeps file data across a gateway restart (keyed by the mount and the origin's
file handles), but directories and attributes are never in fscache: after a restart
every LOOKUP, GETATTR and READDIR of a job's files crosses the WAN again, and a render
starting then pays a round trip per file even though its bytes are cached. The agent
shows the restart (`prewarm.site.agent.restarted`: a mount's `age` went down).

So, given two samples of the agent's counters and the plans of the jobs still to
render, `after_restart` re-runs only their metadata through the normal warm loop (the
root guard, the in-flight pool, the report's counters): each directory the plans list,
or that holds many of their files (one READDIRPLUS warms every entry's attributes),
and a stat of every other planned file. Which jobs are recent, and where the samples
are kept, is the caller's: this module needs no Redis.

Work is bounded: at most `MAX_OPS` operations however many plans are given.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.records import MetaOp
from prewarm.site.agent import MountCounters, restarted
from prewarm.warm.batches import Batch, dir_listings
from prewarm.warm.loop import WarmContext, execute_batch
from prewarm.warm.results import WarmResult

MAX_OPS = 100_000
"""Metadata operations one re-warm runs at most: at 30 ms and 16 in flight, about three minutes."""


def metadata_ops(plans: Iterable[Plan], max_ops: int = MAX_OPS) -> tuple[MetaOp, ...]:
    """The LOOKUP/GETATTR/READDIR work that makes the plans' files warm again, most urgent plan first.

    Plans are taken in the order given (the caller's order: the soonest to render first).
    Files in a directory that is listed are not stat-ed one by one: the listing warms them.
    """
    listed: dict[str, None] = {}
    files: dict[str, None] = {}
    for plan in plans:
        for m in plan.metadata:
            if m.op is Op.READDIR:
                listed.setdefault(m.path.rstrip("/") or "/")
            else:
                files.setdefault(m.path)
        for path in (*(r.path for r in plan.ranges), *plan.files):
            files.setdefault(path)
    listed.update((m.path, None) for m in dir_listings(files, [MetaOp(Op.READDIR, d) for d in listed]))
    ops = [MetaOp(Op.READDIR, d) for d in listed]
    ops += [MetaOp(Op.STAT, p) for p in files if posixpath.dirname(p) not in listed]
    return tuple(ops[:max_ops])


def rewarm_metadata(plans: Iterable[Plan], ctx: WarmContext, max_ops: int = MAX_OPS) -> WarmResult:
    """Run the plans' metadata operations through the warm loop (no data is read)."""
    return execute_batch(Batch(0, meta=metadata_ops(plans, max_ops)), ctx)


@dataclass(frozen=True, slots=True)
class Rewarm:
    """A restart seen in the agent's counters, and what re-warming its metadata did."""

    mounts: tuple[str, ...]
    """The gateway's origin mounts that were remounted."""
    result: WarmResult


def after_restart(before: Sequence[MountCounters], after: Sequence[MountCounters], plans: Iterable[Plan],
                  ctx: WarmContext, max_ops: int = MAX_OPS) -> Rewarm | None:
    """Re-warm the plans' metadata if the gateway restarted between the two samples; None if it did not."""
    mounts = restarted(before, after)
    if not mounts:
        return None
    return Rewarm(mounts, rewarm_metadata(plans, ctx, max_ops))
