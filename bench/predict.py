"""Prediction quality on the real traces: recall and over-fetch for several train/test splits.

For each shot and split, the planner is trained on some frames' traces and plans the
other frames; the plan is scored against what those frames really read, on 64 KiB
blocks: recall = needed blocks planned / needed blocks; over-fetch = planned blocks /
needed blocks. Next to it: whole files of every input, the union of the training
frames' reads, and the oracle (a plan from the test frames' own traces: the ceiling
at that granule). `first_frame_at` is where in the plan (share of its bytes, in warm
order) every byte the first test frame reads is covered.

The input tree is real where a shot says how to make its files (`textures.json`:
shot200's textures, rebuilt byte for byte with openimageio) and sparse elsewhere;
`--sparse` plans against sparse files only (the byte model, as before structure
readers). Runs the real planner: importer, input resolution, structure readers,
prediction, ordering.

Cases (issue 25): shot300 is the field's numbering (frames from 1001 beside UDIM tiles
1001-1003, shot200's traces renamed); shot220 a long dolly-in over shot200's textures (one
MIP level finer every 8 frames: its first quarter traces 12 frames and plans the 36 after
them, the push-in several levels deep); shot210 is shot200's textures re-published in
place with another compression, planned from shot200's traces (made against the old
files) and scored against the tiles those frames read, at their new offsets. Its `store`
rows plan from the trace store, the traces filed (with each texture's tiles and identity)
while the old files existed: the tiles map to the new offsets; its `prewarm` rows plan from
the raw traces, which carry no identity (a finding and the levels model). Each row
also counts the plan's missing-file findings (`missing`), its findings of files changed
since traced (`changed`) and its bytes by reason (`bytes_by_reason`, in the JSON).

    python bench/predict.py [--json FILE] [--sparse] [--samples DIR] [--shot NAME]...
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from prewarm.flow.filing import structure_of
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.formats.reader import read_structure
from prewarm.plan.aggregate import TraceSet, aggregate, restrict
from prewarm.plan.evaluate import (
    BLOCK,
    blocks_of,
    needed_blocks,
    plan_blocks,
    ready_at,
    score,
)
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.manifest import Manifest
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.ranges import Span, normalize
from prewarm.plan.structure import Structure
from prewarm.plan.texture import TextureOptions
from prewarm.site.fs import SiteFS
from prewarm.site.settings import Settings
from prewarm.testkit.samples import build_shot
from prewarm.testkit.textures import build_textures
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_traces
from prewarm.traces.loading import load_profiles
from prewarm.traces.store import import_traces

ROOT = Path(__file__).resolve().parents[1]

KiB = 1024
MiB = 1 << 20

SPLITS: dict[str, Callable[[list[int]], list[int]]] = {
    "first quarter": lambda fs: fs[: max(1, len(fs) // 4)],
    "every 4th": lambda fs: fs[::4],
    "no traces": lambda fs: [],
}
TRUCK = {"shot200": 31, "shot300": 31, "shot210": 31}
"""Shots whose camera trucks over their first frames (shot200's, 1-31: across its textures at one
level, a push-in after): the `truck` split traces the first third of those frames and plans the rest
of them, beyond the traced frames without the push-in."""
TARGETS = {  # (shot, split): (min recall, max over-fetch, first frame covered within this share), the issues'
    ("shot100", "first quarter"): (0.99, 1.10, None),
    ("shot100", "every 4th"): (0.99, 1.10, None),
    ("shot100", "no traces"): (0.99, 1.10, None),
    ("shot200", "every 4th"): (0.99, 3.0, None),       # between traced frames (issue 25; was 0.95 at 2.5)
    ("shot200", "first quarter"): (0.9, 4.0, None),    # beyond them (issue 25; was 0.85 at 4)
    ("shot200", "no traces"): (1.0, None, 0.40),
    ("shot300", "every 4th"): (0.99, 3.0, None),
    ("shot300", "first quarter"): (0.9, 4.0, None),
    ("shot200", "truck"): (0.9, 4.0, None),            # beyond the traced frames
    ("shot300", "truck"): (0.9, 4.0, None),
    ("shot220", "every 4th"): (0.99, 3.0, None),       # a long dolly-in: between traced frames
    ("shot220", "first quarter"): (0.9, 4.0, None),    # its first 12 frames traced, the push-in planned beyond
    ("shot210", "every 4th"): (0.95, 2.0, None),       # re-published between the traced render and this one
    ("shot210", "first quarter"): (0.95, 2.0, None),
}
TARGETED = {"shot210": "store"}
"""The variant a shot's targets are for (default `prewarm`): a re-published shot's, planned from the store."""
REPUBLISHED = {"shot210": "shot200"}
"""Shots whose textures are another shot's re-published (`textures.json`, same paths): planned from
that shot's traces, scored against the tiles its frames read, at their offsets in the new files."""
SWEEP = {  # the knobs of the texture model, on shot200 at the default granule: how the defaults were chosen
    "grow 0": PredictOptions(texture=TextureOptions(grow=0)),
    "grow 2": PredictOptions(texture=TextureOptions(grow=2)),
    "finer 0": PredictOptions(texture=TextureOptions(finer=0)),
    "finer 2": PredictOptions(texture=TextureOptions(finer=2)),
    "bytes only": PredictOptions(structure=False),
}


