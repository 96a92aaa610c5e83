"""Job descriptions of render farms turned into prewarm manifests.

Each adapter reads one farm's submission (an OpenJD / Deadline Cloud job bundle, a
Deadline 10 job info + plugin info pair) and builds a `Manifest` through
`prewarm.plan.manifest.parse_manifest`, so every rule of the manifest applies to adapted
jobs too (absolute paths, frame limits, names as written). Adapters check the farm's
own fields first, so that an error names the farm's file and key, not the generated text.

Farms' paths reach the manifest through `check_path`, the one place where a Windows
path (`W:\\proj\\...`, `\\\\filer01\\proj\\...`) becomes a studio path: by the site's path map
(`Context.path_map`, the aliases of its entries), never by guessing.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prewarm.errors import ManifestError
from prewarm.plan.framespec import format_frames
from prewarm.plan.manifest import Manifest, parse_manifest
from prewarm.plan.pathmap import PathMap, is_windows
from prewarm.site.settings import Settings

__all__ = ["Context", "build_manifest", "check_path"]

MAX_PATH = 4096
"""PATH_MAX: a longer farm path is not a path (a 1 MiB parameter is refused here, by length)."""


@dataclass(frozen=True)
class Context:
    """What the site and the user add to a farm's job description."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    """Parameter values given as `-p Name=Value` (or a parameter values file): over the bundle's own."""
    path_map: PathMap = field(default_factory=PathMap)
    """The site's path map: Windows prefixes (and the mount a bundle folder is read through) as studio paths."""
    roots: tuple[str, ...] = ()
    """The site's studio roots: a bundle's own files (its scripts, resolved against its folder) that lie
    outside them are shipped with the job by job attachments, not read from the filer: not warmed."""
    max_bytes: int = Settings.max_request_bytes
    """The largest bundle file (template, asset references, parameter values) read: the site's
    `max_request_bytes`, what the service accepts as a whole submission."""


NO_CONTEXT = Context()


def check_path(path: object, where: str, field: str, path_map: PathMap | None = None) -> str:
    """A farm's path as a manifest input: absolute POSIX, no `.`/`..`; a clear error otherwise.

    A Windows path becomes the studio path the site's `path_map` gives it (an entry whose
    aliases hold `W:/proj` or `\\\\filer01\\proj`); one no entry maps is refused by name.
    """
    if not isinstance(path, str) or not path.strip():
        raise ManifestError(where, f"{field}: expected a path, got {path!r}"[:300])
    if len(path) > MAX_PATH:
        raise ManifestError(where, f"{field}: {len(path):,} characters: longer than a path can be ({MAX_PATH})")
    if is_windows(path):
        mapped = (path_map or PathMap()).to_studio(path)
        if is_windows(mapped):
            raise ManifestError(where, f"{field}: {path!r} is a Windows path that no entry of the site's "
                                       "path_map maps: add its drive or UNC prefix to an entry's aliases")
        path = mapped
    if not path.startswith("/"):
        raise ManifestError(where, f"{field}: {path!r} is not an absolute POSIX path")
    if "\0" in path:
        raise ManifestError(where, f"{field}: {path!r} contains a NUL byte")
    if any(p in (".", "..") for p in path.split("/")):
        raise ManifestError(where, f"{field}: {path!r} has . or .. components")
    if posixpath.normpath(path) == "/":
        raise ManifestError(where, f"{field}: refusing to warm the whole file system ('/')")
    return path


def build_manifest(where: str, job: str, frames: Sequence[int], inputs: Sequence[str],
                   extra: dict[str, object] | None = None, patterns: Sequence[str] = ()) -> Manifest:
    """The manifest of an adapted job: `inputs` are literal (farms name files, not patterns:
    a `#` in a file name is a `#`), `patterns` are written by people (`####`, `<UDIM>`);
    repeats are dropped."""
    if not frames:
        raise ManifestError(where, "frames: the job renders no frames")
    if not inputs and not patterns:
        raise ManifestError(where, "inputs: the job names no input files or folders")
    seen: dict[str, bool] = {}
    for p in inputs:
        seen.setdefault(p, True)
    for p in patterns:
        seen.setdefault(p, False)
    doc: dict[str, object] = {
        "job": job,
        "frames": format_frames(frames),
        "inputs": [{"path": p, "literal": True} if literal else p for p, literal in seen.items()],
    }
    doc.update({k: v for k, v in (extra or {}).items() if v is not None})
    # JSON is YAML: one value per line, so a slip in the generated text still names a line.
    return parse_manifest(json.dumps(doc, indent=1), where)
