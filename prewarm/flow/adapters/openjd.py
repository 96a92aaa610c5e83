"""OpenJD / AWS Deadline Cloud job bundles (and the client's submission hook payloads) to manifests.

A bundle is a folder with `template.yaml|json`, optional `asset_references.yaml|json`
and `parameter_values.yaml|json`, as the Deadline Cloud submitters and
`deadline bundle submit` write them. What the frames read:
- `assetReferences.inputs.filenames` and `.directories` (what job attachments upload);
- template `PATH` parameters with `dataFlow: IN` or `INOUT` (`objectType: DIRECTORY`
  becomes a folder input), with the values given (`-p Name=Value`, a parameter values
  file, the hook's payload), else the bundle's, else the template's defaults. A relative
  path is resolved against the bundle folder, as Deadline does; a bundle's own file that
  lies outside the site's roots (its scripts) travels with the job, not through the
  gateway: it is left out, with a note.
The frames are the values of the step's `Frame` task parameter (any INT or CHUNK[INT]
task parameter whose name contains "frame"), after `{{Param.X}}` substitution, over
every step; a chunked step gives every frame of its chunks, fixed or adaptive. A job
with no such parameter (a script, an After Effects render in one task) is planned as
one task, frame 1, with a note.

The template is decoded and the job instantiated by `openjd-model`, the reference
implementation, with every extension it supports (`TASK_CHUNKING`, `EXPR`,
`FEATURE_BUNDLE_1`, ...), so a bundle the farm would refuse is refused here with its
reason. Parameter values whose names have a prefix (`deadline:priority`) are for the
farm, not the template; `deadline:priority` becomes the manifest's priority, and
`prewarm:show`, `prewarm:shot`, `prewarm:gateway`, `prewarm:max_bytes`, `prewarm:start`
fill the manifest's keys of those names.

A Deadline Cloud submission hook's payload (`hook_to_manifest`) names the job
(`jobName`), its chosen `parameters` and its `assetReferences` with flat keys
(`inputFilenames`, `inputDirectories`, `outputDirectories`, `referencedPaths`); every
input it names is an input of the job, and the job is named `jobName`, not the template.

A bundle folder is read through a `Guard` (`prewarm.site.guard`): the site's, for a
folder named by its studio path (the service's `bundle_path`), else one rooted at the
folder itself. A bundle file that is a link out of its folder (to `/etc/shadow`), a
FIFO or a device is refused by name, never read.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat as statmod
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from prewarm.errors import ManifestError
from prewarm.flow.adapters import NO_CONTEXT, Context, build_manifest, check_path
from prewarm.plan.framespec import MAX_FRAMES, parse_frames
from prewarm.plan.manifest import Manifest, safe_load
from prewarm.plan.pathmap import is_windows
from prewarm.site.fs import reason
from prewarm.site.guard import Guard, inside

__all__ = ["BUNDLE_FILES", "bundle_json_to_manifest", "bundle_to_manifest", "hook_to_manifest",
           "parameter_values"]

BUNDLE_FILES = ("template", "asset_references", "parameter_values")
"""Stems of a bundle's files; each may be `.yaml`, `.yml` or `.json`."""

BUNDLE_EXTS = (".yaml", ".yml", ".json")

PREWARM_KEYS = {"prewarm:show": "show", "prewarm:shot": "shot", "prewarm:gateway": "gateway",
                "prewarm:max_bytes": "max_bytes", "prewarm:start": "start"}

MAX_VALUE_CHARS = 32 << 10
"""A parameter value longer than this is not a job's value: refused before openjd-model sees it."""

NO_FOLDER = Path("/.prewarm-bundle-folder-not-given")
"""Where relative paths of a bundle posted without its folder resolve: recognised and left out."""

ONE_TASK = 1
"""The frame number a job without a Frame task parameter is planned under: it runs as tasks of no frame."""

HOOK_REFS = {"inputFilenames": False, "inputDirectories": True, "referencedPaths": False}
"""The hook payload's flat asset references that frames read (`outputDirectories` they write); True: folders."""


