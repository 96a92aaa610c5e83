"""Keep ahead of a running job: frame events in, re-plans of the frames still to start out.

A job is *live* once registered (`register`): its manifest and its warm ids are kept
with its frame events (`prewarm.state.frames`). Events come from any farm
(`report_event`); a finished frame's trace is filed into the trace store under the
job's names, so the store holds the job's own frames beside its earlier versions. A
running frame may post its records so far (`progress`, every few minutes: a render
reads most of its data early), filed the same way and replaced by its finished trace:
the loop then learns within minutes of the first wave's start, not when it ends.

Each finished (or requeued) frame, and each frame's records so far, asks for a re-plan; asks are coalesced per job and
taken after `DEBOUNCE_S` (`replan_due`, run by the service's `LiveLoop` or by
`prewarm frame replan`), at most `MAX_JOBS_PER_ROUND` jobs a round, each planned
once however many events arrived meanwhile. A re-plan (`replan`):

1. plans the frames that have not started (waiting, requeued, failed) from the trace
   store: the finished frames' own reads now among the evidence. Running frames are
   not re-planned: what they need was planned before they started;
2. stops the previous warm's dispatch (`frames.stop_dispatch`): batches already sent
   stay (they are in flight or done, and join the job's `covered` spans); the rest is
   what the re-plan replaces;
3. warms the difference as a new warm job: the new plan less what was already sent,
   ordered by when each frame is expected to start (the farm's order and the pace of
   the finished frames), plus the previous warm's unsent ranges the new plan does not
   name but that are not guesses (running frames may still read them);
4. drops the previous warm's unsent *guesses* (fallback, whole-file, unread-tile and
   region ranges) that no frame still to start needs, listed with the reason.

Dispatch never waits on this: the workers keep sending whatever is queued while a
re-plan runs, and a re-plan only ever adds one warm job and stops one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from enum import StrEnum

import redis

from prewarm.errors import ConfigError, InputError, PrewarmError
from prewarm.flow import jobs, planning, warming
from prewarm.flow.adapters import NO_CONTEXT
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.build import PlanOptions
from prewarm.plan.manifest import Manifest
from prewarm.plan.model import Plan
from prewarm.plan.ranges import Span, normalize, subtract
from prewarm.plan.records import FileInfo, PlannedRange, Reason
from prewarm.site.settings import Settings
from prewarm.state import frames as fstate
from prewarm.state import keys, runner
from prewarm.state.dispatch import Send
from prewarm.state.frames import FrameEvent, FrameState, Kind, Outcome
from prewarm.state.jobs import WarmJob
from prewarm.traces.files import TraceFile
from prewarm.traces.loading import ProfileCache

log = logging.getLogger(__name__)

LIVE_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}$")
"""A live job's id: the farm's own (a Deadline job id, `job-<hex>`, an OpenCue job name)."""

DEBOUNCE_S = 2.0
"""A re-plan runs this long after the first event that asked for it: a wave of frames finishing
together is one re-plan, not one each."""

MAX_JOBS_PER_ROUND = 8
"""Jobs re-planned per round; the rest wait for the next (a round runs every `DEBOUNCE_S`)."""

GUESSES = frozenset({Reason.FALLBACK, Reason.WHOLE, Reason.UNREAD_TILE, Reason.REGION})
"""Ranges planned without evidence that a frame reads them: what new evidence may drop."""

ANSWERED = frozenset({Reason.FALLBACK})
"""Guesses a finished frame's trace answers: a file no traced frame read at all. The planner keeps
planning it whole (another frame might read it); the live job stops once `MIN_EVIDENCE` of its
own frames have records filed (finished or so far) that do not read it. Unread tiles of a tile set stay: in a
push-in the later frames read finer tiles than any earlier frame did."""

MIN_EVIDENCE = 4
"""Frames with records filed (finished, or so far: `progress`) before the re-plans drop what none
of them read. Records so far count: waiting for finished frames lets a 20-minute frame's whole-file
guesses run for 20 minutes (bench/farm.py: live WAN bytes 2.9x the oracle's, against 2.1x when
frames post their records every 2 minutes); a running frame that reads a dropped file later reads
it cold, once, and the next re-plan warms what it read for the frames after it."""

MAX_LISTED = 200
"""Dropped ranges listed per re-plan (all are counted)."""


def check_job_id(job: str, where: str = "job") -> str:
    if not LIVE_JOB.match(job):
        raise InputError(where, "a live job id is 1-128 letters, digits and . _ @ + - (starting with a "
                                "letter or digit)")
    return job


Loader = Callable[[str, str], Manifest]
"""`load(kind, body)`: the manifest of a registered job from what it was registered with; the
service's knows farm submissions (`prewarm.farm.frame_routes.loader`)."""


