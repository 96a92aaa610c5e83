"""Check a plan and start its warms: the one flow behind `prewarm warm`, the service and the watch folders.

A plan is refused here, before any job exists, if it names paths outside the allowed
roots or asks for absurd amounts of work (`check_plan`). Then a warm job is created
for every gateway node the render reads through (each has its own cache), and the
gateway's dispatch window takes its batches (`submit_plan`). Submitting the same work
again while its warm is queued, running or done returns that warm instead of a
second one: a hook that fires twice, or a watch folder restarted after submitting,
must not pull the same bytes twice. Sending a batch is passed in, so nothing here
knows Celery.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

import redis
from redis.exceptions import LockNotOwnedError

from prewarm.errors import ConfigError, PlanFileError
from prewarm.plan.inputs import Failure, Kind, Stat
from prewarm.plan.model import Plan
from prewarm.plan.records import FileInfo
from prewarm.site.fs import SiteFS
from prewarm.site.guard import Guard, inside
from prewarm.site.settings import Settings
from prewarm.state import keys, runner
from prewarm.state.dispatch import Send
from prewarm.state.jobs import WarmJob
from prewarm.warm.job import JobState

MAX_UNSIZED_BYTES = 64 << 20
"""Bytes a plan may ask of a file it gives no size for (`files`) and that cannot be looked up here:
a hand-written plan's small file is fine, a terabyte range of a file nobody measured is not."""


def check_plan(plan: Plan, settings: Settings, where: str, need_roots: bool = True) -> Plan:
    """Refuse a plan that reads outside the allowed roots or beyond the limits; the plan to warm.

    The limits are `Plan.limit_problem`'s, the same rules a plan file is validated with.
    A range of a file the plan gives no size for is measured here, through the site's
    guard, so that a range far past a file's end is refused at once rather than cut into
    a million reads; a file that cannot be measured may be asked for `MAX_UNSIZED_BYTES`.
    `need_roots=False` (a submitter without roots configured): the other checks still apply,
    the roots are then enforced by each worker against its own settings.
    """
    roots = settings.allowed_roots()
    if need_roots and not roots:
        raise ConfigError("roots", "no allowed studio roots: set `roots` or `path_map` in the config, "
                                   "or pass --local STUDIO=MOUNT")
    for path in plan.table.paths():
        if roots and not inside(path, roots):
            at = next(j for j, r in enumerate(plan.table.spans()) if r[0] == path)
            raise PlanFileError(f"{where}: ranges[{at}].path", f"{path!r} is outside the allowed roots {list(roots)}")
    for i, m in enumerate(plan.metadata):
        if roots and not inside(m.path, roots):
            raise PlanFileError(f"{where}: metadata[{i}].path",
                                f"{m.path!r} is outside the allowed roots {list(roots)}")
    plan = _measured(plan, settings, where)
    problem = plan.limit_problem()
    if problem:
        raise PlanFileError(f"{where}: {problem[0]}", problem[1])
    return plan


def _measured(plan: Plan, settings: Settings, where: str) -> Plan:
    """`plan` with a `files` entry for every file its ranges read, measured through the site's guard."""
    unsized: dict[str, int] = {}
    for path, offset, length in plan.table.spans():
        if path not in plan.files:
            unsized[path] = max(unsized.get(path, 0), offset + length)
    if not unsized:
        return plan
    fs = SiteFS(Guard(settings.allowed_roots(), settings.path_map), workers=settings.in_flight)
    with fs:
        found = dict(zip(unsized, fs.stat_many(list(unsized)), strict=True))
    files = dict(plan.files)
    for path, end in unsized.items():
        st = found[path]
        if isinstance(st, Stat) and st.kind is Kind.FILE:
            files[path] = FileInfo(path, st.size, st.mtime)
        elif end > MAX_UNSIZED_BYTES:
            why = st.reason if isinstance(st, Failure) else "not a regular file"
            raise PlanFileError(f"{where}: files", f"no size for {path} ({why} here), and its ranges reach "
                                                   f"{end:,} bytes: give its size in the plan's files")
    return replace(plan, files=files)


REUSABLE = (JobState.QUEUED, JobState.RUNNING, JobState.DONE)
"""A submission identical to a warm in one of these states gets that warm's id, not a new warm."""

LOCK_S = 60
"""How long one submission may hold its identity's lock (planning is done before it is taken)."""


@dataclass(frozen=True)
class Submission:
    """What `submit` hands back (the farm API answers with its own `Submitted` model, built from this)."""

    ids: tuple[str, ...]
    """One warm job per gateway node, in the order of the gateways."""
    duplicate: bool
    """True when every id is an earlier identical submission's."""


def identity(plan: Plan) -> str:
    """What makes two submissions the same warm: the same reads of the same file versions, in order.

    The plan's creation time and statistics are left out, so re-planning an unchanged job
    gives the same identity, while a changed input file (size, mtime) gives a new one. The
    ranges are hashed one at a time (a big plan's are never all JSON data at once).
    """
    data = plan.to_json(ranges=False)
    core = {k: data[k] for k in ("job", "frames", "gateways", "granule", "metadata", "files", "priority")}
    h = hashlib.sha256(json.dumps(core, sort_keys=True).encode())
    for r in plan.ranges:
        h.update(json.dumps(r.to_json(), sort_keys=True).encode())
    return h.hexdigest()[:32]


def submit_plan(r: redis.Redis[bytes], plan: Plan, settings: Settings, send: Send, where: str,
                gateways: Sequence[str] = (), reuse: bool = True) -> Submission:
    """Check `plan` and warm it on each gateway (`gateways`, else the plan's, else the default one).

    `reuse=False` (an operator's explicit `prewarm warm`) always starts new warms; the
    cross-job dedupe still keeps them from reading what a gateway already holds. The
    submitter may have no roots of its own: each worker enforces its own settings'.
    """
    plan = check_plan(plan, settings, where, need_roots=False)
    names = tuple(gateways) or settings.gateways(plan.gateways)
    key = identity(plan)
    ids: list[str] = []
    fresh = False
    # Only the release can fail this way: the lock expired, or Redis restarted without its data while
    # the warms were being submitted. They were submitted all the same; the warm's follower says the rest.
    with suppress(LockNotOwnedError), r.lock(keys.submission_lock(key), timeout=LOCK_S, blocking_timeout=LOCK_S / 2):
        for gw in names:
            existing = _live_duplicate(r, key, gw) if reuse else None
            if existing is None:
                existing = runner.submit(r, plan, settings, send, gw).id
                r.set(keys.submission(gw, key), existing, ex=settings.service_dedupe_s)
                fresh = True
            ids.append(existing)
    return Submission(tuple(ids), duplicate=not fresh)


def _live_duplicate(r: redis.Redis[bytes], key: str, gateway: str) -> str | None:
    raw = r.get(keys.submission(gateway, key))
    if raw is None:
        return None
    job_id = raw.decode()
    return job_id if WarmJob(r, job_id).state() in REUSABLE else None
