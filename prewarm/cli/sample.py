"""`prewarm sample build SHOT_DIR... --root DIR [--real]`: the sample jobs' input trees.

Sparse files of the real sizes by default (instant, all the byte model needs), and a
shot's `tree/` of real files copied over them; with `--real`, the textures a shot's
`textures.json` describes are made for real too (openimageio, extra `textures`), so
structure readers see real tile tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prewarm.testkit.samples import build_shot


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sample", help="recreate the sample jobs' input trees (sparse files of the real sizes)")
    sp = p.add_subparsers(dest="sample_command", required=True, metavar="ACTION")
    b = sp.add_parser("build", help="create the files of each shot's sizes.json under ROOT (standing for /studio/proj)")
    b.add_argument("shots", nargs="+", metavar="SHOT_DIR", help="a sample job folder holding sizes.json")
    b.add_argument("--root", required=True, help="folder standing for /studio/proj")
    b.add_argument("--real", action="store_true",
                   help="make the textures a shot's textures.json describes for real (needs the `textures` extra)")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    for shot in args.shots:
        print(f"{shot}: {build_shot(Path(shot), root, real=args.real)} under {root}")
    return 0
