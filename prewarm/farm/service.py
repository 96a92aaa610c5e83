"""`prewarm serve`: the HTTP face of plan + warm, for submitter hooks and farm tools.

The service does no reading itself: it turns a job description (a manifest, an OpenJD
bundle, a Deadline 10 job) into a plan and hands the plan to the warm engine on Redis,
where the Celery workers of each gateway node do the reading. Everything it accepts
comes from the network, so every input is checked as hostile: bodies are bounded,
paths must lie under the configured roots, and any bad request gets a 4xx with
`{"error": ..., "where": ...}`, never a 500.

Routes (all under /api/v1; POSTs need `Authorization: Bearer <service_token>`):
    POST /jobs               submit; 202 with new warm ids, 200 with the ids of an identical live warm
    GET  /jobs               recent warms
    GET  /jobs/{id}          one warm
    POST /jobs/{id}/cancel   cancel
    GET  /health             Redis reachable
    frame events and live jobs: `prewarm.farm.frame_routes`
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from prewarm.errors import InputError, OutsideRoots, ServiceError, TraceError
from prewarm.farm import frame_routes
from prewarm.farm import report_routes as service_reports
from prewarm.flow import jobs, warming
from prewarm.plan.manifest import Manifest
from prewarm.site.guard import Guard, inside
from prewarm.site.settings import Settings
from prewarm.state import client as state_client
from prewarm.state import dispatch, keys, runner
from prewarm.state.dispatch import Send
from prewarm.state.jobs import WarmJob, recent
from prewarm.traces.files import TraceFile

API = "/api/v1"

Revoke = Callable[[list[str]], None]

Served = Callable[[], "frozenset[str] | None"]
"""The queues some worker consumes now; None while that is not known (see `QueueWatch`)."""


# request bodies


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeadlineJob(_Strict):
    """A Deadline 10 submission as its two `Key=Value` files hold it."""

    job_info: str = Field(max_length=1 << 20, description="the job info file's text")
    plugin_info: str = Field(max_length=1 << 20, description="the plugin info file's text")
    extra_inputs: list[Annotated[str, Field(max_length=4096)]] = Field(
        default=[], max_length=1000, description="input paths or patterns the job files do not name")


class SubmitRequest(_Strict):
    """Exactly one of `manifest`, `bundle`, `bundle_path`, `deadline`, `hook` (`hook` may bring `bundle`)."""

    manifest: str | None = Field(None, description="a prewarm manifest, YAML or JSON text (also a bundle "
                                                   "object or a hook payload as JSON text)")
    bundle: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(
        None, description="an OpenJD job bundle: {template, asset_references?, parameter_values?}, "
                          "each the file's content as an object or as its YAML/JSON text")
    bundle_path: str | None = Field(None, max_length=4096,
                                    description="an OpenJD job bundle folder under the configured roots")
    deadline: DeadlineJob | None = None
    hook: dict[Annotated[str, Field(max_length=64)], Any] | None = Field(
        None, description="a Deadline Cloud submission hook's payload (jobName, parameters, jobBundleDir, "
                          "assetReferences); the bundle's files in `bundle`, else its jobBundleDir under the roots")
    traces: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None, max_length=1000, description="trace files or folders under the roots; default: the trace store's")
    parameters: dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=32 << 10)]] | None = Field(
        None, max_length=1000, description="a bundle's parameter values, over its own (`prewarm submit -p`)")


class Submitted(BaseModel):
    ids: list[str]
    job: str
    duplicate: bool
    plan: dict[str, Any]
    missing: list[dict[str, Any]]
    unserved: list[str] | None = Field(
        None, description="queues of this job's warms that no worker consumes: the warm waits until one starts "
                          "(absent when the service does not know yet)")


class ErrorBody(BaseModel):
    error: str
    where: str = ""


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422, 503)}

_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}},
            "application/yaml": {"schema": {"type": "string", "description": "a prewarm manifest"}},
        },
    }
}


# the app


def connect(url: str) -> redis.Redis[bytes]:
    """The service answers at once when Redis is away: a quick 503, never a hook's timeout."""
    return state_client.connect(url, ride_out_restarts=False)


