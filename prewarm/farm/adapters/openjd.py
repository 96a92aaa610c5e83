"""OpenJD / AWS Deadline Cloud job bundles to manifests.

A bundle is a folder with `template.yaml|json`, optional `asset_references.yaml|json`
and `parameter_values.yaml|json`, as the Deadline Cloud submitters and
`deadline bundle submit` write them. What the frames read:
- `assetReferences.inputs.filenames` and `.directories` (what job attachments upload);
- template `PATH` parameters with `dataFlow: IN` or `INOUT` (`objectType: DIRECTORY`
  becomes a folder input), with the bundle's values, else the template's defaults.
The frames are the values of the step's `Frame` task parameter (any INT task parameter
whose name contains "frame"), after `{{Param.X}}` substitution, over every step.

The template is decoded and the job instantiated by `openjd-model`, the reference
implementation, so a bundle the farm would refuse is refused here with its reason.
Parameter values whose names have a prefix (`deadline:priority`) are for the farm, not
the template; `deadline:priority` becomes the manifest's priority, and `prewarm:show`,
`prewarm:shot`, `prewarm:gateway`, `prewarm:max_bytes`, `prewarm:start` fill the
manifest's keys of those names.

A bundle folder is read through a `Guard` (`prewarm.site.guard`): the site's, for a
folder named by its studio path (the service's `bundle_path`), else one rooted at the
folder itself. A bundle file that is a link out of its folder (to `/etc/shadow`), a
FIFO or a device is refused by name, never read.
"""

from __future__ import annotations

import json
import os
import stat as statmod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prewarm.errors import ManifestError
from prewarm.farm.adapters import build_manifest, check_path
from prewarm.plan.framespec import MAX_FRAMES, parse_frames
from prewarm.plan.manifest import Manifest, safe_load
from prewarm.site.fs import reason
from prewarm.site.guard import Guard

__all__ = ["BUNDLE_FILES", "bundle_json_to_manifest", "bundle_to_manifest"]

BUNDLE_FILES = ("template", "asset_references", "parameter_values")
"""Stems of a bundle's files; each may be `.yaml`, `.yml` or `.json`."""

PREWARM_KEYS = {"prewarm:show": "show", "prewarm:shot": "shot", "prewarm:gateway": "gateway",
                "prewarm:max_bytes": "max_bytes", "prewarm:start": "start"}

MAX_FILE_BYTES = 8 << 20
"""Templates are a few KB; a bigger file is a mistake (or an attack), not a job."""


def bundle_to_manifest(bundle_dir: str | Path, where: str, guard: Guard | None = None) -> Manifest:
    """The manifest of the job bundle in folder `bundle_dir`; errors name the bundle's file.

    With `guard`, `bundle_dir` is a studio path read through it; without, a folder of
    this machine, read through a guard rooted at the folder.
    """
    if guard is None:
        guard = Guard.local(str(bundle_dir))
        folder = guard.roots[0]
    else:
        folder = str(bundle_dir).rstrip("/") or "/"
    try:
        if not statmod.S_ISDIR(guard.stat(folder).st_mode):
            raise ManifestError(where, "not a job bundle folder")
        names = set(guard.listdir(folder))
    except OSError as exc:
        raise ManifestError(where, f"not a job bundle folder: {reason(exc)}") from exc
    docs: dict[str, tuple[Any, str]] = {}
    for stem in BUNDLE_FILES:
        found = [f"{stem}{ext}" for ext in (".yaml", ".yml", ".json") if f"{stem}{ext}" in names]
        if len(found) > 1:
            raise ManifestError(f"{where}/{found[1]}", f"the bundle also has {found[0]}: keep one")
        if found:
            name = f"{where}/{found[0]}"
            docs[stem] = (_load(guard, f"{folder}/{found[0]}", name), name)
    if "template" not in docs:
        raise ManifestError(where, "not a job bundle: no template.yaml or template.json")
    return _to_manifest(docs, where, Path(folder))


