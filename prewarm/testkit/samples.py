"""Recreate a sample job's input tree: sparse files of the real sizes.

The real assets are not shipped (only their sizes, in `sizes.json`); a sparse file
of the right size is all the planner (which stats) and the warmer (which reads
bytes, any bytes) need.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prewarm.errors import InputError


def build_tree(sizes_json: Path, root: Path, studio_prefix: str = "/studio/proj") -> dict[str, int]:
    """Create every file of `sizes_json` under `root` (standing for `studio_prefix`)."""
    try:
        sizes = json.loads(sizes_json.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(sizes_json), f"cannot read sizes: {exc}") from exc
    if not isinstance(sizes, dict):
        raise InputError(str(sizes_json), "expected an object of path: size")
    for studio_path, size in sizes.items():
        if not isinstance(size, int) or size < 0 or not studio_path.startswith(studio_prefix + "/"):
            raise InputError(str(sizes_json), f"bad entry {studio_path!r}: {size!r}")
        local = root / os.path.relpath(studio_path, studio_prefix)
        local.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "wb") as fh:
            fh.truncate(size)
    return sizes