def load_manifest_text(kind: str, body: str) -> Manifest:
    """The loader of jobs registered with a manifest's text (the CLI's, and the default): read by the
    one loader of jobs (`flow.jobs.from_text`), as `prewarm plan` reads that text; a plan is refused."""
    if kind != "manifest":
        raise ConfigError("live job", f"registered from a {kind!r} submission: only the service can re-plan it")
    job = jobs.from_text(body, "manifest", NO_CONTEXT)
    assert job.manifest is not None     # from_text gives plans only when asked to
    return job.manifest


def register(r: redis.Redis[bytes], job: str, manifest: Manifest, warm_ids: Sequence[str],
             kind: str = "manifest", body: str = "") -> None:
    """Make `job` live: its frames in render order, its warm ids, and what its manifest was made
    from (`kind`, `body`: a manifest's text, or the farm submission a service loader knows)."""
    check_job_id(job)
    for i, wid in enumerate(warm_ids):  # a live job only ever supersedes warms of its own job
        name = r.hget(keys.job(wid), "name")
        if name is None or name.decode() != manifest.job:
            raise InputError(f"warm[{i}]", f"warm job {wid} is not a warm of job {manifest.job!r}")
    forget(job)
    fstate.register(r, job, manifest.frames, {
        "kind": kind, "body": body, "name": manifest.job, "show": manifest.show or "", "shot": manifest.shot or "",
        "warm": json.dumps(list(warm_ids)), "first_warm": json.dumps(list(warm_ids)), "state": "live"})


@dataclass(frozen=True)
class Reported:
    """What one event did: its outcome, and what became of its trace (None: there was none)."""

    outcome: Outcome
    trace: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"outcome": self.outcome.value, "trace": self.trace}


def report_event(r: redis.Redis[bytes], settings: Settings, event: FrameEvent,
                 trace: str | TraceFile | Sequence[TraceFile] | None = None, now: float | None = None,
                 unreadable: str | None = None) -> Reported:
    """Record `event`; a finished frame's trace, or a running frame's records so far (`progress`),
    is filed, and a re-plan is asked for.

    A trace that cannot be read or filed (`unreadable`: the caller could not even open it)
    is a finding in the job's log: the event still counts and the job warms on.
    """
    outcome = fstate.apply(r, event)
    if outcome.refused:
        return Reported(outcome)
    filed = None
    finished = event.kind is Kind.DONE and outcome in (Outcome.DONE, Outcome.DONE_WITHOUT_START)
    so_far = outcome is Outcome.PROGRESS
    if (finished or so_far) and (trace is not None or unreadable is not None):
        filed = _file_records(r, settings, event, trace, unreadable, finished)
    if finished or outcome is Outcome.REQUEUED or (so_far and filed == "filed"):
        fstate.ask_replan(r, event.job, time.time() if now is None else now)
    if outcome in (Outcome.STARTED, Outcome.RESTARTED):
        note_start(r, event)
    return Reported(outcome, filed)


FILING_LOCK_S = 300
"""The longest one frame's records may take to file (a frame's trace is megabytes at most)."""


def _file_records(r: redis.Redis[bytes], settings: Settings, event: FrameEvent,
                  trace: str | TraceFile | Sequence[TraceFile] | None, unreadable: str | None, finished: bool
                  ) -> str:
    """File a frame's records, one filing of a frame at a time: a frame's records so far never
    replace its finished trace (filed records replace the frame's earlier ones in the store), since
    they are filed only while the frame still runs, checked under the frame's lock."""
    with r.lock(keys.live_filing(event.job, event.frame), timeout=FILING_LOCK_S, blocking_timeout=FILING_LOCK_S):
        if not finished and fstate.state_of(r, event.job, event.frame) is not FrameState.RUNNING:
            return "not filed: the frame is no longer running"
        if unreadable is not None:
            return _finding(r, event, unreadable)
        assert trace is not None
        return _file_trace(r, settings, event, trace)


