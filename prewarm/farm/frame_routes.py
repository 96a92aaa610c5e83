"""Frame-event routes of the warm service: live jobs, frame events from any farm, re-planning.

    POST /api/v1/live/jobs                 make a job live: {"job": FARM_ID, "submission": <a /jobs body>,
                                           "warm": [ids]?}; without `warm` the submission is warmed now
    GET  /api/v1/live/jobs/{job}           its frames (started, node, warm at start), events, last re-plan;
                                           `?evaluate=true`: the submitted plan scored on finished frames
    POST /api/v1/live/jobs/{job}/events    a job-level event: {"event": "started|finished|requeued|
                                           failed|suspended|resumed|deleted"}
    POST /api/v1/frames                    frame events: {"events": [{"job", "frame", "event":
                                           "start|done|requeue|fail|progress", "node"?, "at"?, "trace"?}]}
    POST /api/v1/events/deadline-cloud     an AWS Deadline Cloud event as EventBridge delivers it
                                           ("Task Run Status Change", "Job Run Status Change")
    POST /api/v1/events/opencue            an OpenCue monitoring event as Cuebot publishes it to Kafka
                                           (topics opencue.frame.events, opencue.job.events), JSON

POSTs need the service token (the service includes `router` with its bearer check);
`reads` needs none. Events are applied straight to Redis (`prewarm.state.frames`), so
a flood costs no memory here; re-planning happens in the service's `LiveLoop`, started
with the first event, never in a request. A refused event (unknown job, frame not in
the job) is answered in one line per event and changes nothing.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Annotated, Any

import redis
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from prewarm.errors import InputError, OutsideRoots, TraceError
from prewarm.flow import jobs, live, warming
from prewarm.plan.manifest import Manifest
from prewarm.report import frames as frame_report
from prewarm.site.guard import Guard, inside
from prewarm.site.settings import Settings
from prewarm.state import frames as fstate
from prewarm.state import keys
from prewarm.state.dispatch import Send
from prewarm.state.frames import FrameEvent, Kind
from prewarm.traces.files import TraceFile

_LOOPS: list[live.LiveLoop] = []
"""The re-planning loops this process started (one per app)."""


def _stop_loops() -> None:
    """At the service's shutdown: no re-planning thread outlives it. (Another app's loop in the same
    process starts again with its next event.)"""
    while _LOOPS:
        _LOOPS.pop().stop()


router = APIRouter()
"""The changing routes: included with the service's token check."""

reads = APIRouter(on_shutdown=[_stop_loops])
"""The read-only route; its shutdown handler stops the re-planning loops."""

MAX_EVENTS = 1000
"""Events per request: a farm batches a flood, each request stays small."""

