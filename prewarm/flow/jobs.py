"""The one way a job enters prewarm: whatever a user hands over, as a manifest to plan or a plan to warm.

The CLI (`plan`, `warm`, `verify`, `evaluate`), the service, the watch folder and the
submission hooks all come through here, so a job means the same everywhere:
- a folder: an OpenJD / Deadline Cloud job bundle;
- a JSON object: a plan (`ranges`), a bundle posted whole (`template`), a Deadline
  Cloud submission hook's payload (`jobBundleDir`, `jobName`, `assetReferences`), or a
  manifest written as JSON;
- other text: a manifest (YAML);
- a Deadline 10 job info + plugin info pair (`deadline`).
Told apart by content, not by file name. Parameter values given on the command line
(`-p Name=Value`, `--parameter-values FILE`) and the site's path map (Windows drive and
UNC prefixes, the mount a bundle folder is read through) join every farm description
the same way (`Context`).

`plan` then plans a job exactly as `prewarm plan` does: from the traces given, else
from the trace store's earlier traces of the shot.
"""

from __future__ import annotations

import errno
import json
import os
import stat as statmod
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prewarm.errors import ManifestError, PlanFileError
from prewarm.flow.adapters import Context
from prewarm.flow.adapters import openjd as openjd_adapter
from prewarm.flow.adapters.deadline10 import job_to_manifest
from prewarm.flow.planning import DEFAULT_OPTIONS, PlanOptions, plan_manifest
from prewarm.plan.manifest import Manifest, parse_manifest, safe_load
from prewarm.plan.model import Plan
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces.files import TraceFile

__all__ = ["Job", "bundle_folder", "bundle_object", "context", "deadline", "deadline_files",
           "from_text", "hook", "load", "load_manifest", "load_plan", "parameter_file", "plan", "plan_job"]

HOOK_KEYS = ("jobBundleDir", "jobName", "assetReferences", "attachments")
"""Keys that only a Deadline Cloud submission hook's payload has."""


@dataclass(frozen=True)
class Job:
    """A job to plan (`manifest`) or already planned (`plan`), and what was noted on the way."""

    where: str
    manifest: Manifest | None = None
    plan: Plan | None = None
    notes: tuple[str, ...] = field(default=())


def context(settings: Settings, parameters: Mapping[str, str] | None = None) -> Context:
    """What the site and the user add to a farm's description: parameter values, path map, roots."""
    return Context(dict(parameters or {}), settings.path_map, settings.allowed_roots(), settings.max_request_bytes)


def load(source: str | os.PathLike[str], settings: Settings, parameters: Mapping[str, str] | None = None,
         follow_links: bool = True) -> Job:
    """The job in file or folder `source` of this machine. `follow_links=False` (drop folders, written
    by anyone): a link, FIFO or device is refused by name, never read."""
    path, where = Path(source), str(source)
    try:
        mode = (os.stat if follow_links else os.lstat)(path).st_mode
    except OSError as exc:
        raise ManifestError(where, f"cannot read: {exc.strerror or type(exc).__name__}") from exc
    ctx = context(settings, parameters)
    if statmod.S_ISDIR(mode):
        return bundle_folder(path, where, ctx)
    if not statmod.S_ISREG(mode):
        raise ManifestError(where, "not a job: a symlink, FIFO, device or socket is not read")
    limit = settings.max_request_bytes     # what the service accepts, a manifest file the CLI reads too
    with _open(path, follow_links) as fh:
        head = fh.read(limit + 1)
        if head.lstrip()[:1] == b"{" and len(head) > limit:
            fh.seek(0)
            return Job(where, plan=load_plan(fh, where))    # a plan: streamed, however large
    if len(head) > limit:
        raise ManifestError(where, f"larger than {limit:,} bytes (the site's max_request_bytes): a job "
                                   "description is kilobytes; list folders or patterns")
    return from_text(_decoded(head, where), where, ctx, plans=True)


def load_manifest(source: str | os.PathLike[str], settings: Settings | None = None) -> Manifest:
    """The manifest of the job in `source`, read as `load` reads any job (a plan file is refused)."""
    job = load(source, settings or Settings())
    if job.manifest is None:
        raise ManifestError(str(source), "a plan, not a job: give the job's manifest or bundle")
    return job.manifest


def from_text(text: str, where: str, ctx: Context, guard: Guard | None = None, plans: bool = False) -> Job:
    """A job written as text: a JSON object (plan, bundle, hook payload, manifest) or a YAML manifest.
    `guard`: how a hook payload's `jobBundleDir` is read (the service's, by studio path)."""
    if text.lstrip()[:1] != "{":
        return Job(where, manifest=parse_manifest(text, where))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(where, f"not valid JSON: {str(exc)[:120] or 'nested too deeply'}") from exc
    if not isinstance(data, dict):
        raise ManifestError(where, "expected a JSON object")
    if "ranges" in data:
        if not plans:
            raise ManifestError(where, "a plan, not a job: submit the job's manifest or bundle, which is planned here")
        return Job(where, plan=_plan_of_text(text, where))
    if any(k in data for k in HOOK_KEYS):
        return hook(data, where, ctx, guard=guard)
    if any(str(k).removesuffix(ext) == "template" for k in data for ext in ("", ".yaml", ".yml", ".json")):
        notes: list[str] = []
        return Job(where, manifest=openjd_adapter.bundle_json_to_manifest(data, where, ctx, notes), notes=tuple(notes))
    return Job(where, manifest=parse_manifest(text, where))