def note_start(r: redis.Redis[bytes], event: FrameEvent) -> None:
    """Note whether the frame's data was warm as it started; a warm that expired or cannot be read
    leaves a line in the job's log, never a failed event."""
    meta = fstate.registered(r, event.job) or {}
    try:
        warms = [str(w) for w in json.loads(meta.get("warm", "[]"))]
        fstate.record_readiness(r, event.job, event.frame, event.at, warms)
    except (PrewarmError, ValueError) as exc:
        fstate.note(r, event.job, {"at": event.at, "frame": event.frame, "finding": "readiness unknown",
                                   "why": str(exc)})


def _file_trace(r: redis.Redis[bytes], settings: Settings, event: FrameEvent,
                trace: str | TraceFile | Sequence[TraceFile]) -> str:
    from prewarm.flow.filing import structure_of
    from prewarm.traces.store import import_traces

    meta = fstate.registered(r, event.job) or {}
    try:
        files = [trace] if isinstance(trace, str | TraceFile) else list(trace)
        result = import_traces(settings, files, meta.get("show") or None, meta.get("shot") or None,
                               meta.get("name") or event.job, frame=event.frame,
                               structures=structure_of(settings))
    except (PrewarmError, OSError, ValueError) as exc:
        return _finding(r, event, str(exc) if isinstance(exc, PrewarmError) else f"{type(exc).__name__}: {exc}")
    if event.kind is Kind.DONE:
        r.hincrby(keys.live(event.job, "meta"), "traces_filed", 1)
    else:
        r.hincrby(keys.live(event.job, "meta"), "progress_filed", 1)
    fstate.add_evidence(r, event.job, event.frame)
    r.hset(keys.live(event.job, "meta"), "store_folder", result.folder)
    return "filed"


def _finding(r: redis.Redis[bytes], event: FrameEvent, why: str) -> str:
    fstate.note(r, event.job, {"at": event.at, "frame": event.frame, "finding": "trace not filed", "why": why})
    r.hincrby(keys.live(event.job, "meta"), "traces_unreadable", 1)
    return f"not filed: {why}"


class JobEvent(StrEnum):
    """What a farm says about a whole job (Deadline 10's job events, Deadline Cloud's job run status)."""

    STARTED = "started"
    FINISHED = "finished"
    REQUEUED = "requeued"
    FAILED = "failed"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    DELETED = "deleted"


ENDED = (JobEvent.FINISHED, JobEvent.FAILED, JobEvent.DELETED)


def job_event(r: redis.Redis[bytes], job: str, event: JobEvent, now: float | None = None) -> str:
    """Apply a job-level event; what it did, in a few words.

    A job that ended (finished, failed, deleted) needs nothing more: its warms send no more
    batches (those sent finish) and it is never re-planned. Suspended: no re-plans until
    resumed. Requeued: every frame waits again and the job is re-planned.
    """
    now = time.time() if now is None else now
    meta = fstate.registered(r, job)
    if meta is None:
        return "unknown_job"
    if event is JobEvent.STARTED:
        fstate.update(r, job, {"started": now})
        return "recorded"
    if event in ENDED:
        stopped = 0
        for wid in json.loads(meta.get("warm", "[]")):
            gateway = r.hget(keys.job(str(wid)), "gateway")
            if gateway is not None:
                stopped += fstate.stop_dispatch(r, str(wid), gateway.decode(), f"job {event.value}") is not None
        fstate.update(r, job, {"state": event.value, "ended": now})
        forget(job)
        return f"ended; {stopped} warm(s) stopped"
    if event is JobEvent.SUSPENDED:
        fstate.update(r, job, {"state": "suspended"})
        return "suspended"
    if event is JobEvent.REQUEUED:
        n = fstate.requeue_all(r, job)
        fstate.update(r, job, {"state": "live"})
        fstate.ask_replan(r, job, now)
        return f"{n} frame(s) requeued"
    fstate.update(r, job, {"state": "live"})
    fstate.ask_replan(r, job, now)
    return "resumed"


# re-planning


@dataclass
class Replan:
    """What one re-plan did."""

    job: str
    frames: int = 0
    """Frames re-planned (not started)."""
    running: int = 0
    added_bytes: int = 0
    carried_bytes: int = 0
    dropped_bytes: int = 0
    dropped: list[dict[str, object]] = field(default_factory=list)
    warm: list[str] = field(default_factory=list)
    took_s: float = 0.0
    skipped: str = ""
    planned: Incremental | None = None
    """How the store planner planned: the files whose evidence changed, or all and why."""

    def to_json(self) -> dict[str, object]:
        return {"job": self.job, "frames": self.frames, "running": self.running, "added_bytes": self.added_bytes,
                "carried_bytes": self.carried_bytes, "dropped_bytes": self.dropped_bytes,
                "dropped": self.dropped, "warm": self.warm, "took_s": round(self.took_s, 3),
                "skipped": self.skipped,
                "planned": None if self.planned is None else {
                    "whole": self.planned.whole, "changed_files": self.planned.changed_files,
                    "planned_files": self.planned.planned_files, "traced_files": self.planned.traced_files}}


