"""Job descriptions of render farms turned into prewarm manifests.

Each adapter reads one farm's submission (an OpenJD / Deadline Cloud job bundle, a
Deadline 10 job info + plugin info pair) and builds a `Manifest` through
`prewarm.plan.manifest.parse_manifest`, so every rule of the manifest applies to adapted
jobs too (absolute paths, frame limits, names as written). Adapters check the farm's
own fields first, so that an error names the farm's file and key, not the generated text.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence

from prewarm.errors import ManifestError
from prewarm.plan.framespec import format_frames
from prewarm.plan.manifest import Manifest, parse_manifest

__all__ = ["build_manifest", "check_path"]


def check_path(path: object, where: str, field: str) -> str:
    """A farm's path as a manifest input: absolute POSIX, no `.`/`..`; a clear error otherwise.

    Windows paths (`Z:\\proj\\...`) are refused rather than guessed: map them on the farm
    side, or with a path map whose studio prefix is POSIX.
    """
    if not isinstance(path, str) or not path.strip():
        raise ManifestError(where, f"{field}: expected a path, got {path!r}")
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
