"""Report routes of the warm service: the JSON report, the HTML page, Prometheus metrics.

    GET /api/v1/jobs/{id}/report        the report data (`prewarm report ID --json`)
    GET /api/v1/jobs/{id}/report.html   the self-contained page (`prewarm report ID --html`)
    GET /api/v1/metrics                 Prometheus text format (see prewarm.report.metrics)

Kept as its own router: the service includes it, and it finds the service's Redis and
settings on `app.state` (set by `create_app`). All reads, no token needed, like the
other GETs of the service.
"""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from prewarm.errors import ConfigError
from prewarm.report import html as report_html
from prewarm.report import load as report_redis
from prewarm.report.metrics import RedisCollector
from prewarm.report.model import Report
from prewarm.site.settings import Settings
from prewarm.state import keys

router = APIRouter()

def _state(request: Request) -> tuple[redis.Redis[bytes], Settings]:
    return request.app.state.redis, request.app.state.settings


def _load(request: Request, job_id: str) -> Report:
    if not keys.is_job_id(job_id):
        raise HTTPException(404, f"no warm job {job_id!r}: ids are hexadecimal")
    r, settings = _state(request)
    try:
        return report_redis.load(r, job_id, settings.throttle_bps)
    except ConfigError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/jobs/{job_id}/report")
def job_report(request: Request, job_id: str = PathParam(max_length=64)) -> dict[str, Any]:
    return _load(request, job_id).to_json()


@router.get("/jobs/{job_id}/report.html", response_class=HTMLResponse)
def job_report_html(request: Request, job_id: str = PathParam(max_length=64)) -> HTMLResponse:
    return HTMLResponse(report_html.render(_load(request, job_id)))


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    r, _ = _state(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(r))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