def _row(shot: str, split: str, variant: str, plan: Plan, needed: set[tuple[str, int]], full: TraceSet,
         test: list[int], granule: int, default_granule: int) -> dict[str, Any]:
    recall, over = score(plan_blocks(plan), needed)
    at = ready_at(plan, full, test[0]) if test else None
    assert plan.stats is not None and plan.stats.structure is not None  # plan_resolved counts both
    predicted, structure = plan.stats.predict, plan.stats.structure
    targeted = granule == default_granule and variant == TARGETED.get(shot, "prewarm")
    target = TARGETS.get((shot, split)) if targeted else None
    met = None
    if target is not None:
        min_recall, max_over, max_at = target
        met = recall >= min_recall and (max_over is None or over <= max_over) and \
            (max_at is None or (at is not None and at <= max_at))
    return {"shot": shot, "split": split, "variant": variant, "granule": granule,
            "recall": round(recall, 4), "overfetch": round(over, 3),
            "first_frame_at": None if at is None else round(at, 3),
            "needed_bytes": len(needed) * BLOCK, "planned_bytes": plan.bytes,
            "missing": plan.missing_inputs, "changed": predicted.changed_since_traced,
            "remapped": predicted.remapped_files,
            "bytes_by_reason": dict(sorted(plan.table.bytes_by_reason().items())),
            "structure": {"structured_files": structure.structured_files,
                          "structure_unreadable": structure.structure_unreadable,
                          "tiled_files": predicted.tiled_files},
            "target": None if target is None else {"recall": target[0], "overfetch": target[1],
                                                   "first_frame_at": target[2], "met": met}}


def run_shot(shot_dir: Path, shot: str, tree: Path, granules: list[int],
             traced_tree: Path | None = None) -> list[dict[str, Any]]:
    """`traced_tree`: the files as they were when the traces were made (a re-published shot's)."""
    manifest = load_manifest(shot_dir / "manifest.yaml")
    path_map = PathMap.parse([{"studio": "/studio/proj", "local": str(tree)}], "bench")
    settings = Settings(path_map=path_map)
    full = aggregate(read_traces([str(shot_dir / "traces")], path_map, stats=ImportStats()))
    truth = full if traced_tree is None else republished(full, traced_tree, tree)
    stored = None if traced_tree is None else filed(shot_dir, manifest, traced_tree)
    with site_fs(settings) as fs:
        return _score_splits(manifest, full, truth, shot, fs, settings, granules, stored)


def filed(shot_dir: Path, manifest: Manifest, traced_tree: Path) -> TraceSet:
    """The shot's traces filed in a trace store while the files were `traced_tree` (the old version),
    each texture in tiles with its identity then, and read back as a plan from the store reads them."""
    with tempfile.TemporaryDirectory() as store:
        old = Settings(path_map=PathMap.parse([{"studio": "/studio/proj", "local": str(traced_tree)}], "bench"),
                       trace_store=store)
        import_traces(old, [str(shot_dir / "traces")], manifest.show, manifest.shot, manifest.job,
                      structures=structure_of(old))
        return load_profiles(old, manifest).traces


