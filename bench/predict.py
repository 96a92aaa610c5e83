"""Prediction quality on the real traces: recall and over-fetch for several train/test splits.

For each shot and split, the planner is trained on some frames' traces and plans the
other frames; the plan is scored against what those frames really read, on 64 KiB
blocks: recall = needed blocks planned / needed blocks; over-fetch = planned blocks /
needed blocks. Next to it, the naive baselines: whole files of every input, and the
union of the training frames' reads. Run through the real planner (importer, input
resolution on a sparse copy of the input tree, prediction, ordering).

    python bench/predict.py [--json FILE] [--traces DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prewarm.flow.planning import PlanOptions, load_manifest, plan_resolved, site_fs
from prewarm.plan.aggregate import aggregate, restrict
from prewarm.plan.evaluate import BLOCK, blocks_of, needed_blocks, plan_blocks, score
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.manifest import Manifest
from prewarm.plan.pathmap import PathMap
from prewarm.plan.predict import PredictOptions
from prewarm.site.fs import SiteFS
from prewarm.site.settings import Settings
from prewarm.testkit.samples import build_tree
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_traces

ROOT = Path(__file__).resolve().parents[1]

KiB = 1024

SPLITS: dict[str, Callable[[list[int]], list[int]]] = {
    "first quarter": lambda fs: fs[: max(1, len(fs) // 4)],
    "every 4th": lambda fs: fs[::4],
    "no traces": lambda fs: [],
}
TARGETS = {  # (shot, split): (min recall, max over-fetch), from the issue
    ("shot100", "first quarter"): (0.99, 1.1),
    ("shot200", "every 4th"): (0.85, 4.0),
}


def run_shot(shot_dir: Path, shot: str, tree: Path, granules: list[int], spreads: list[int]) -> list[dict]:
    manifest = load_manifest(shot_dir / "manifest.yaml")
    path_map = PathMap.parse([{"studio": "/studio/proj", "local": str(tree)}], "bench")
    settings = Settings(path_map=path_map)
    with site_fs(settings) as fs:
        return _score_splits(manifest, shot_dir, shot, fs, settings, granules, spreads)


def _score_splits(manifest: Manifest, shot_dir: Path, shot: str, fs: SiteFS, settings: Settings,
                  granules: list[int], spreads: list[int]) -> list[dict]:
    path_map = settings.path_map
    resolved = resolve_inputs(manifest, fs)
    t0 = time.perf_counter()
    stats = ImportStats()
    full = aggregate(read_traces([str(shot_dir / "traces")], path_map, stats=stats))
    import_s = time.perf_counter() - t0
    frames = sorted(full.frames)
    whole = {f.path: [(0, f.size)] for f in resolved.files}
    rows = []
    for split_name, split in SPLITS.items():
        train = split(frames)
        test = [f for f in frames if f not in set(train)]
        needed = set(needed_blocks(full, test))
        ts = restrict(full, train)
        base_whole = score(blocks_of(whole), needed)
        union = {p: [s for per in (ts.reads[p],) for f in per for s in per[f]] for p in ts.reads}
        base_union = score(blocks_of(union), needed) if train else (0.0, 0.0)
        for granule in granules:
            for spread in spreads:
                opts = PlanOptions(granule=granule, frames=tuple(test), predict=PredictOptions(spread=spread))
                t1 = time.perf_counter()
                plan = plan_resolved(manifest, resolved, ts, fs, settings, opts)
                plan_s = time.perf_counter() - t1
                recall, over = score(plan_blocks(plan), needed)
                # Targets are defined on 64 KiB blocks: judged where the plan's granule is that block.
                target = TARGETS.get((shot, split_name)) if granule == BLOCK else None
                rows.append({
                    "shot": shot, "split": split_name, "train_frames": len(train), "test_frames": len(test),
                    "granule": granule, "spread": spread, "recall": round(recall, 4), "overfetch": round(over, 3),
                    "needed_bytes": len(needed) * BLOCK, "planned_bytes": plan.bytes,
                    "whole_files": {"recall": round(base_whole[0], 4), "overfetch": round(base_whole[1], 3)},
                    "training_union": {"recall": round(base_union[0], 4), "overfetch": round(base_union[1], 3)},
                    "target": None if target is None else {"recall": target[0], "overfetch": target[1],
                                                           "met": recall >= target[0] and over <= target[1]},
                    "plan_s": round(plan_s, 3), "import_s": round(import_s, 3),
                })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "predict.json"))
    ap.add_argument("--samples", default=str(ROOT / "sample_jobs"), help="folder of shots: manifest.yaml, sizes.json, traces/")
    args = ap.parse_args()
    samples = Path(args.samples)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "proj"
        for shot in ("shot100", "shot200"):
            build_tree(samples / shot / "sizes.json", tree)
        for shot in ("shot100", "shot200"):
            spreads = [0, 256 * KiB, 512 * KiB, 1024 * KiB] if shot == "shot200" else [512 * KiB]
            rows += run_shot(samples / shot, shot, tree, granules=[BLOCK, 1 << 20], spreads=spreads)
    head = f"{'shot':8} {'split':13} {'gran':>5} {'spread':>6} {'recall':>7} {'over':>6} | {'whole r/o':>12} | {'union r/o':>12} | target"
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["target"]
        verdict = "" if t is None else f"{'MET' if t['met'] else 'MISSED'} (>= {t['recall']} at <= {t['overfetch']})"
        print(f"{r['shot']:8} {r['split']:13} {r['granule'] // KiB:>4}K {r['spread'] // KiB:>5}K {r['recall']:>7.3f} "
              f"{r['overfetch']:>6.2f} | {r['whole_files']['recall']:>5.2f}/{r['whole_files']['overfetch']:>6.2f} | "
              f"{r['training_union']['recall']:>5.2f}/{r['training_union']['overfetch']:>6.2f} | {verdict}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"block": BLOCK, "rows": rows}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