def create_app(settings: Settings, r: redis.Redis[bytes], send: Send, revoke: Revoke,
               token: str | None, served: Served | None = None) -> FastAPI:
    """The service over one Redis; `send`/`revoke` reach the workers (Celery's in production),
    `served` says which queues they consume (a submitter is told when none reads its job's).

    `token` None leaves the service open: only for a trusted loopback (`prewarm serve --no-token`).
    """
    app = FastAPI(title="prewarm", version="1",
                  description="Plan and warm render jobs' reads through a caching gateway.")
    app.state.redis, app.state.settings = r, settings  # for the report routes (prewarm.farm.report_routes)
    _handlers(app)
    app.middleware("http")(_size_guard(settings.max_request_bytes))

    auth = [Depends(_bearer(token))]

    @app.post(f"{API}/jobs", status_code=202, response_model=Submitted, responses=ERRORS, dependencies=auth,
              openapi_extra=_SUBMIT_BODY)
    async def submit_job(request: Request) -> JSONResponse:
        req = await _submission(request, settings.max_request_bytes)
        result = await run_in_threadpool(_submit, req, settings, r, send, served)
        return JSONResponse(result.model_dump(), status_code=200 if result.duplicate else 202)

    @app.get(f"{API}/jobs", responses=ERRORS)
    def list_jobs(limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
        return [i.to_json() for i in recent(r, limit)]

    @app.get(f"{API}/jobs/{{job_id}}", responses=ERRORS)
    def job_status(job_id: str = PathParam(max_length=64)) -> dict[str, Any]:
        info = WarmJob(r, _known_id(job_id)).info()
        if info is None:
            raise HTTPException(404, f"no warm job {job_id} (expired or never created)")
        if not info.state.final:
            info.overdue = dispatch.overdue(r, info.gateway, job_id, settings.visibility_timeout_s, time.time())
        return info.to_json()

    @app.post(f"{API}/jobs/{{job_id}}/cancel", responses=ERRORS, dependencies=auth)
    def cancel_job(job_id: str = PathParam(max_length=64)) -> dict[str, Any]:
        _known_id(job_id)
        job = WarmJob(r, job_id)
        if job.state() is None:
            raise HTTPException(404, f"no warm job {job_id} (expired or never created)")
        changed = runner.cancel(r, job_id, settings, revoke, send)
        state = job.state()
        return {"id": job_id, "cancelled": changed, "state": None if state is None else state.value}

    @app.get(f"{API}/health", responses={503: {"model": ErrorBody}})
    def health() -> dict[str, Any]:
        try:
            r.ping()
        except redis.RedisError as exc:
            raise ServiceError(f"Redis unreachable: {exc}") from exc
        return {"ok": True, "redis": "ok"}

    app.include_router(service_reports.router, prefix=API)
    app.state.send = send  # for the frame-event routes' re-planning loop (prewarm.farm.frame_routes)
    app.include_router(frame_routes.router, prefix=API, dependencies=auth)
    app.include_router(frame_routes.reads, prefix=API)
    return app


def _bearer(token: str | None) -> Callable[[Request], None]:
    """The dependency every changing route has: the token, compared in constant time."""
    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(401, "a valid `Authorization: Bearer <token>` header is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return authorised


async def _submission(request: Request, limit: int) -> SubmitRequest:
    """The request body as a submission: a manifest as YAML text, or the JSON form."""
    body = await _read_body(request, limit)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        return SubmitRequest.model_validate({"manifest": _text(body)})
    if kind == "application/json":
        try:
            return SubmitRequest.model_validate_json(body)
        except ValidationError as exc:
            raise invalid(exc) from exc
    raise HTTPException(415, f"content type {kind!r}: send application/json or application/yaml")


def _known_id(job_id: str) -> str:
    if not keys.is_job_id(job_id):  # warm ids are hex: anything else is a 404 before Redis is asked
        raise HTTPException(404, f"no warm job {job_id!r}: ids are hexadecimal")
    return job_id


# submission


def _submit(req: SubmitRequest, settings: Settings, r: redis.Redis[bytes], send: Send,
            served: Served | None = None) -> Submitted:
    """Describe, check, plan, then warm each gateway unless an identical warm is live."""
    roots = settings.allowed_roots()
    if not roots:
        raise ServiceError("the service has no allowed roots: set `roots` or `path_map` in its config")
    guard = Guard(roots, settings.path_map)
    job = job_of(req, settings, guard)
    assert job.manifest is not None
    traces = traces_of(req, job.manifest, settings, guard)
    plan = jobs.plan(job, traces, settings)
    submitted = warming.submit_plan(r, plan, settings, send, "plan")
    consumed = served() if served is not None else None
    queues = {keys.queue(g) for g in settings.gateways(plan.gateways)}
    return Submitted(ids=list(submitted.ids), job=plan.job, duplicate=submitted.duplicate, plan=plan.summary(),
                     missing=[m.to_json() for m in plan.missing],
                     unserved=None if consumed is None else sorted(queues - consumed))


class QueueWatch:
    """Which queues some worker consumes, asked of the workers every `every_s` in a thread of its own,
    so a submission is answered at once: a broadcast waits its whole timeout for answers."""

    def __init__(self, ask: Callable[[], set[str]], every_s: float = 15.0) -> None:
        self.ask = ask
        self.every_s = every_s
        self.known: frozenset[str] | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prewarm-queue-watch", daemon=True)

    def __call__(self) -> frozenset[str] | None:
        return self.known

    def start(self) -> QueueWatch:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            with suppress(OSError, redis.RedisError, KombuError):  # the broker away: keep the last answer
                self.known = frozenset(self.ask())
            self.stop.wait(self.every_s)


def job_of(req: SubmitRequest, settings: Settings, guard: Guard) -> jobs.Job:
    """The request's job, read by the one loader (`prewarm.flow.jobs`); studio paths through `guard`."""
    given = [k for k in ("manifest", "bundle", "bundle_path", "deadline", "hook") if getattr(req, k) is not None]
    if len(given) != 1 and sorted(given) != ["bundle", "hook"]:
        raise InputError("body", "give exactly one of manifest, bundle, bundle_path, deadline, hook (hook may "
                                 "bring its bundle)" + (f" (got {', '.join(given)})" if given else ""))
    ctx = jobs.context(settings, req.parameters)
    if req.manifest is not None:
        return jobs.from_text(req.manifest, "manifest", ctx, guard=guard)
    if req.deadline is not None:
        d = req.deadline
        return jobs.deadline(d.job_info, d.plugin_info, "deadline", ctx, d.extra_inputs)
    if req.hook is not None:
        try:
            return jobs.hook(req.hook, "hook", ctx, req.bundle, guard)
        except InputError as exc:   # a jobBundleDir the service read: its content is not shown
            raise type(exc)(exc.where, _unquoted(exc.message)) from exc
    if req.bundle_path is not None:
        if not inside(req.bundle_path, guard.roots):
            raise OutsideRoots("bundle_path", f"{req.bundle_path!r} is outside the allowed roots {list(guard.roots)}")
        try:
            return jobs.bundle_folder(req.bundle_path, req.bundle_path.rstrip("/"), ctx, guard)
        except InputError as exc:
            raise type(exc)(exc.where, _unquoted(exc.message)) from exc
    assert req.bundle is not None
    return jobs.bundle_object(req.bundle, "bundle", ctx)


def traces_of(req: SubmitRequest, manifest: Manifest, settings: Settings, guard: Guard) -> list[TraceFile] | None:
    """The request's studio paths found through the site's guard (errors name them as given);
    None when it names none: plan from the trace store's profiles of the shot."""
    from prewarm.traces.files import trace_files

    if req.traces is None:
        return None
    out: list[TraceFile] = []
    for i, t in enumerate(req.traces):
        if not inside(t, guard.roots):
            raise OutsideRoots(f"traces[{i}]", f"{t!r} is outside the allowed roots {list(guard.roots)}")
        try:
            out.extend(trace_files(t.rstrip("/") or t, guard))
        except TraceError as exc:
            raise TraceError(f"traces[{i}]", f"{exc.where}: {exc.message}") from exc
    return out


_QUOTED = re.compile(r"""'[^']*'|"[^"]*"|\{.*\}|\[[^\]]*=[^\]]*\]|input_value=\S+""")


def _unquoted(message: str) -> str:
    """An error about a file the service read itself, without the values it quotes: the file
    (a bundle under the roots) may be one the caller cannot read, so its content is not shown."""
    return _QUOTED.sub("...", message)


# request guards and error bodies


def _size_guard(limit: int) -> Callable[[Request, Callable[[Request], Awaitable[Any]]], Awaitable[Any]]:
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _error(413, f"request body over the limit of {limit} bytes", "body")
        return await call_next(request)

    return guard


async def _read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes even when the client streams without a length."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("body", f"not UTF-8 text (byte {exc.start})") from exc


def invalid(exc: ValidationError | RequestValidationError) -> InputError:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InputError(where, f"{first.get('msg', 'invalid')}{more}")


def _error(status: int, message: str, where: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "where": where}, status_code=status)


def _handlers(app: FastAPI) -> None:
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InputError)
        return _error(403, exc.message, exc.where)

    async def bad_input(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InputError)
        return _error(400 if exc.where == "body" else 422, exc.message, exc.where)

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc) if isinstance(exc, ServiceError) else f"Redis: {exc}")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        resp = _error(exc.status_code, str(exc.detail))
        resp.headers.update(exc.headers or {})
        return resp

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        err = invalid(exc)
        return _error(422, err.message, err.where)

    app.add_exception_handler(OutsideRoots, refused)
    app.add_exception_handler(InputError, bad_input)
    app.add_exception_handler(ServiceError, unavailable)
    app.add_exception_handler(redis.RedisError, unavailable)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation)

