"""Recreate a sample job's input tree: sparse files of the real sizes, and real files where known.

The real assets are not shipped (only their sizes, in `sizes.json`); a sparse file
of the right size is all the byte model (which stats) and the warmer (which reads
bytes, any bytes) need. Structure readers need real files: `build_shot` also makes
the textures a shot's `textures.json` describes and copies a shot's `tree/`.
"""

from __future__ import annotations

import json
import os
import shutil
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


def build_shot(shot_dir: Path, root: Path, real: bool = True, studio_prefix: str = "/studio/proj") -> str:
    """A shot folder's input tree under `root`: sparse files of `sizes.json`, then real files over
    them where the folder has them: `tree/` (paths relative to the studio prefix, copied) and, with
    `real`, the textures `textures.json` describes (openimageio). Returns what was made, for a log."""
    sizes = build_tree(shot_dir / "sizes.json", root, studio_prefix)
    made = [f"{len(sizes)} sparse files"]
    spec = shot_dir / "textures.json"
    if real and spec.exists():
        from prewarm.testkit.textures import build_textures

        built = build_textures(spec, root, studio_prefix)
        wrong = sorted(p for p, n in built.items() if sizes.get(p) != n)
        if wrong:
            raise InputError(str(spec), f"{len(wrong)} rebuilt files differ from sizes.json, e.g. {wrong[0]}")
        made.append(f"{len(built)} real textures")
    tree = shot_dir / "tree"
    if tree.is_dir():
        copied = 0
        for src in sorted(p for p in tree.rglob("*") if p.is_file()):
            dst = root / src.relative_to(tree)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied += 1
        made.append(f"{copied} real files from tree/")
    return ", ".join(made)