def bundle_to_manifest(bundle_dir: str | Path, where: str, guard: Guard | None = None,
                       context: Context = NO_CONTEXT, notes: list[str] | None = None) -> Manifest:
    """The manifest of the job bundle in folder `bundle_dir`; errors name the bundle's file.

    With `guard`, `bundle_dir` is a studio path read through it; without, a folder of
    this machine, read through a guard rooted at the folder (its studio path, for
    relative paths, is the one the site's path map gives its local path).
    """
    docs, folder, studio = _read_folder(bundle_dir, where, guard, context)
    if "template" not in docs:
        raise ManifestError(where, "not a job bundle: no template.yaml or template.json")
    return _to_manifest(docs, where, Path(folder), studio, context, notes)


def hook_to_manifest(payload: Mapping[str, Any], where: str, files: Mapping[str, Any] | None = None,
                     guard: Guard | None = None, context: Context = NO_CONTEXT,
                     notes: list[str] | None = None) -> Manifest:
    """The manifest of a Deadline Cloud submission hook's payload: the template from `files`
    (the bundle's files as the hook read them) or else from the folder `jobBundleDir`; the
    parameters and asset references from the payload (what the submitter finally chose)."""
    if not isinstance(payload, Mapping):
        raise ManifestError(where, "expected the hook's JSON object (jobName, parameters, assetReferences, ...)")
    name = payload.get("jobName")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 512):
        raise ManifestError(where, "jobName: expected the job's name (a non-empty string)")
    given = dict(context.parameters)
    given.update(_pairs(payload.get("parameters"), f"{where}: parameters"))
    context = replace(context, parameters=given)
    refs = _hook_refs(payload, where, context)
    if files is not None:
        docs = _docs_of_object(files, where, context.max_bytes)
        folder, studio = NO_FOLDER, None
    else:
        bundle_dir = payload.get("jobBundleDir")
        if not isinstance(bundle_dir, str) or not bundle_dir:
            raise ManifestError(where, "jobBundleDir: the hook payload names no bundle folder")
        read, local, studio = _read_folder(bundle_dir, f"{where}: jobBundleDir", guard, context)
        docs, folder = read, Path(local)
    docs.pop("asset_references", None)   # the payload's references are the submission's final ones
    if "template" not in docs:
        raise ManifestError(where, "no template.yaml or template.json in the job bundle")
    return _to_manifest(docs, where, folder, studio, context, notes, extra_inputs=refs, name=name)


def bundle_json_to_manifest(obj: Mapping[str, Any], where: str, context: Context = NO_CONTEXT,
                            notes: list[str] | None = None) -> Manifest:
    """A bundle posted as one JSON object: `{"template": {...}, "asset_references": {...},
    "parameter_values": {...}}`, keys also as file names (`"template.yaml"`), each value the
    file's content as an object or as its YAML/JSON text. Relative paths have no bundle
    folder to resolve against: left out, with a note."""
    docs = _docs_of_object(obj, where, context.max_bytes)
    if "template" not in docs:
        raise ManifestError(where, "template: missing")
    return _to_manifest(docs, where, NO_FOLDER, None, context, notes)


def parameter_values(doc: Any, where: str) -> dict[str, str]:
    """A parameter values file (`parameterValues: [{name, value}]`, as `deadline bundle submit
    --parameter-values` reads it) as `{name: value}`."""
    items = doc.get("parameterValues") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ManifestError(where, "expected parameterValues: a list of {name, value}")
    return _pairs(items, where)


