"""Planning at scale: a synthetic job of 1,000 frames and 2,000 inputs from millions of trace records.

The job: 1,990 shared tiled textures (sparse files, 16-64 MiB) and 10 per-frame caches
(`cache_K.####.bgeo`, one file per frame), frames 1-1000. Traces: JSON Lines (gzip),
one file per traced frame (every 4th frame), each frame reading its caches whole and a
few hundred texture tiles that drift with the frame. Each trace size is planned in a
fresh process (`prewarm plan`, the real command); peak memory is the RSS of the
planner and its import worker processes summed, sampled every 50 ms. Target: 5 million records in under 30 s and 1 GB.

    python bench/scale.py [--records 1000000,2500000,5000000] [--json FILE]
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


def plan_once(manifest: Path, traces: Path, root: Path) -> dict:
    """Wall time, CPU time and the peak summed RSS of the planner and its worker processes."""
    cmd = [sys.executable, "-m", "prewarm", "plan", str(manifest), "--traces", str(traces),
           "--local", f"/studio/proj={root}", "-o", os.devnull]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        raise SystemExit(f"plan failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "max_rss_mb": round(peak / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="1000000,2500000,5000000")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "scale.json"))
    args = ap.parse_args()
    sizes = [int(x) for x in args.records.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        t0 = time.perf_counter()
        inputs = build_tree(root)
        manifest = Path(tmp) / "job.yaml"
        manifest.write_text("job: scale\nframes: 1-1000\ninputs:\n" + "".join(f"  - {p}\n" for p in inputs))
        print(f"tree: {len(inputs)} inputs, {TEXTURES + CACHES * FRAMES} files in {time.perf_counter() - t0:.1f} s")
        for n in sizes:
            traces = Path(tmp) / f"traces_{n}"
            t1 = time.perf_counter()
            written = write_traces(traces, n)
            gen = time.perf_counter() - t1
            res = plan_once(manifest, traces, root)
            rows.append({"records": written, "inputs": len(inputs), "frames": FRAMES,
                         "traced_frames": len(TRAINED), "generate_s": round(gen, 1), **res,
                         "records_per_s": round(written / res["wall_s"])})
            print(f"{written:>9} records: plan {res['wall_s']:6.2f} s wall, {res['cpu_s']:6.2f} s cpu, "
                  f"{res['max_rss_mb']:7.1f} MB max RSS")
    print()
    print(f"{'records':>9} {'wall s':>7} {'cpu s':>7} {'MB RSS':>8} {'rec/s':>9}  target <30 s, <1024 MB")
    for r in rows:
        print(f"{r['records']:>9} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f} {r['max_rss_mb']:>8.1f} {r['records_per_s']:>9}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        growth = (b["wall_s"] / a["wall_s"]) / (b["records"] / a["records"])
        print(f"time grows {growth:.2f}x linear; memory {b['max_rss_mb'] / a['max_rss_mb']:.2f}x for "
              f"{b['records'] / a['records']:.1f}x the records")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
