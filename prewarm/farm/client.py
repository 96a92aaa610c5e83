"""A small client of the warm service for submitters and scripts.

    from prewarm.farm.client import PrewarmClient
    c = PrewarmClient("http://prewarm:8750", token="...")
    ids = c.submit_manifest("shot010.yaml")["ids"]

Connection failures, timeouts and 5xx answers are retried with exponential backoff
(`backoff * 2**n`), then raised as `ServiceError`; a 4xx is the caller's mistake and
is raised at once as `InputError` carrying the service's `where` and message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from prewarm.errors import InputError, ServiceError
from prewarm.flow.adapters.openjd import BUNDLE_EXTS, BUNDLE_FILES
from prewarm.site.settings import Settings

MAX_BUNDLE_FILE = Settings.max_request_bytes
"""A bundle file beyond the service's default body limit (`max_request_bytes`) could not be sent: refused
here, unread, rather than by the service after the upload."""


class PrewarmClient:
    def __init__(self, server: str, token: str | None = None, timeout: float = 2.0, retries: int = 2,
                 backoff: float = 0.2, session: requests.Session | None = None) -> None:
        self.base = server.rstrip("/") + "/api/v1"
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()

    # submissions

    def submit_manifest(self, manifest: str | os.PathLike[str], traces: Sequence[str] | None = None) -> dict[str, Any]:
        """`manifest`: a path (a PathLike, or a str naming an existing file) or the manifest's text."""
        text = _read(manifest, "manifest") if isinstance(manifest, os.PathLike) or (
            "\n" not in manifest and os.path.isfile(manifest)) else manifest
        return self._submit({"manifest": text}, traces)

    def submit_bundle(self, bundle_dir: str | os.PathLike[str], traces: Sequence[str] | None = None,
                      remote: bool = False, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Send the bundle's files; `remote=True` sends only its path, for a folder the service sees under its roots.
        `parameters`: values over the bundle's own, as `deadline bundle submit -p` gives them."""
        given = {"parameters": dict(parameters)} if parameters else {}
        if remote:
            return self._submit({"bundle_path": str(bundle_dir), **given}, traces)
        folder = Path(bundle_dir)
        if not folder.is_dir():
            raise InputError(str(folder), "not a job bundle folder")
        files = {}
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.stem in BUNDLE_FILES and f.suffix in BUNDLE_EXTS:
                if f.stat().st_size > MAX_BUNDLE_FILE:
                    raise InputError(str(f), f"over {MAX_BUNDLE_FILE:,} bytes (the service's max_request_bytes): "
                                             "not a job description")
                if f.stem in files:
                    raise InputError(str(f), f"the bundle has two {f.stem} files: keep one")
                files[f.stem] = _read(f, str(f))
        if "template" not in files:
            raise InputError(str(folder), "not a job bundle: no template.yaml or template.json")
        return self._submit({"bundle": files, **given}, traces)

    def submit_deadline(self, job_info: str | os.PathLike[str], plugin_info: str | os.PathLike[str],
                        extra_inputs: Sequence[str] = (), traces: Sequence[str] | None = None) -> dict[str, Any]:
        """A Deadline 10 job: the job info and plugin info files (paths, or their text)."""
        def text(x: str | os.PathLike[str], what: str) -> str:
            if isinstance(x, os.PathLike) or ("\n" not in x and os.path.isfile(x)):
                return _read(x, what)
            return x

        body = {"job_info": text(job_info, "job info"), "plugin_info": text(plugin_info, "plugin info"),
                "extra_inputs": list(extra_inputs)}
        return self._submit({"deadline": body}, traces)

    # warms

    def status(self, job_id: str) -> dict[str, Any]:
        return _object(self._call("GET", f"/jobs/{job_id}"))

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        answer = self._call("GET", "/jobs", params={"limit": limit})
        if not isinstance(answer, list):
            raise ServiceError("the service answered something other than a list of warms")
        return [_object(a) for a in answer]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return _object(self._call("POST", f"/jobs/{job_id}/cancel"))

    def health(self) -> dict[str, Any]:
        return _object(self._call("GET", "/health"))

    # transport

    def _submit(self, body: dict[str, Any], traces: Sequence[str] | None) -> dict[str, Any]:
        if traces is not None:
            body["traces"] = list(traces)
        return _object(self._call("POST", "/jobs", json=body))

    def _call(self, method: str, path: str, **kw: Any) -> object:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = self.base + path
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self.session.request(method, url, headers=headers, timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"cannot reach {url}: {type(exc).__name__}"
                continue
            if resp.status_code >= 500:
                problem = f"{url}: HTTP {resp.status_code}: {_message(resp)[1]}"
                continue
            if resp.status_code >= 400:
                where, message = _message(resp)
                raise InputError(where or url, f"HTTP {resp.status_code}: {message}")
            try:
                return resp.json()
            except ValueError as exc:
                raise ServiceError(f"{url}: answer is not JSON") from exc
        raise ServiceError(f"{problem} (after {self.retries + 1} attempt(s))")


def _object(answer: object) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ServiceError("the service answered something other than a JSON object")
    return answer


def _message(resp: requests.Response) -> tuple[str, str]:
    try:
        data = resp.json()
    except ValueError:
        return "", resp.text[:200] or resp.reason
    if isinstance(data, dict) and "error" in data:
        return str(data.get("where") or ""), str(data["error"])
    return "", str(data)[:200]


def _read(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}") from exc