def replan(r: redis.Redis[bytes], settings: Settings, send: Send, job: str, now: float | None = None,
           load: Loader = load_manifest_text, planner: Planner | None = None) -> Replan:
    """Re-plan the frames of `job` that have not started and warm the difference (see the module).
    One re-plan of a job at a time (a Redis lock): another that finds it held is skipped, since
    the one running reads the frames' state as it is."""
    lock = r.lock(keys.live(job, "lock"), timeout=REPLAN_LOCK_S, blocking_timeout=0)
    if not lock.acquire():
        return Replan(job, skipped="another re-plan of the job is running")
    try:
        return _replan(r, settings, send, job, now, load, planner)
    finally:
        with suppress(redis.exceptions.LockError):
            lock.release()


REPLAN_LOCK_S = 120
"""The longest one re-plan may hold its job's lock (a 1,000-frame job takes seconds)."""


def _replan(r: redis.Redis[bytes], settings: Settings, send: Send, job: str, now: float | None, load: Loader,
            planner: Planner | None) -> Replan:
    t0 = time.perf_counter()
    now = time.time() if now is None else now
    meta = fstate.registered(r, job)
    if meta is None:
        raise ConfigError(job, "no live job of that id (never registered, or expired)")
    out = Replan(job)
    if meta.get("state", "live") != "live":
        out.skipped = f"job is {meta['state']}"
        return out
    manifest = _manifest(load, meta.get("kind", "manifest"), meta.get("body", ""))
    state = fstate.frames(r, job)
    order = [int(f) for f in json.loads(meta["order"])]
    waiting = tuple(f for f in order if f not in state or state[f].state in (FrameState.WAITING, FrameState.FAILED))
    out.frames, out.running = len(waiting), sum(1 for f in state.values() if f.state is FrameState.RUNNING)
    if not waiting:
        out.skipped = "every frame has started"
        return out
    plan = (planner or _store_planner(settings, job))(manifest, waiting)
    out.planned = last_incremental.get(job) if planner is None else None
    wanted, unneeded = without_unread(plan.ranges, fstate.evidence(r, job))
    previous = [str(w) for w in json.loads(meta.get("warm", "[]"))]
    sent, unsent, old_files = _stop_previous(r, previous, job)
    covered = _merge(fstate.covered(r, job), sent)
    fstate.set_covered(r, job, covered)
    need = _spans((x.path, x.offset, x.length) for x in wanted)
    when = eta(waiting, state, now)
    added = order_by_start(minus(wanted, covered), when)
    carried, dropped = leftovers(unsent, need, len(order) - len(waiting))
    dropped += minus(unneeded, _merge(covered, _spans((x.path, x.offset, x.length) for x in unsent)))
    out.added_bytes = sum(x.length for x in added)
    out.carried_bytes = sum(x.length for x in carried)
    out.dropped_bytes = sum(x.length for x in dropped)
    why = f"no frame still to start needs it ({len(order) - len(waiting)} frames started)"
    out.dropped = [{**x.to_json(), "why": f"{x.reason.value} range: {why}"} for x in dropped[:MAX_LISTED]]
    ranges = carried + added
    if ranges:
        files: dict[str, FileInfo] = {**old_files, **plan.files}
        fresh = Plan(job=manifest.job, frames=waiting, ranges=ranges, files=files, granule=plan.granule,
                     created=now, start=min(when.values(), default=now),
                     priority=manifest.priority, gateways=manifest.gateways)
        out.warm = _warm(r, fresh, settings, send, f"live {job}")
    out.took_s = time.perf_counter() - t0
    fstate.update(r, job, {"warm": json.dumps(out.warm or []), "last_replan": json.dumps(out.to_json()),
                           "replans": int(meta.get("replans", "0")) + 1})
    return out