def bundle_json_to_manifest(obj: Mapping[str, Any], where: str) -> Manifest:
    """A bundle posted as one JSON object: `{"template": {...}, "asset_references": {...},
    "parameter_values": {...}}`, keys also as file names (`"template.yaml"`), each value the
    file's content as an object or as its YAML/JSON text. Relative paths have no bundle
    folder to resolve against: refused."""
    if not isinstance(obj, Mapping):
        raise ManifestError(where, "expected an object with template, asset_references, parameter_values")
    docs: dict[str, tuple[Any, str]] = {}
    for key in sorted(obj):
        stem = str(key)
        for ext in (".yaml", ".yml", ".json"):
            stem = stem.removesuffix(ext)
        if stem not in BUNDLE_FILES:
            raise ManifestError(where, f"{key}: unknown key (known: {', '.join(BUNDLE_FILES)})")
        if stem in docs:
            raise ManifestError(where, f"{key}: the bundle also has {docs[stem][1].rsplit(': ', 1)[-1]}: keep one")
        value = obj[key]
        if isinstance(value, str):
            value = _parse_text(value, f"{where}: {key}")
        docs[stem] = (value, f"{where}: {key}")
    if "template" not in docs:
        raise ManifestError(where, "template: missing")
    return _to_manifest(docs, where, None)


