"""Planning at scale: a synthetic job of 1,000 frames and 2,000 inputs from millions of trace records.

The job: 1,990 shared tiled textures (sparse files, 16-64 MiB) and 10 per-frame caches
(`cache_K.####.bgeo`, one file per frame), frames 1-1000. Traces: JSON Lines (gzip),
one file per traced frame (every 4th frame), each frame reading its caches whole and a
few hundred texture tiles that drift with the frame. Each trace size is planned in a
fresh process (`prewarm plan`, the real command); peak memory is the RSS of the
planner and its import worker processes summed, sampled every 50 ms. Each plan runs
`--repeat` times (3) and the fastest counts (`walls_s` lists every run): on a shared
machine the same plan's wall time varied by a third between runs, and noise only adds.
Target: 5 million records in under 30 s and 1 GB.

The same traces are then filed once into a fresh trace store (`prewarm traces import`:
`file_wall_s`) and the same job is planned from the store without `--traces`
(`store_wall_s`, `store_max_rss_mb`): from the kept profiles, so its cost should follow
files x frames, not records. Targets: at 5M records `store_wall_s` <= 0.15x `wall_s`, and
at most 2x what it is at 1M; every peak RSS under 1 GB.

    python bench/scale.py [--records 1000000,2500000,5000000] [--json FILE]

Whole sequences: `--frames 10000 --textures 19990` plans 10,000 frames and 20,000 inputs
(every 4th frame traced); `plan_mb` is the size of the plan written.

    python bench/scale.py --frames 10000 --textures 19990 --records 1000000 --json bench/out/sequence.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 1000
TEXTURES = 1990
CACHES = 10
TRAINED = list(range(1, FRAMES + 1, 4))
MiB = 1 << 20
TILE = 64 * 1024


def build_tree(root: Path) -> list[str]:
    """Sparse inputs; returns the manifest's input lines (studio paths)."""
    rnd = random.Random(7)
    tex = root / "assets" / "tex"
    tex.mkdir(parents=True)
    inputs = []
    for i in range(TEXTURES):
        p = tex / f"t{i:04d}.tx"
        with open(p, "wb") as fh:
            fh.truncate(rnd.choice((16, 32, 64)) * MiB)
        inputs.append(f"/studio/proj/assets/tex/t{i:04d}.tx")
    for k in range(CACHES):
        d = root / "shot" / f"cache_{k}"
        d.mkdir(parents=True)
        for f in range(1, FRAMES + 1):
            with open(d / f"c{k}.{f:04d}.bgeo", "wb") as fh:
                fh.truncate(MiB)
        inputs.append(f"/studio/proj/shot/cache_{k}/c{k}.####.bgeo")
    return inputs