def bundle_folder(folder: str | Path, where: str, ctx: Context, guard: Guard | None = None) -> Job:
    """A job bundle folder: of this machine, or (with `guard`) a studio path read through it."""
    notes: list[str] = []
    manifest = openjd_adapter.bundle_to_manifest(folder, where, guard, ctx, notes)
    return Job(where, manifest=manifest, notes=tuple(notes))


def bundle_object(obj: Mapping[str, Any], where: str, ctx: Context) -> Job:
    """A bundle posted as one object (`{"template": ..., ...}`)."""
    notes: list[str] = []
    return Job(where, manifest=openjd_adapter.bundle_json_to_manifest(obj, where, ctx, notes), notes=tuple(notes))


def hook(payload: Mapping[str, Any], where: str, ctx: Context, files: Mapping[str, Any] | None = None,
         guard: Guard | None = None) -> Job:
    """A Deadline Cloud submission hook's payload; the bundle's files as the hook read them, or else
    its `jobBundleDir` (a folder of this machine, or a studio path read through `guard`)."""
    notes: list[str] = []
    manifest = openjd_adapter.hook_to_manifest(payload, where, files, guard, ctx, notes)
    return Job(where, manifest=manifest, notes=tuple(notes))


def deadline(job_info: str, plugin_info: str, where: str, ctx: Context, extra_inputs: Sequence[str] = (),
             plugin_where: str | None = None) -> Job:
    """A Deadline 10 submission: its job info and plugin info texts."""
    return Job(where, manifest=job_to_manifest(job_info, plugin_info, where, extra_inputs, plugin_where, ctx))


def deadline_files(job_info: str, plugin_info: str, settings: Settings) -> Job:
    """A Deadline 10 submission from the two files its submitter writes (`JOB --plugin-info FILE`),
    each read no larger than the site's `max_request_bytes`."""
    limit = settings.max_request_bytes
    texts: list[str] = []
    for path in (job_info, plugin_info):
        with _open(Path(path), True) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ManifestError(path, f"larger than {limit:,} bytes (the site's max_request_bytes): not a "
                                      "Deadline job or plugin info file")
        texts.append(_decoded(data, path))
    return deadline(texts[0], texts[1], job_info, context(settings), plugin_where=plugin_info)


def parameter_file(path: str, settings: Settings) -> dict[str, str]:
    """A parameter values file as `deadline bundle submit --parameter-values` reads it, no larger than
    the site's `max_request_bytes` (as a bundle's own parameter values file)."""
    limit = settings.max_request_bytes
    with _open(Path(path), True) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(path, f"larger than {limit:,} bytes (the site's max_request_bytes): not a parameter "
                                  "values file")
    return openjd_adapter.parameter_values(safe_load(_decoded(data, path), path, "not valid YAML or JSON"), path)


def plan(job: Job, traces: Sequence[str | TraceFile] | None, settings: Settings,
         options: PlanOptions = DEFAULT_OPTIONS, cores: int = 1, clock: Callable[[], float] = time.time) -> Plan:
    """The plan of `job`: a plan given is the plan; a manifest is planned from `traces`, or with
    `traces=None` from the trace store's earlier traces of the shot (`flow.planning.plan_manifest`)."""
    if job.plan is not None:
        return job.plan
    assert job.manifest is not None
    return plan_manifest(job.manifest, traces, settings, options, clock, cores)


def plan_job(source: str | os.PathLike[str], traces: Sequence[str], settings: Settings,
             options: PlanOptions = DEFAULT_OPTIONS, cores: int = 1,
             parameters: Mapping[str, str] | None = None) -> Plan:
    """`prewarm plan SOURCE` as a call: the job in `source` planned from `traces`, or without
    any from the trace store."""
    return plan(load(source, settings, parameters), traces or None, settings, options, cores)


# reading


def _open(path: Path, follow_links: bool) -> IO[bytes]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        why = "a symlink: not followed" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise ManifestError(str(path), f"cannot read: {why}") from exc
    fh = os.fdopen(fd, "rb")
    if not statmod.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise ManifestError(str(path), "not a regular file: not read")
    return fh


def _decoded(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise ManifestError(where, f"not UTF-8 text (byte {exc.start})") from exc


def _plan_of_text(text: str, where: str) -> Plan:
    import io

    return load_plan(io.BytesIO(text.encode()), where)


def load_plan(fh: IO[bytes], where: str) -> Plan:
    """A plan from a binary stream: its ranges go straight into the plan's columnar table
    (ijson's C parser), so a million-range plan never exists as a million Python dicts."""
    import ijson

    try:
        return Plan.from_events(ijson.parse(fh, use_float=True), where=where)
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PlanFileError(where, f"not valid JSON: {first[:120]}") from exc  # yajl goes on to quote the text
    except StopIteration as exc:
        raise PlanFileError(where, "not valid JSON: ends early") from exc