def _warm(r: redis.Redis[bytes], plan: Plan, settings: Settings, send: Send, where: str) -> list[str]:
    """Warm a re-plan's difference on each gateway: checked like any plan (`warming.check_plan`), but
    never matched against earlier submissions (`submit_plan`'s identity): a difference is new by
    construction, and hashing every range of a big one costs a re-plan a third of its time."""
    plan = warming.check_plan(plan, settings, where, need_roots=False)
    ids = [runner.submit(r, plan, settings, send, gw).id for gw in settings.gateways(plan.gateways)]
    with _kept_lock:
        for wid in ids:
            _submitted[wid] = plan
        while len(_submitted) > 2 * JOBS_KEPT:
            _submitted.popitem(last=False)
    return ids


_submitted: OrderedDict[str, Plan] = OrderedDict()
"""The plans of the warms this process's re-plans submitted, by warm id: the next re-plan of the
job stops that warm and needs its plan, which reading back from Redis cost 1.0 of a 4.6 s re-plan
of a 1,000-frame job (a stored plan never changes, so the copy is the plan)."""


MANIFESTS_KEPT = 64
"""Parsed manifests of live jobs kept in memory: a job is re-planned many times from the same text,
and parsing a manifest of 2,000 inputs took 0.65 s of a 1,000-frame re-plan."""

_parsed: OrderedDict[tuple[Loader, str, str], Manifest] = OrderedDict()
_parsed_lock = threading.Lock()


def _manifest(load: Loader, kind: str, body: str) -> Manifest:
    """`load(kind, body)`, remembered for the `MANIFESTS_KEPT` most recent (a manifest is immutable)."""
    key = (load, kind, hashlib.sha256(body.encode()).hexdigest())
    with _parsed_lock:
        if key in _parsed:
            _parsed.move_to_end(key)
            return _parsed[key]
    manifest = load(kind, body)
    with _parsed_lock:
        _parsed[key] = manifest
        while len(_parsed) > MANIFESTS_KEPT:
            _parsed.popitem(last=False)
    return manifest


Planner = Callable[[Manifest, tuple[int, ...]], Plan]
"""`planner(manifest, waiting)`: the plan of the frames still to start."""


def _store_planner(settings: Settings, job: str) -> Planner:
    def plan(manifest: Manifest, frames: tuple[int, ...]) -> Plan:
        return replan_incrementally(settings, job, manifest, frames)
    return plan


# incremental re-planning

INCREMENTAL_SHARE = 0.5
"""A re-plan whose new evidence touches more than this share of the traced files plans them all:
past it, planning the part costs nearly what the whole does."""

JOBS_KEPT = 4
"""Live jobs whose last plan and decoded store profiles this process keeps for incremental re-plans
(the service's loop; a `prewarm frame replan` run is a process of its own and plans whole). Measured
once: 83 MB for bench/live_replan.py's job (1,000 frames, 2,000 inputs, 1M records filed), most of it
the profiles. A job that ends, or is registered again, is forgotten at once; the least recently
re-planned goes first."""


@dataclass
class _Kept:
    """What the last re-plan of a job knew: for which frames, from what evidence, and its plan."""

    waiting: frozenset[int]
    signatures: dict[str, int]
    ranges: list[PlannedRange]
    files: dict[str, FileInfo]
    granule: int
    profiles: ProfileCache
    """The store's profiles, decoded: the next re-plan reads only the frames filed since."""
    units: dict[str, str] = field(default_factory=dict)
    """What each file is re-predicted with (`_units`), as far as asked."""


_kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
_kept_lock = threading.Lock()


@dataclass
class Incremental:
    """How the last `replan_incrementally` planned: in part or whole, and why."""

    whole: str = ""
    """Why every file was planned ("" when only the changed ones were)."""
    changed_files: int = 0
    planned_files: int = 0
    traced_files: int = 0


last_incremental: dict[str, Incremental] = {}
"""Per live job, how its last re-plan in this process planned (shown in `Replan`)."""