def write_traces(folder: Path, records: int) -> int:
    """JSON Lines per traced frame; returns the number of records written."""
    folder.mkdir(parents=True)
    per_frame = records // len(TRAINED)
    cache_reads = CACHES * (MiB // TILE)
    tex_reads = max(0, per_frame - cache_reads)
    rnd = random.Random(11)
    written = 0
    for f in TRAINED:
        lines = []
        for k in range(CACHES):
            path = f"/studio/proj/shot/cache_{k}/c{k}.{f:04d}.bgeo"
            lines.extend(f'{{"path":"{path}","offset":{o},"length":{TILE}}}' for o in range(0, MiB, TILE))
        # each frame samples 200 textures, tiles drifting with the frame
        used = [(f // 8 + j * 7) % TEXTURES for j in range(200)]
        for n in range(tex_reads):
            t = used[n % 200]
            tile = (f * 3 + rnd.randrange(64)) % 256
            lines.append(f'{{"path":"/studio/proj/assets/tex/t{t:04d}.tx","offset":{tile * TILE},"length":{TILE}}}')
        with gzip.open(folder / f"frame.{f:04d}.jsonl.gz", "wt", compresslevel=1) as fh:
            fh.write("\n".join(lines) + "\n")
        written += len(lines)
    return written


def run_once(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Wall time, CPU time and the peak summed RSS of a `prewarm` command and its worker processes."""
    cmd = [sys.executable, "-m", "prewarm", *args]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        env={**os.environ, **(env or {})})
    peak = cpu = 0.0
    seen: dict[int, float] = {}
    while proc.poll() is None:
        rss = 0
        try:
            for p in [proc, *proc.children(recursive=True)]:
                with p.oneshot():
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    seen[p.pid] = t.user + t.system
        except psutil.Error:
            pass
        peak = max(peak, rss)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    cpu = sum(seen.values())
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "max_rss_mb": round(peak / 2**20, 1)}


def plan_once(manifest: Path, traces: Path | None, root: Path, store: Path | None = None, repeat: int = 1) -> dict:
    """`prewarm plan`, from raw trace files, or (traces None) from the trace store: the fastest
    of `repeat` runs (a shared machine's noise only ever adds time), the largest memory."""
    out = manifest.with_suffix(".plan.json")
    args = ["plan", str(manifest), "--local", f"/studio/proj={root}", "-o", str(out)]
    runs = [run_once(args + (["--traces", str(traces)] if traces else []),
                     {"PREWARM_TRACE_STORE": str(store)} if store else None) for _ in range(repeat)]
    res = min(runs, key=lambda r: r["wall_s"])
    res["max_rss_mb"] = max(r["max_rss_mb"] for r in runs)
    res["walls_s"] = [r["wall_s"] for r in runs]
    res["plan_mb"] = round(out.stat().st_size / 2**20, 1)
    res["plan_ranges"] = len(json.loads(out.read_bytes())["ranges"])
    out.unlink()
    return res


def file_once(traces: Path, store: Path) -> dict:
    """`prewarm traces import`: the filing that render nodes do frame by frame, here all at once."""
    return run_once(["traces", "--store", str(store), "import", "--show", "bench", "--shot", "scale",
                     "--job", "scale_v001", str(traces)])


def main() -> int:
    global FRAMES, TEXTURES, TRAINED
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="1000000,2500000,5000000")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "scale.json"))
    ap.add_argument("--frames", type=int, default=FRAMES, help="job frames (every 4th is traced)")
    ap.add_argument("--textures", type=int, default=TEXTURES, help="shared texture inputs (plus 10 per-frame caches)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each plan, the fastest reported (every run in *walls_s)")
    args = ap.parse_args()
    FRAMES, TEXTURES = args.frames, args.textures
    TRAINED = list(range(1, FRAMES + 1, 4))
    sizes = [int(x) for x in args.records.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        t0 = time.perf_counter()
        inputs = build_tree(root)
        manifest = Path(tmp) / "job.yaml"
        manifest.write_text(f"job: scale_v002\nshow: bench\nshot: scale\nframes: 1-{FRAMES}\ninputs:\n"
                            + "".join(f"  - {p}\n" for p in inputs))
        print(f"tree: {len(inputs)} inputs, {TEXTURES + CACHES * FRAMES} files in {time.perf_counter() - t0:.1f} s")
        for n in sizes:
            traces = Path(tmp) / f"traces_{n}"
            t1 = time.perf_counter()
            written = write_traces(traces, n)
            gen = time.perf_counter() - t1
            res = plan_once(manifest, traces, root, repeat=args.repeat)
            store = Path(tmp) / f"store_{n}"
            filed = file_once(traces, store)
            stored = plan_once(manifest, None, root, store, repeat=args.repeat)
            rows.append({"records": written, "inputs": len(inputs), "frames": FRAMES,
                         "traced_frames": len(TRAINED), "generate_s": round(gen, 1), **res,
                         "records_per_s": round(written / res["wall_s"]),
                         "file_wall_s": filed["wall_s"], "file_cpu_s": filed["cpu_s"],
                         "file_max_rss_mb": filed["max_rss_mb"],
                         "store_wall_s": stored["wall_s"], "store_cpu_s": stored["cpu_s"],
                         "store_max_rss_mb": stored["max_rss_mb"], "plan_mb": stored["plan_mb"],
                         "walls_s": res["walls_s"], "store_walls_s": stored["walls_s"],
                         "plan_ranges": stored["plan_ranges"]})
            print(f"{written:>9} records: plan {res['wall_s']:6.2f} s wall, {res['cpu_s']:6.2f} s cpu, "
                  f"{res['max_rss_mb']:7.1f} MB max RSS; filed in {filed['wall_s']:.2f} s; "
                  f"from the store {stored['wall_s']:.2f} s, {stored['max_rss_mb']:.1f} MB")
    print()
    print(f"{'records':>9} {'wall s':>7} {'cpu s':>7} {'MB RSS':>8} {'rec/s':>9} {'file s':>7} "
          f"{'store s':>8} {'store MB':>9} {'store/wall':>10}")
    for r in rows:
        print(f"{r['records']:>9} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f} {r['max_rss_mb']:>8.1f} {r['records_per_s']:>9} "
              f"{r['file_wall_s']:>7.2f} {r['store_wall_s']:>8.2f} {r['store_max_rss_mb']:>9.1f} "
              f"{r['store_wall_s'] / r['wall_s']:>10.3f}")
    print("targets: store/wall <= 0.15 at 5M; store s at 5M <= 2x at 1M; every MB < 1024")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        k = b["records"] / a["records"]
        print(f"for {k:.1f}x the records: raw plan time {b['wall_s'] / a['wall_s']:.2f}x, memory "
              f"{b['max_rss_mb'] / a['max_rss_mb']:.2f}x; store plan time {b['store_wall_s'] / a['store_wall_s']:.2f}x, "
              f"memory {b['store_max_rss_mb'] / a['store_max_rss_mb']:.2f}x; filing {b['file_wall_s'] / a['file_wall_s']:.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
