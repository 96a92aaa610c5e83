"""`prewarm sample build SHOT_DIR... --root DIR`: the sample jobs' input trees, as sparse files."""

from __future__ import annotations

import argparse
from pathlib import Path

from prewarm.testkit.samples import build_tree


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sample", help="recreate the sample jobs' input trees (sparse files of the real sizes)")
    sp = p.add_subparsers(dest="sample_command", required=True, metavar="ACTION")
    b = sp.add_parser("build", help="create the files of each shot's sizes.json under ROOT (standing for /studio/proj)")
    b.add_argument("shots", nargs="+", metavar="SHOT_DIR", help="a sample job folder holding sizes.json")
    b.add_argument("--root", required=True, help="folder standing for /studio/proj")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    for shot in args.shots:
        sizes = build_tree(Path(shot) / "sizes.json", root)
        print(f"{shot}: {len(sizes)} files, {sum(sizes.values()) / 2**20:.1f} MiB (sparse) under {root}")
    return 0