def replan_incrementally(settings: Settings, job: str, manifest: Manifest, waiting: tuple[int, ...]) -> Plan:
    """The plan of `waiting` from the store, re-predicting only what new evidence changed.

    The store's traces are loaded whole (a second at 1,000 frames); each file's evidence
    (which frames read which spans, and stat-ed it) is compared with the last re-plan's.
    A file whose evidence changed is re-predicted, with every file of its input when the
    input is a per-frame or tile pattern (a frame's file borrows from its neighbours'); the
    rest of the last plan is reused, less the ranges only frames that have started needed.
    The whole job is planned when this process has no earlier plan of it, when frames wait
    again that the last plan did not cover (requeued), when a scene input could have brought
    in files of its own, or when more than `INCREMENTAL_SHARE` of the files changed.

    What it does not redo: a file the new frames did not touch keeps its prediction even
    where the number of traced frames enters it (a shared file read by most traced frames is
    planned for every frame): its ranges stay planned, which errs towards warming more.
    """
    from prewarm.plan.aggregate import restrict_paths
    from prewarm.plan.scenes import scene_kind
    from prewarm.traces.loading import load_profiles

    key = (job, hashlib.sha256(repr(manifest).encode()).hexdigest())
    options = PlanOptions(frames=waiting)
    with _kept_lock:
        kept = _kept.pop(key, None)  # this re-plan's to update; another of the job plans whole meanwhile
    profiles: ProfileCache = {} if kept is None else kept.profiles
    ts = load_profiles(settings, manifest, settings.path_map.merged(manifest.path_map), cache=profiles).traces
    signatures = _signatures(ts)
    wait = frozenset(waiting)
    how = Incremental(planned_files=len(signatures), traced_files=len(signatures))
    changed: set[str] = set()
    if kept is None:
        how.whole = "first re-plan of the job here"
    elif not wait <= kept.waiting:
        how.whole = "frames wait again that the last plan did not cover"
    elif any(scene_kind(spec) is not None for spec in manifest.inputs):
        how.whole = "a scene input"
    else:
        changed = {p for p in signatures.keys() | kept.signatures.keys()
                   if signatures.get(p) != kept.signatures.get(p)}
        how.changed_files = len(changed)
        if len(changed) > INCREMENTAL_SHARE * max(1, len(signatures)):
            how.whole = f"{len(changed)} of {len(signatures)} files' evidence changed"
    memo: dict[str, str] = {}
    if how.whole or kept is None:
        plan = planning.plan_traced(manifest, ts, settings, options)
        ranges, files = list(plan.ranges), dict(plan.files)
    else:
        memo = kept.units
        unit = _units(manifest, memo)
        units = {unit(p) for p in changed}
        redo = {p for p in signatures if p in changed or unit(p) in units}
        inputs = tuple(spec for i, spec in enumerate(manifest.inputs)
                       if f"input:{i}" in units or spec.pattern.text in changed)
        part = planning.plan_traced(replace(manifest, inputs=inputs), restrict_paths(ts, redo), settings, options)
        how.planned_files = len(redo)
        ranges = [pr for pr in kept.ranges if pr.path not in redo and unit(pr.path) not in units
                  and (pr.frame is None or pr.frame in wait or pr.frames > 1)]
        ranges += part.ranges
        files = {**kept.files, **part.files}
        plan = part
    named = {pr.path for pr in ranges}
    files = {p: f for p, f in files.items() if p in named}
    with _kept_lock:
        _kept[key] = _Kept(wait, signatures, ranges, files, plan.granule, profiles, memo)
        _kept.move_to_end(key)
        while len(_kept) > JOBS_KEPT:
            _kept.popitem(last=False)
        last_incremental[job] = how
        while len(last_incremental) > JOBS_KEPT:
            last_incremental.pop(next(iter(last_incremental)))
    return Plan(job=manifest.job, frames=waiting, ranges=ranges, files=files, granule=plan.granule,
                created=plan.created, start=manifest.start, priority=manifest.priority, gateways=manifest.gateways)


def forget(job: str) -> None:
    """Drop this process's last plan of `job`: registered again, it is re-planned whole first."""
    with _kept_lock:
        for key in [k for k in _kept if k[0] == job]:
            del _kept[key]
        last_incremental.pop(job, None)


def _signatures(ts: TraceSet) -> dict[str, int]:
    """Per file, a hash of its evidence: which traced frames read which spans, and which stat-ed it."""
    out = {p: hash(tuple((f, tuple(spans)) for f, spans in sorted(per.items()))) for p, per in ts.reads.items()}
    for p, frames in ts.stats.items():
        out[p] = hash((out.get(p, 0), tuple(sorted(frames))))
    return out