def _read_folder(bundle_dir: str | Path, where: str, guard: Guard | None,
                 context: Context) -> tuple[dict[str, tuple[Any, str]], str, str | None]:
    """The bundle's files, the folder they were read from, and its studio path (None: not a studio path)."""
    if guard is None:
        guard = Guard.local(str(bundle_dir))
        folder = guard.roots[0]
        studio: str | None = context.path_map.to_studio(folder)
    else:
        folder = str(bundle_dir).rstrip("/") or "/"
        studio = folder
    try:
        if not statmod.S_ISDIR(guard.stat(folder).st_mode):
            raise ManifestError(where, "not a job bundle folder")
        names = set(guard.listdir(folder))
    except OSError as exc:
        raise ManifestError(where, f"not a job bundle folder: {reason(exc)}") from exc
    docs: dict[str, tuple[Any, str]] = {}
    for stem in BUNDLE_FILES:
        found = [f"{stem}{ext}" for ext in BUNDLE_EXTS if f"{stem}{ext}" in names]
        if len(found) > 1:
            raise ManifestError(f"{where}/{found[1]}", f"the bundle also has {found[0]}: keep one")
        if found:
            name = f"{where}/{found[0]}"
            docs[stem] = (_load(guard, f"{folder}/{found[0]}", name, context.max_bytes), name)
    return docs, folder, studio


def _docs_of_object(obj: Mapping[str, Any], where: str, limit: int) -> dict[str, tuple[Any, str]]:
    if not isinstance(obj, Mapping):
        raise ManifestError(where, "expected an object with template, asset_references, parameter_values")
    docs: dict[str, tuple[Any, str]] = {}
    for key in sorted(obj, key=str):
        stem = str(key)[:64]
        for ext in BUNDLE_EXTS:
            stem = stem.removesuffix(ext)
        if stem not in BUNDLE_FILES:
            raise ManifestError(where, f"{stem}: unknown key (known: {', '.join(BUNDLE_FILES)})")
        if stem in docs:
            raise ManifestError(where, f"{key}: the bundle also has {docs[stem][1].rsplit(': ', 1)[-1]}: keep one")
        value = obj[key]
        if isinstance(value, str):
            if len(value) > limit:
                raise ManifestError(f"{where}: {stem}", f"larger than {limit:,} bytes (the site's max_request_bytes): "
                                                        "not a bundle file")
            value = _parse_text(value, f"{where}: {key}")
        docs[stem] = (value, f"{where}: {key}")
    return docs