def _structure(root: Path, path: str) -> Structure | None:
    local = root / path.removeprefix("/studio/proj/")
    fd = os.open(local, os.O_RDONLY)
    try:
        got = read_structure(lambda s, e: os.pread(fd, e - s, s), os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return got if isinstance(got, Structure) else None


def republished(ts: TraceSet, old: Path, new: Path) -> TraceSet:
    """What the traced frames read, in the re-published files: each tile read is the same tile at its
    new offset, and the rest (header, directories, tables) is the new file's."""
    reads: dict[str, dict[int, list[Span]]] = {}
    for path, per in ts.reads.items():
        before, after = _structure(old, path), _structure(new, path)
        if before is None or after is None:
            raise SystemExit(f"{path}: a re-published shot's files must be structured, in both versions")
        reads[path] = {f: normalize([*map(after.span, before.tiles_read(spans)[0]), *after.meta])
                       for f, spans in per.items()}
    return TraceSet(reads=reads, frames=ts.frames, records=ts.records)


def _score_splits(manifest: Manifest, full: TraceSet, truth: TraceSet, shot: str, fs: SiteFS, settings: Settings,
                  granules: list[int], stored: TraceSet | None = None) -> list[dict[str, Any]]:
    """`full`: the traces planned from; `truth`: what the frames read of the files planned against;
    `stored`: the same traces from the trace store (a `store` variant)."""
    resolved = resolve_inputs(manifest, fs)
    frames = sorted(full.frames)
    whole = {f.path: [(0, f.size)] for f in resolved.files}
    rows = []
    splits: dict[str, tuple[list[int], list[int]]] = {}
    for split_name, split in SPLITS.items():
        train = split(frames)
        splits[split_name] = (train, [f for f in frames if f not in set(train)])
    if shot in TRUCK:
        trucking = frames[:TRUCK[shot]]
        splits["truck"] = (trucking[:len(trucking) // 3], trucking[len(trucking) // 3:])
    for split_name, (train, test) in splits.items():
        needed = set(needed_blocks(truth, test))
        ts = restrict(full, train)
        union = {p: normalize(s for spans in per.values() for s in spans) for p, per in ts.reads.items()}
        baselines = {"whole_files": score(blocks_of(whole), needed),
                     "training_union": score(blocks_of(union), needed) if train else (0.0, 0.0)}
        variants: dict[str, tuple[TraceSet, PredictOptions]] = {
            "prewarm": (ts, PredictOptions()), "oracle": (restrict(truth, test), PredictOptions(spread=0))}
        if stored is not None:
            variants["store"] = (restrict(stored, train), PredictOptions())
        if shot == "shot200":
            variants.update({name: (ts, opts) for name, opts in SWEEP.items()})
        for granule in granules:
            for variant, (vts, opts) in variants.items():
                if variant in SWEEP and granule != settings.granule:
                    continue
                t1 = time.perf_counter()
                plan = plan_resolved(manifest, resolved, vts, fs, settings,
                                     PlanOptions(granule=granule, frames=tuple(test), predict=opts))
                row = _row(shot, split_name, variant, plan, needed, truth, test, granule, settings.granule)
                row["plan_s"] = round(time.perf_counter() - t1, 3)
                row["train_frames"], row["test_frames"] = len(train), len(test)
                row.update({k: {"recall": round(r, 4), "overfetch": round(o, 3)} for k, (r, o) in baselines.items()})
                rows.append(row)
    return rows


SHOTS = ("shot100", "shot200", "shot300", "shot210", "shot220")


def build(samples: Path, tree: Path, sparse: bool, shots: list[str]) -> str:
    """Each shot's tree under `tree/<shot>` (shots' folders overlap); a re-published shot's holds its textures."""
    out = []
    for shot in shots:
        if shot in REPUBLISHED:
            made = build_textures(samples / shot / "textures.json", tree / shot)
            out.append(f"{shot}: {len(made)} re-published textures")
        else:
            out.append(f"{shot}: {build_shot(samples / shot, tree / shot, real=not sparse)}")
    return "; ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "predict.json"))
    ap.add_argument("--samples", default=str(ROOT / "sample_jobs"),
                    help="folder of shots: manifest.yaml, sizes.json, traces/")
    ap.add_argument("--sparse", action="store_true", help="sparse input files only: the byte model")
    ap.add_argument("--shot", action="append", choices=SHOTS, help="these shots only (default: all)")
    args = ap.parse_args()
    shots = args.shot or list(SHOTS)
    samples = Path(args.samples)
    rows: list[dict[str, Any]] = []
    default = Settings().granule
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "proj"
        shots += [REPUBLISHED[s] for s in shots if s in REPUBLISHED and REPUBLISHED[s] not in shots]
        if args.sparse:
            shots = [s for s in shots if s not in REPUBLISHED]
        tree_kind = build(samples, tree, args.sparse, shots)
        granules = sorted({default, 64 * KiB, MiB})
        for shot in shots:
            if shot in REPUBLISHED:
                rows += run_shot(samples / REPUBLISHED[shot], shot, tree / shot, granules,
                                 traced_tree=tree / REPUBLISHED[shot])
            else:
                rows += run_shot(samples / shot, shot, tree / shot, granules)
    head = (f"{'shot':8} {'split':13} {'variant':10} {'gran':>5} {'recall':>7} {'over':>6} {'1st@':>5} | "
            f"{'whole r/o':>12} | {'union r/o':>12} | {'miss':>4} {'chg':>3} | target")
    print(f"input tree: {tree_kind}; default granule {default // KiB} KiB")
    print(head)
    print("-" * len(head))
    for r in rows:
        t = r["target"]
        verdict = "" if t is None else f"{'MET' if t['met'] else 'MISSED'}"
        at = "-" if r["first_frame_at"] is None else f"{r['first_frame_at']:.2f}"
        print(f"{r['shot']:8} {r['split']:13} {r['variant']:10} {r['granule'] // KiB:>4}K {r['recall']:>7.3f} "
              f"{r['overfetch']:>6.2f} {at:>5} | "
              f"{r['whole_files']['recall']:>5.2f}/{r['whole_files']['overfetch']:>6.2f} | "
              f"{r['training_union']['recall']:>5.2f}/{r['training_union']['overfetch']:>6.2f} | {r['missing']:>4} "
              f"{r['changed']:>3} | "
              f"{verdict}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"block": BLOCK, "default_granule": default, "tree": tree_kind, "rows": rows,
                               "sweep": {k: repr(replace(v)) for k, v in SWEEP.items()}}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
