"""Thinkbox Deadline 10 submissions (job info + plugin info, `Key=Value` lines) to manifests.

What is used from the job info: `Name` (else `BatchName`) is the job, `Frames` the
frames (`1-35`, `1-100x5`, `1,3,5`, ranges and lists mixed), `Priority`, and
`ExtraInfoKeyValueN=key=value` pairs whose keys are `show`, `shot`, `gateway`,
`max_bytes`, `start` (optionally prefixed `prewarm_`), plus `prewarm_inputs`: extra
input paths or patterns separated by `;`. From the plugin info: `SceneFile` and every
other key naming an input file (ending in `File`, `Filename`, `Scene` or `Path` of a
file, not an output), when its value is an absolute path. Auxiliary files the caller
passes as `extra_inputs`.

Keys are matched without regard to case, as Deadline does; a key given twice, a line
without `=`, a bad frame list or a relative path is an error naming the file and line.
A Windows path (`W:\\proj\\...`) becomes the studio path the site's path map gives it.

Both files are read in one pass, line by line: each key keeps its spelling and line
for messages, so nothing searches the whole text again per key (a 1 MiB plugin info
of 33,000 keys once cost minutes of CPU that way).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from prewarm.errors import ManifestError
from prewarm.flow.adapters import NO_CONTEXT, Context, build_manifest, check_path
from prewarm.plan.framespec import parse_frames
from prewarm.plan.manifest import Manifest
from prewarm.plan.pathmap import is_windows

__all__ = ["job_to_manifest", "parse_key_values"]

_EXTRA_KEY = re.compile(r"extrainfokeyvalue\d+")
_INPUT_KEY = re.compile(r".*(file|filename|scene|scenefile)$")
_NOT_INPUT = re.compile(r"output|render|log|temp|tmp|dir|folder|executable|exe$")
_EXTRA_FIELDS = ("show", "shot", "gateway", "max_bytes", "start")


class Entry(NamedTuple):
    """One `Key=Value` line: the value, its line number and the key as the file spells it."""

    value: str
    line: int
    key: str


def parse_key_values(text: str, where: str) -> dict[str, Entry]:
    """Lower-cased key -> its entry. Blank lines and `#`/`;` comments are skipped."""
    out: dict[str, Entry] = {}
    for n, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ManifestError(f"{where}:{n}", f"expected Key=Value, got {line[:80]!r}")
        low = key.lower()
        if low in out:
            raise ManifestError(f"{where}:{n}", f"{key}: given twice (first on line {out[low][1]})")
        out[low] = Entry(value.strip(), n, key)
    return out


def job_to_manifest(job_info_text: str, plugin_info_text: str, where: str,
                    extra_inputs: Sequence[str] = (), plugin_where: str | None = None,
                    context: Context = NO_CONTEXT) -> Manifest:
    """The manifest of a Deadline 10 job. `where` names the job info file in errors,
    `plugin_where` the plugin info file (default: `where` + ` (plugin info)`)."""
    p_where = plugin_where or f"{where} (plugin info)"
    job = parse_key_values(job_info_text, where)
    plugin = parse_key_values(plugin_info_text, p_where)

    name = job.get("name") or job.get("batchname")
    if name is None or not name[0]:
        raise ManifestError(where, "Name: missing (and no BatchName): the job needs a name")
    frames = _frames(job, where)
    extra, patterns = _extra_info(job, where, context)
    inputs = _plugin_inputs(plugin, p_where, context)
    for i, p in enumerate(extra_inputs):
        inputs.append(check_path(p, where, f"auxiliary file {i}", context.path_map))
    if not inputs and not patterns:
        raise ManifestError(p_where, "no SceneFile and no other input path: nothing to warm")
    return build_manifest(where, name[0], frames, inputs, extra, patterns)


def _frames(job: dict[str, Entry], where: str) -> tuple[int, ...]:
    if "frames" not in job or not job["frames"][0]:
        raise ManifestError(where, "Frames: missing: which frames does the job render?")
    spec, line, _ = job["frames"]
    # Deadline also separates items with spaces: "1-10 20-30"; "1 - 10" is one item.
    items = [i for i in re.split(r"[,\s]+", re.sub(r"\s*([-x:y])\s*", r"\1", spec)) if i]
    return parse_frames(",".join(items), f"{where}:{line}", "Frames")


def _extra_info(job: dict[str, Entry], where: str, context: Context) -> tuple[dict[str, object], list[str]]:
    """prewarm's own keys (`ExtraInfoKeyValueN=prewarm_shot=...`, `prewarm_inputs=a;b`) and the priority."""
    extra: dict[str, object] = {}
    patterns: list[str] = []
    for key, (value, n, _) in job.items():
        if not _EXTRA_KEY.fullmatch(key):
            continue
        k, sep, v = value.partition("=")
        k = k.strip().lower().removeprefix("prewarm_").removeprefix("prewarm.")
        if not sep:
            continue  # a plain note for the farm, not ours
        if k in _EXTRA_FIELDS:
            extra[k] = v.strip()
        elif k == "inputs":
            for i, p in enumerate(x.strip() for x in v.split(";") if x.strip()):
                patterns.append(check_path(p, f"{where}:{n}", f"prewarm_inputs[{i}]", context.path_map))
    if "priority" in job:
        value, n, _ = job["priority"]
        try:
            extra["priority"] = int(value)
        except ValueError as exc:
            raise ManifestError(f"{where}:{n}", f"Priority: expected an integer, got {value!r}") from exc
    return extra, patterns


def _plugin_inputs(plugin: dict[str, Entry], where: str, context: Context) -> list[str]:
    """The scene file and any other absolute path (POSIX or Windows) the plugin info names as an input."""
    inputs: list[str] = []
    for low, (value, n, key) in plugin.items():
        if not value or not _INPUT_KEY.fullmatch(low) or _NOT_INPUT.search(low):
            continue
        if low == "scenefile" or value.startswith("/") or is_windows(value):
            inputs.append(check_path(value, f"{where}:{n}", key, context.path_map))
    return inputs