def _units(manifest: Manifest, memo: dict[str, str]) -> Callable[[str], str]:
    """What a file is re-predicted with: every file of its input when that is a per-frame or tile
    pattern (`input:N`), else itself. Remembered in `memo`: a job's files keep their input."""
    patterned = [(f"input:{i}", spec.pattern, "" if spec.pattern.frame_in_directory else spec.pattern.directory + "/")
                 for i, spec in enumerate(manifest.inputs) if spec.pattern.has_frame or spec.pattern.has_tile]

    def unit(path: str) -> str:
        known = memo.get(path)
        if known is None:
            folder = path.rpartition("/")[0] + "/"
            known = next((name for name, pattern, where in patterned
                          if (not where or folder == where) and pattern.match(path) is not None), path)
            memo[path] = known
        return known
    return unit


def _stop_previous(r: redis.Redis[bytes], warm_ids: Sequence[str], job: str
                   ) -> tuple[dict[str, list[Span]], list[PlannedRange], dict[str, FileInfo]]:
    """Stop the previous warms' dispatch: (spans they sent, ranges they will not send, their files)."""
    sent: dict[str, list[Span]] = {}
    unsent: list[PlannedRange] = []
    files: dict[str, FileInfo] = {}
    for wid in warm_ids:
        warm = WarmJob(r, wid)
        gateway = r.hget(warm.key, "gateway")
        if gateway is None:
            continue
        n = fstate.stop_dispatch(r, wid, gateway.decode(), f"live re-plan of {job}")
        batches = warm.batches()
        with _kept_lock:
            kept = _submitted.get(wid)
        plan = kept if kept is not None else warm.plan()
        files.update(plan.files)
        for b in batches:
            if n is None or b.index < n:
                for rd in b.reads:
                    sent.setdefault(rd.path, []).append((rd.offset, rd.offset + rd.length))
        if n is None:
            continue
        left = _spans((rd.path, rd.offset, rd.length) for b in batches if b.index >= n for rd in b.reads)
        for pr in plan.ranges:
            for s, e in _cut(left.get(pr.path, []), pr.offset, pr.end):
                unsent.append(PlannedRange(pr.path, s, e - s, pr.frame, pr.frames, pr.reason))
    return {p: normalize(s) for p, s in sent.items()}, unsent, files


def _cut(spans: list[Span], start: int, end: int) -> list[Span]:
    return [(max(s, start), min(e, end)) for s, e in spans if s < end and e > start]


def _spans(items: Iterable[tuple[str, int, int]]) -> dict[str, list[Span]]:
    by: dict[str, list[Span]] = {}
    for path, offset, length in items:
        by.setdefault(path, []).append((offset, offset + length))
    return {p: normalize(s) for p, s in by.items()}


def _merge(a: Mapping[str, list[Span]], b: Mapping[str, list[Span]]) -> dict[str, list[Span]]:
    return {p: normalize([*a.get(p, []), *b.get(p, [])]) for p in {*a, *b}}


def minus(ranges: Iterable[PlannedRange], covered: Mapping[str, list[Span]]) -> list[PlannedRange]:
    """`ranges` less what `covered` holds, each piece keeping its range's frame and reason."""
    out: list[PlannedRange] = []
    for pr in ranges:
        held = covered.get(pr.path)
        if not held:
            out.append(pr)
            continue
        for s, e in subtract([(pr.offset, pr.end)], _cut(held, pr.offset, pr.end)):
            out.append(PlannedRange(pr.path, s, e - s, pr.frame, pr.frames, pr.reason))
    return out


def leftovers(unsent: list[PlannedRange], need: Mapping[str, list[Span]], started: int
               ) -> tuple[list[PlannedRange], list[PlannedRange]]:
    """The previous warm's unsent ranges the new plan does not name: kept when they were traced
    (a running frame may read them), dropped when they were guesses."""
    carried: list[PlannedRange] = []
    dropped: list[PlannedRange] = []
    for pr in minus(unsent, need):
        (dropped if pr.reason in GUESSES and started else carried).append(pr)
    return carried, dropped