def _load(guard: Guard, path: str, name: str) -> Any:
    try:
        fd, _ = guard.open(path)
    except OSError as exc:
        raise ManifestError(name, f"cannot read: {reason(exc)}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not statmod.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ManifestError(name, "not a file")
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ManifestError(name, f"larger than {MAX_FILE_BYTES >> 20} MiB: not a job bundle file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, f"not UTF-8 text (byte {exc.start})") from exc
    return _parse_text(text, name)


def _parse_text(text: str, name: str) -> Any:
    return safe_load(text, name, "not valid YAML or JSON")


def _one_line(exc: Exception) -> str:
    """openjd-model's multi-line pydantic reports, folded into one line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if lines and "validation error" in lines[0]:
        lines = lines[1:]
    out = ""
    for ln in lines:
        out += ln if not out else (" " if out.endswith(":") else "; ") + ln
    return out[:500] or type(exc).__name__


def _to_manifest(docs: dict[str, tuple[Any, str]], where: str, root: Path | None) -> Manifest:
    from openjd.model import (
        DecodeValidationError,
        create_job,
        decode_job_template,
        preprocess_job_parameters,
    )

    template, t_where = docs["template"]
    if not isinstance(template, dict):
        raise ManifestError(t_where, "expected a job template (a mapping with specificationVersion)")
    try:
        job_template = decode_job_template(template=template)
    except (DecodeValidationError, ValueError) as exc:
        raise ManifestError(t_where, f"not a valid OpenJD job template: {_one_line(exc)}") from exc

    values, farm = _parameter_values(docs.get("parameter_values"))
    defs = {d["name"]: d for d in template.get("parameterDefinitions") or [] if isinstance(d, dict) and "name" in d}
    pv_where = docs["parameter_values"][1] if "parameter_values" in docs else t_where
    if root is None:
        _check_given_paths(defs, values, pv_where, t_where)
    try:
        params = preprocess_job_parameters(job_template=job_template, job_parameter_values=values,
                                           job_template_dir=root or Path("/"), current_working_dir=root or Path("/"))
        job = create_job(job_template=job_template, job_parameter_values=params)
    except (DecodeValidationError, ValueError) as exc:
        raise ManifestError(pv_where, f"parameter values: {_one_line(exc)}") from exc

    inputs = _path_inputs(defs, params, pv_where) + _asset_inputs(docs.get("asset_references"))
    frames = _job_frames(job, t_where)
    extra: dict[str, object] = {key: farm[k] for k, key in PREWARM_KEYS.items() if k in farm}
    if "deadline:priority" in farm:
        try:
            extra["priority"] = int(str(farm["deadline:priority"]))
        except ValueError as exc:
            raise ManifestError(pv_where, f"deadline:priority: expected an integer, "
                                          f"got {farm['deadline:priority']!r}") from exc
    return build_manifest(where, job.name, frames, inputs, extra)


def _check_given_paths(defs: dict[str, Any], values: dict[str, Any], pv_where: str, t_where: str) -> None:
    """A bundle posted without its folder: its PATH values must already be absolute studio paths."""
    for name, value in values.items():
        if defs.get(name, {}).get("type") == "PATH":
            check_path(value, pv_where, f"parameterValues {name}")
    for name, d in defs.items():
        if d.get("type") == "PATH" and d.get("dataFlow") in ("IN", "INOUT") and name not in values and "default" in d:
            check_path(d["default"], t_where, f"parameterDefinitions {name}.default")


def _path_inputs(defs: dict[str, Any], params: dict[str, Any], where: str) -> list[str]:
    """PATH parameters read by the job (dataFlow IN or INOUT); folders keep a trailing `/`."""
    inputs: list[str] = []
    for name, d in defs.items():
        if d.get("type") != "PATH" or d.get("dataFlow") not in ("IN", "INOUT") or name not in params:
            continue
        path = params[name].value
        if not path:
            continue
        check_path(path, where, f"parameter {name}")
        inputs.append(path.rstrip("/") + "/" if d.get("objectType") == "DIRECTORY" else path)
    return inputs


def _job_frames(job: Any, where: str) -> list[int]:
    """The frames of every step with a frame task parameter, in task order, each once."""
    from openjd.model import ParameterValueType, StepParameterSpaceIterator

    frames: dict[int, None] = {}
    for step in job.steps:
        space = step.parameterSpace
        if space is None:
            continue
        names = [n for n, p in space.taskParameterDefinitions.items()
                 if "frame" in n.lower() and p.type.value in ("INT", "CHUNK[INT]")]
        if not names:
            continue
        iterator = StepParameterSpaceIterator(space=space)
        if len(iterator) > MAX_FRAMES:
            raise ManifestError(where, f"step {step.name!r}: more than {MAX_FRAMES:,} tasks")
        for task in iterator:
            task_value = task[names[0]]
            if task_value.type is ParameterValueType.INT:
                frames[int(task_value.value)] = None
            else:
                frames.update(dict.fromkeys(parse_frames(task_value.value, where, f"step {step.name} {names[0]}")))
    if not frames:
        raise ManifestError(where, "no step has a Frame task parameter (an INT range): which frames render?")
    return list(frames)


def _parameter_values(doc: tuple[Any, str] | None) -> tuple[dict[str, str], dict[str, Any]]:
    """Template parameters (as the strings openjd-model wants) apart from the farm's prefixed ones."""
    if doc is None or doc[0] is None:
        return {}, {}
    data, where = doc
    items = data.get("parameterValues") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ManifestError(where, "expected parameterValues: a list of {name, value}")
    values: dict[str, str] = {}
    farm: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise ManifestError(where, f"parameterValues[{i}]: expected {{name, value}}, got {item!r}"[:300])
        name, value = item["name"], item["value"]
        if name in values or name in farm:
            raise ManifestError(where, f"parameterValues[{i}]: {name!r} is given twice")
        if ":" in name:
            farm[name] = value
        else:
            values[name] = value if isinstance(value, str) else json.dumps(value)
    return values, farm


def _asset_inputs(doc: tuple[Any, str] | None) -> list[str]:
    if doc is None or doc[0] is None:
        return []
    data, where = doc
    refs = data.get("assetReferences") if isinstance(data, dict) else None
    if not isinstance(refs, dict):
        raise ManifestError(where, "expected assetReferences: {inputs: {filenames, directories}, ...}")
    inputs = refs.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise ManifestError(where, "assetReferences.inputs: expected {filenames: [...], directories: [...]}")
    out: list[str] = []
    for key, is_dir in (("filenames", False), ("directories", True)):
        items = inputs.get(key) or []
        if not isinstance(items, list):
            raise ManifestError(where, f"assetReferences.inputs.{key}: expected a list of paths")
        for i, p in enumerate(items):
            path = check_path(p, where, f"assetReferences.inputs.{key}[{i}]")
            out.append(path.rstrip("/") + "/" if is_dir else path)
    return out