def _load(guard: Guard, path: str, name: str, limit: int) -> Any:
    try:
        fd, _ = guard.open(path)
    except OSError as exc:
        raise ManifestError(name, f"cannot read: {reason(exc)}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not statmod.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ManifestError(name, "not a file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(name, f"larger than {limit:,} bytes (the site's max_request_bytes): not a job bundle file")
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


def _supported_extensions() -> list[str]:
    """Every extension the installed openjd-model implements: a bundle may use any of them."""
    from openjd.model.v2023_09 import ExtensionName

    return [e.value for e in ExtensionName]


def _decode(template: Any, t_where: str) -> Any:
    from openjd.model import DecodeValidationError, decode_job_template

    if not isinstance(template, dict):
        raise ManifestError(t_where, "expected a job template (a mapping with specificationVersion)")
    try:
        return decode_job_template(template=template, supported_extensions=_supported_extensions())
    except (DecodeValidationError, ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(t_where, f"not a valid OpenJD job template: {_one_line(exc)}") from exc


def _to_manifest(docs: dict[str, tuple[Any, str]], where: str, root: Path, studio: str | None,
                 context: Context, notes: list[str] | None, extra_inputs: list[str] | None = None,
                 name: str | None = None) -> Manifest:
    from openjd.model import DecodeValidationError, create_job, preprocess_job_parameters

    template, t_where = docs["template"]
    job_template = _decode(template, t_where)
    pv_where = docs["parameter_values"][1] if "parameter_values" in docs else t_where
    values, farm = _split(_given(docs.get("parameter_values"), context), pv_where)
    defs = {d["name"]: d for d in template.get("parameterDefinitions") or [] if isinstance(d, dict) and "name" in d}
    _windows_values(defs, values, context, pv_where, t_where)
    try:
        params = preprocess_job_parameters(job_template=job_template, job_parameter_values=values,
                                           job_template_dir=root, current_working_dir=root)
        job = create_job(job_template=job_template, job_parameter_values=params)
    except (DecodeValidationError, ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(pv_where, f"parameter values: {_one_line(exc)}") from exc

    paths = _PathInputs(str(root), studio, context, notes if notes is not None else [])
    inputs = paths.of_parameters(defs, params, pv_where) + _asset_inputs(docs.get("asset_references"), context)
    frames = _job_frames(job, t_where)
    if not frames:   # a job of single tasks (a script, a whole-sequence render): its inputs are still read
        frames = [ONE_TASK]
        paths.notes.append(f"no step has a Frame task parameter: planned as one task (frame {ONE_TASK})")
    extra: dict[str, object] = {key: farm[k] for k, key in PREWARM_KEYS.items() if k in farm}
    if "deadline:priority" in farm:
        try:
            extra["priority"] = int(str(farm["deadline:priority"]))
        except ValueError as exc:
            raise ManifestError(pv_where, f"deadline:priority: expected an integer, "
                                          f"got {str(farm['deadline:priority'])[:40]!r}") from exc
    inputs += extra_inputs or []
    if not inputs and paths.left_out:
        raise ManifestError(where, f"inputs: the job reads only the bundle's own files ({', '.join(paths.left_out)}), "
                                   "which job attachments ship with it: nothing on the studio filer to warm")
    return build_manifest(where, name or job.name, frames, inputs, extra)


def _given(doc: tuple[Any, str] | None, context: Context) -> dict[str, Any]:
    """The bundle's parameter values, then the ones given on top (`-p`, a values file, the hook's)."""
    values: dict[str, Any] = {}
    if doc is not None and doc[0] is not None:
        values.update(parameter_values(doc[0], doc[1]))
    values.update(context.parameters)
    return values


def _pairs(items: Any, where: str) -> dict[str, str]:
    """`[{name, value}, ...]` (or `{name: value}`) as names to values, each given once."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        items = [{"name": k, "value": v} for k, v in items.items()]
    if not isinstance(items, list):
        raise ManifestError(where, "expected a list of {name, value}")
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise ManifestError(where, f"[{i}]: expected {{name, value}}")
        name, value = item["name"][:256], item["value"]
        if name in out:
            raise ManifestError(where, f"[{i}]: {name!r} is given twice")
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > MAX_VALUE_CHARS:
            raise ManifestError(where, f"[{i}] {name}: {len(text):,} characters, more than a parameter "
                                       f"value may have ({MAX_VALUE_CHARS:,})")
        out[name] = text
    return out


def _split(values: dict[str, Any], where: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Template parameters (as the strings openjd-model wants) apart from the farm's prefixed ones."""
    template: dict[str, str] = {}
    farm: dict[str, Any] = {}
    for name, value in values.items():
        if ":" in name:
            farm[name] = value
        else:
            template[name] = value if isinstance(value, str) else json.dumps(value)
    return template, farm


def _windows_values(defs: dict[str, Any], values: dict[str, str], context: Context, pv_where: str,
                    t_where: str) -> None:
    """PATH values and defaults written on Windows, as studio paths, before openjd-model would
    take `W:/proj/...` for a path relative to the bundle folder."""
    for name, d in defs.items():
        if d.get("type") != "PATH":
            continue
        if name in values:
            if is_windows(values[name]):
                values[name] = check_path(values[name], pv_where, f"parameter {name}", context.path_map)
        elif isinstance(d.get("default"), str) and is_windows(d["default"]):
            values[name] = check_path(d["default"], t_where, f"parameterDefinitions {name}.default",
                                      context.path_map)


class _PathInputs:
    """PATH parameters read by the job (dataFlow IN or INOUT) as studio inputs; folders keep a trailing `/`."""

    def __init__(self, root: str, studio: str | None, context: Context, notes: list[str]) -> None:
        self.root = root
        self.studio = studio
        self.context = context
        self.notes = notes
        self.left_out: list[str] = []

    def of_parameters(self, defs: dict[str, Any], params: dict[str, Any], where: str) -> list[str]:
        inputs: list[str] = []
        for name, d in defs.items():
            if d.get("type") != "PATH" or d.get("dataFlow") not in ("IN", "INOUT") or name not in params:
                continue
            path = self.studio_path(str(params[name].value or ""), name)
            if path:
                path = check_path(path, where, f"parameter {name}", self.context.path_map)
                inputs.append(path.rstrip("/") + "/" if d.get("objectType") == "DIRECTORY" else path)
        return inputs

    def studio_path(self, path: str, name: str) -> str | None:
        """A path inside the bundle folder by the folder's studio path; None (with a note) for the
        bundle's own files that no studio root holds: job attachments ship those with the job."""
        if not path:
            return None
        if not inside(path, (self.root,)):
            return path
        rel = posixpath.relpath(path, self.root)
        if self.studio is not None:
            studio = self.studio if rel == "." else posixpath.join(self.studio, rel)
            if not self.context.roots or inside(studio, self.context.roots):
                return studio
        self.notes.append(f"parameter {name}: {rel!r} is the bundle's own file, outside the studio roots: "
                          "job attachments ship it with the job; not warmed")
        self.left_out.append(rel)
        return None


def _job_frames(job: Any, where: str) -> list[int]:
    """The frames of every step with a frame task parameter, in task order, each once.

    Chunked steps (CHUNK[INT], fixed or adaptive) are iterated one frame per chunk: which
    chunks the farm forms changes when a frame runs, not which frames run."""
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
        chunked = any(p.type.value == "CHUNK[INT]" for p in space.taskParameterDefinitions.values())
        for name, p in space.taskParameterDefinitions.items():   # openjd-model lists a chunked range whole
            if len(p.range) > MAX_FRAMES:
                raise ManifestError(where, f"step {step.name!r}: task parameter {name} has {len(p.range):,} values, "
                                           f"more than {MAX_FRAMES:,}")
        try:
            iterator = StepParameterSpaceIterator(space=space, chunks_task_count_override=1 if chunked else None)
            count = len(iterator)
        except (ValueError, RuntimeError) as exc:
            raise ManifestError(where, f"step {step.name!r}: its tasks cannot be listed: {_one_line(exc)}") from exc
        if count > MAX_FRAMES:
            raise ManifestError(where, f"step {step.name!r}: more than {MAX_FRAMES:,} tasks")
        for task in iterator:
            task_value = task[names[0]]
            if task_value.type is ParameterValueType.INT:
                frames[int(task_value.value)] = None
            else:
                frames.update(dict.fromkeys(parse_frames(task_value.value, where, f"step {step.name} {names[0]}")))
    return list(frames)


def _asset_inputs(doc: tuple[Any, str] | None, context: Context) -> list[str]:
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
        out += _paths(inputs.get(key), is_dir, where, f"assetReferences.inputs.{key}", context)
    return out


def _hook_refs(payload: Mapping[str, Any], where: str, context: Context) -> list[str]:
    """The payload's asset references: flat keys (`inputFilenames`, ...) at `assetReferences`,
    also under `attachments`; the bundle file's nested form (`inputs.filenames`) is taken too."""
    refs = payload.get("assetReferences")
    if refs is None and isinstance(payload.get("attachments"), Mapping):
        refs = payload["attachments"].get("assetReferences")
    if refs is None:
        return []
    if not isinstance(refs, Mapping):
        raise ManifestError(where, "assetReferences: expected {inputFilenames, inputDirectories, ...}")
    if "inputs" in refs:
        return _asset_inputs(({"assetReferences": dict(refs)}, f"{where}: assetReferences"), context)
    out: list[str] = []
    for key, is_dir in HOOK_REFS.items():
        out += _paths(refs.get(key), is_dir, where, f"assetReferences.{key}", context)
    return out


def _paths(items: Any, is_dir: bool, where: str, field: str, context: Context) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ManifestError(where, f"{field}: expected a list of paths")
    out: list[str] = []
    for i, p in enumerate(items):
        path = check_path(p, where, f"{field}[{i}]", context.path_map)
        out.append(path.rstrip("/") + "/" if is_dir else path)
    return out