def eta(waiting: Sequence[int], state: Mapping[int, fstate.Frame], now: float) -> dict[int, float]:
    """When each waiting frame is expected to start: in the farm's order, as many at a time as nodes
    are rendering, each wave one frame's time (the median of finished frames) after the last.

    Before any frame has finished the pace is unknown: frames are then a second apart, which keeps
    the farm's order and nothing more."""
    took = sorted(f.finished - f.started for f in state.values()
                  if f.state is FrameState.DONE and f.started is not None and f.finished is not None
                  and f.finished >= f.started)
    nodes = max(1, len({f.node for f in state.values() if f.state is FrameState.RUNNING} - {""}),
                sum(1 for f in state.values() if f.state is FrameState.RUNNING))
    pace = took[len(took) // 2] if took else 1.0
    rank = {f: i for i, f in enumerate(waiting)}
    return {f: now + (rank[f] // nodes) * pace + (pace / 2 if took else 0.0) for f in waiting}


def without_unread(ranges: Iterable[PlannedRange], evidence: int) -> tuple[list[PlannedRange], list[PlannedRange]]:
    """(ranges to warm, ranges dropped): the `ANSWERED` guesses go once `evidence` traced frames
    have finished (at least `MIN_EVIDENCE`), the rest stay."""
    if evidence < MIN_EVIDENCE:
        return list(ranges), []
    keep: list[PlannedRange] = []
    drop: list[PlannedRange] = []
    for pr in ranges:
        (drop if pr.reason in ANSWERED else keep).append(pr)
    return keep, drop


def order_by_start(ranges: list[PlannedRange], when: Mapping[int, float]) -> list[PlannedRange]:
    """By when the first frame that needs each range starts; ranges every frame needs first. Stable:
    the planner's order within a frame stays."""
    soonest = min(when.values(), default=0.0) - 1.0
    return sorted(ranges, key=lambda pr: soonest if pr.frame is None else when.get(pr.frame, soonest))


def replan_due(r: redis.Redis[bytes], settings: Settings, send: Send, now: float | None = None,
               debounce_s: float = DEBOUNCE_S, limit: int = MAX_JOBS_PER_ROUND,
               load: Loader = load_manifest_text) -> list[Replan]:
    """Re-plan the jobs whose ask is at least `debounce_s` old; a job that fails is noted and left."""
    now = time.time() if now is None else now
    done: list[Replan] = []
    for job in fstate.due(r, now - debounce_s, limit):
        try:
            done.append(replan(r, settings, send, job, now, load))
        except (PrewarmError, redis.RedisError) as exc:
            log.warning("live re-plan of %s: %s", job, exc)
            fstate.note(r, job, {"at": now, "finding": "re-plan failed", "why": str(exc)})
    return done


def prime(r: redis.Redis[bytes], settings: Settings, job: str, load: Loader = load_manifest_text) -> bool:
    """Plan `job`'s frames not started yet from the store, whole, and keep the plan without warming
    it: the job's first re-plan, when its first frames' records arrive, is then incremental (1.7 s
    against 3.2 s at 1,000 frames). False when the job is gone, not live, already planned here, or
    being re-planned."""
    meta = fstate.registered(r, job)
    if meta is None or meta.get("state", "live") != "live":
        return False
    manifest = _manifest(load, meta.get("kind", "manifest"), meta.get("body", ""))
    with _kept_lock:
        if any(k[0] == job for k in _kept):
            return False
    lock = r.lock(keys.live(job, "lock"), timeout=REPLAN_LOCK_S, blocking_timeout=0)
    if not lock.acquire():
        return False
    try:
        state = fstate.frames(r, job)
        waiting = tuple(f for f in manifest.frames
                        if f not in state or state[f].state in (FrameState.WAITING, FrameState.FAILED))
        if waiting:
            replan_incrementally(settings, job, manifest, waiting)
        return bool(waiting)
    finally:
        with suppress(redis.exceptions.LockError):
            lock.release()


class LiveLoop:
    """A daemon thread that runs `replan_due` every `interval_s` (the service starts one), and between
    rounds primes the jobs registered through it (`prime`)."""

    def __init__(self, r: redis.Redis[bytes], settings: Settings, send: Send, load: Loader = load_manifest_text,
                 interval_s: float = DEBOUNCE_S) -> None:
        self.r, self.settings, self.send, self.load, self.interval_s = r, settings, send, load, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._priming: OrderedDict[str, None] = OrderedDict()

    def prime_later(self, job: str) -> None:
        """Prime `job` in a coming round (the newest `JOBS_KEPT` asked are kept)."""
        with self._lock:
            self._priming[job] = None
            while len(self._priming) > JOBS_KEPT:
                self._priming.popitem(last=False)

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, name="prewarm-live", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                replan_due(self.r, self.settings, self.send, debounce_s=self.interval_s, load=self.load)
                with self._lock:
                    job = next(iter(self._priming), None)
                    self._priming.pop(job or "", None)
                if job is not None:
                    prime(self.r, self.settings, job, self.load)
            except Exception:  # the loop outlives any one round; the round's error is logged
                log.exception("live re-planning round failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