JobId = Annotated[str, Field(min_length=1, max_length=128, pattern=live.LIVE_JOB.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Loose(BaseModel):
    """A farm's payload: fields we do not read are allowed (farms add fields over time)."""

    model_config = ConfigDict(extra="ignore")


class LiveJob(_Strict):
    job: JobId = Field(description="the farm's job id, as its frame events will name it")
    submission: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        description="the job as POST /jobs takes it: {manifest | bundle | bundle_path | deadline, traces?}")
    warm: list[Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$")]] | None = Field(
        None, max_length=64, description="its warm ids, if it was submitted already; else it is warmed now")


class Event(_Strict):
    job: JobId
    frame: int = Field(ge=-(1 << 31), lt=1 << 31)
    event: Kind
    node: str = Field("", max_length=256)
    at: float | None = Field(None, ge=0, le=253_402_300_799, description="epoch seconds; default: now")
    trace: str | None = Field(None, max_length=4096, description="with `done`: the frame's trace, a studio path; "
                                                                   "with `progress`: its records so far")


class Events(_Strict):
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class JobEventBody(_Strict):
    event: live.JobEvent


class CloudDetail(_Loose):
    """An event's `detail`. A task's status is `runStatus` (GetTask's field), a job's is
    `taskRunStatus` (GetJob's and ListJobs': a job has no run status of its own, only the
    summary of its tasks'), as the deadline-cloud client reads them
    (src/deadline/client/cli/_groups/job_group.py)."""

    jobId: str = Field(max_length=128)
    taskId: str | None = Field(None, max_length=128)
    runStatus: str | None = Field(None, max_length=32)
    taskRunStatus: str | None = Field(None, max_length=32)
    parameters: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(None, max_length=16)
    """Not in the event itself: a forwarder that looked the task up (GetTask) may add its parameters,
    `{"Frame": {"int": "12"}}` (a name, then the one value under its type)."""


class CloudEvent(_Loose):
    detail_type: str = Field(alias="detail-type", max_length=128)
    source: str = Field(max_length=64)
    time: str | None = Field(None, max_length=64)
    detail: CloudDetail


class CueHeader(_Loose):
    event_type: str = Field(max_length=64)
    timestamp: int | str | None = None


class CueFrame(_Loose):
    name: str = Field("", max_length=512)
    number: int | None = None


class CueJob(_Loose):
    name: str = Field("", max_length=512)


class CueEvent(_Loose):
    header: CueHeader
    frame: CueFrame | None = None
    job: CueJob | None = None
    job_name: str = Field("", max_length=512)
    host_name: str = Field("", max_length=256)


def _state(request: Request) -> tuple[redis.Redis[bytes], Settings]:
    return request.app.state.redis, request.app.state.settings


def loader(settings: Settings) -> live.Loader:
    """Manifests of live jobs registered through the service: a manifest's text, or a submission
    (an OpenJD bundle, a Deadline 10 job) turned into its manifest by the service's one path."""
    def load(kind: str, body: str) -> Manifest:
        if kind == "manifest":
            return live.load_manifest_text(kind, body)
        from prewarm.farm import service

        req = service.SubmitRequest.model_validate_json(body)
        job = service.job_of(req, settings, Guard(settings.allowed_roots(), settings.path_map))
        assert job.manifest is not None     # the service's loader takes no plans
        return job.manifest
    return load


def _loop(request: Request) -> None:
    """Start the service's re-planning loop with the first event (once per app)."""
    app = request.app
    r, settings = _state(request)
    if getattr(app.state, "live_loop", None) is None:
        send: Send = app.state.send
        app.state.live_loop = live.LiveLoop(r, settings, send, loader(settings))
    if app.state.live_loop not in _LOOPS:
        _LOOPS.append(app.state.live_loop)
    app.state.live_loop.ensure_started()


# registering


@router.post("/live/jobs", status_code=201)
async def register_job(request: Request, body: LiveJob) -> dict[str, Any]:
    r, settings = _state(request)
    live.check_job_id(body.job, "job")
    out = await run_in_threadpool(_register, r, settings, request.app.state.send, body)
    _loop(request)
    request.app.state.live_loop.prime_later(body.job)  # its first re-plan is then incremental
    return out


def _register(r: redis.Redis[bytes], settings: Settings, send: Send, body: LiveJob) -> dict[str, Any]:
    from prewarm.farm import service

    try:
        req = service.SubmitRequest.model_validate(body.submission)
    except ValidationError as exc:
        bad = service.invalid(exc)
        raise InputError(f"submission.{bad.where}" if bad.where != "body" else "submission", bad.message) from exc
    roots = settings.allowed_roots()
    guard = Guard(roots, settings.path_map)
    job = service.job_of(req, settings, guard)
    manifest = job.manifest
    assert manifest is not None     # the service's loader takes no plans
    ids, duplicate = body.warm, False
    if ids is None:
        plan = jobs.plan(job, service.traces_of(req, manifest, settings, guard), settings)
        submitted = warming.submit_plan(r, plan, settings, send, "plan")
        ids, duplicate = list(submitted.ids), submitted.duplicate
    live.register(r, body.job, manifest, ids, "submission", req.model_dump_json(exclude={"traces"}))
    return {"job": body.job, "name": manifest.job, "frames": len(manifest.frames), "ids": ids, "duplicate": duplicate}


@reads.get("/live/jobs/{job}")
def job_state(request: Request, job: str = PathParam(max_length=128),
              evaluate: bool = Query(False, description="also score the submitted plan against the finished "
                                                        "frames' traces (reads the trace store)")) -> dict[str, Any]:
    r, settings = _state(request)
    report = frame_report.live_report(r, live.check_job_id(job, "job"), settings if evaluate else None)
    if report is None:
        raise HTTPException(404, f"no live job {job!r} (never registered, or expired)")
    return report.to_json()


@router.post("/live/jobs/{job}/events")
def job_event(request: Request, body: JobEventBody, job: str = PathParam(max_length=128)) -> dict[str, Any]:
    r, _ = _state(request)
    done = live.job_event(r, live.check_job_id(job, "job"), body.event)
    if done == "unknown_job":
        raise HTTPException(404, f"no live job {job!r} (never registered, or expired)")
    _loop(request)
    return {"job": job, "event": body.event.value, "result": done}


# frame events


@router.post("/frames", status_code=202)
async def frame_events(request: Request, body: Events) -> dict[str, Any]:
    r, settings = _state(request)
    out = await run_in_threadpool(_apply, r, settings, body.events)
    _loop(request)
    return {"results": out, "refused": sum(1 for x in out if x["outcome"] in ("unknown_job", "unknown_frame"))}


def _apply(r: redis.Redis[bytes], settings: Settings, events: list[Event]) -> list[dict[str, Any]]:
    """In the order given: runs of events without traces in one round trip each, a traced `done` alone.
    Every trace path is checked first: a request naming one outside the roots changes nothing; one
    that cannot be read is the job's finding, and its event counts."""
    now = time.time()
    traces = {i: _trace(e.trace, settings, f"events[{i}].trace") for i, e in enumerate(events) if e.trace is not None}
    out: list[dict[str, Any]] = []
    run: list[Event] = []

    def flush() -> None:
        for e, outcome in zip(run, fstate.apply_many(r, [_event(e, now) for e in run]), strict=True):
            if outcome in (fstate.Outcome.DONE, fstate.Outcome.DONE_WITHOUT_START, fstate.Outcome.REQUEUED):
                fstate.ask_replan(r, e.job, now)
            elif outcome in (fstate.Outcome.STARTED, fstate.Outcome.RESTARTED):
                live.note_start(r, _event(e, now))
            out.append({"outcome": outcome.value, "trace": None})
        run.clear()

    for i, e in enumerate(events):
        if i not in traces:
            run.append(e)
            continue
        flush()
        found = traces[i]
        trace, why = (None, found) if isinstance(found, str) else (found, None)
        out.append(live.report_event(r, settings, _event(e, now), trace, now, why).to_json())
    flush()
    return out


def _event(e: Event, now: float) -> FrameEvent:
    return FrameEvent(e.event, e.job, e.frame, now if e.at is None else e.at, e.node)


def _trace(path: str, settings: Settings, where: str) -> list[TraceFile] | str:
    """The trace files at `path` (a studio path under the roots: else refused), or why they cannot be read."""
    from prewarm.traces.files import trace_files

    guard = Guard(settings.allowed_roots(), settings.path_map)
    if not inside(path, guard.roots):
        raise OutsideRoots(where, f"{path!r} is outside the allowed roots {list(guard.roots)}")
    try:
        return trace_files(path, guard)
    except (TraceError, OSError) as exc:
        return exc.message if isinstance(exc, TraceError) else f"{type(exc).__name__}: {exc.strerror}"


# Deadline Cloud (EventBridge)

CLOUD_TASK = re.compile(r"^task-[0-9a-f]{32}-(0|[1-9][0-9]{0,9})$")

CLOUD_TASK_STATUS = {"RUNNING": Kind.START, "SUCCEEDED": Kind.DONE, "FAILED": Kind.FAIL,
                     "READY": Kind.REQUEUE, "PENDING": Kind.REQUEUE, "CANCELED": Kind.REQUEUE,
                     "SUSPENDED": Kind.REQUEUE}
"""Task run statuses that say something about a frame; the rest (ASSIGNED, STARTING, SCHEDULED,
INTERRUPTING, NOT_COMPATIBLE) are acknowledged and ignored."""

CLOUD_JOB_STATUS = {"SUCCEEDED": live.JobEvent.FINISHED, "FAILED": live.JobEvent.FAILED,
                    "CANCELED": live.JobEvent.DELETED, "SUSPENDED": live.JobEvent.SUSPENDED,
                    "RUNNING": live.JobEvent.STARTED}


@router.post("/events/deadline-cloud")
def deadline_cloud_event(request: Request, body: CloudEvent) -> dict[str, Any]:
    r, _ = _state(request)
    if body.source != "aws.deadline":
        raise InputError("source", f"not a Deadline Cloud event (source {body.source!r})")
    at = _iso(body.time)
    d = body.detail
    live.check_job_id(d.jobId, "detail.jobId")
    if body.detail_type == "Job Run Status Change":
        event = CLOUD_JOB_STATUS.get(d.taskRunStatus or "")
        result = "ignored" if event is None else live.job_event(r, d.jobId, event, at)
        return {"job": d.jobId, "result": result}
    if body.detail_type != "Task Run Status Change":
        return {"job": d.jobId, "result": "ignored"}
    kind = CLOUD_TASK_STATUS.get(d.runStatus or "")
    if kind is None:
        return {"job": d.jobId, "result": "ignored"}
    meta = fstate.registered(r, d.jobId)
    if meta is None:
        r.hincrby(keys.LIVE_REFUSED, fstate.Outcome.UNKNOWN_JOB.value, 1)
        raise HTTPException(404, f"no live job {d.jobId!r} (never registered, or expired)")
    frame = _cloud_frame(d, meta)
    reported = live.report_event(r, request.app.state.settings, FrameEvent(kind, d.jobId, frame, at))
    _loop(request)
    return {"job": d.jobId, "frame": frame, "result": reported.outcome.value}


def _cloud_frame(d: CloudDetail, meta: dict[str, str]) -> int:
    """The frame a task renders: its `Frame` parameter when the forwarder added it, else the task's
    number in the job's frame order (a step with one frame per task, as OpenJD numbers them)."""
    for name, value in (d.parameters or {}).items():
        if "frame" in name.lower():
            raw = value.get("int") if isinstance(value, dict) else value
            try:
                return int(str(raw))
            except ValueError as exc:
                raise InputError(f"detail.parameters.{name}", "not an integer frame") from exc
    m = CLOUD_TASK.match(d.taskId or "")
    if m is None:
        raise InputError("detail.taskId", "expected task-<32 hex>-<n>")
    order = json.loads(meta.get("order", "[]"))
    n = int(m.group(1))
    if n >= len(order):
        raise InputError("detail.taskId", f"task {n} of a job of {len(order)} frames")
    return int(order[n])


def _iso(text: str | None) -> float:
    if not text:
        return time.time()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise InputError("time", "not an ISO 8601 time") from exc


# OpenCue (Cuebot's monitoring events, from Kafka)

CUE_FRAME = {"FRAME_STARTED": Kind.START, "FRAME_COMPLETED": Kind.DONE, "FRAME_EATEN": Kind.DONE,
             "FRAME_FAILED": Kind.FAIL, "FRAME_RETRIED": Kind.REQUEUE, "FRAME_KILLED": Kind.REQUEUE}

CUE_JOB = {"JOB_STARTED": live.JobEvent.STARTED, "JOB_FINISHED": live.JobEvent.FINISHED,
           "JOB_KILLED": live.JobEvent.DELETED, "JOB_PAUSED": live.JobEvent.SUSPENDED,
           "JOB_RESUMED": live.JobEvent.RESUMED}

_CUE_NUMBER = re.compile(r"^(-?\d+)-")


@router.post("/events/opencue")
def opencue_event(request: Request, body: CueEvent) -> dict[str, Any]:
    r, _ = _state(request)
    kind = body.header.event_type
    at = _millis(body.header.timestamp)
    if kind in CUE_JOB:
        job = body.job.name if body.job is not None else body.job_name
        return {"job": job, "result": live.job_event(r, live.check_job_id(job, "job.name"), CUE_JOB[kind], at)}
    if kind not in CUE_FRAME or body.frame is None:
        return {"job": body.job_name, "result": "ignored"}
    frame = body.frame.number
    if frame is None:  # a FRAME_STARTED event carries the name only: "0001-render"
        m = _CUE_NUMBER.match(body.frame.name)
        if m is None:
            raise InputError("frame.name", "expected NUMBER-LAYER")
        frame = int(m.group(1))
    event = FrameEvent(CUE_FRAME[kind], live.check_job_id(body.job_name, "job_name"), frame, at, body.host_name)
    reported = live.report_event(r, request.app.state.settings, event)
    _loop(request)
    if reported.outcome is fstate.Outcome.UNKNOWN_JOB:
        raise HTTPException(404, f"no live job {body.job_name!r} (never registered, or expired)")
    return {"job": body.job_name, "frame": frame, "result": reported.outcome.value}


def _millis(ts: int | str | None) -> float:
    if ts is None or ts == "":
        return time.time()
    try:
        return int(ts) / 1000.0
    except ValueError as exc:
        raise InputError("header.timestamp", "not epoch milliseconds") from exc
