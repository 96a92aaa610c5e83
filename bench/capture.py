"""What recording costs a render: plain, under strace, under the eBPF recorder (`prewarm record`).

Three cases, each run plain, under the floor (below), through `record(..., recorder="strace")`
and through `record(..., recorder="ebpf")`, interleaved, median of `--repeat` runs:

* `reader`: Python, one thread, 200,000 `pread64` of 4 KiB over a 64 MiB file.
* `texture`: shot200's sample texture render, frame 1: an OpenImageIO TextureSystem
  render over shot200's six real `.tx` textures, built by prewarm's testkit
  (`build_shot`, openimageio). The render script is the one that made shot200's real
  traces (/work/shared/data/real-traces/shot200/generate/tex_frame_dev.py), copied here,
  with its image `--texture-scale` times wider and taller (768 x 432 at 8, about a second of
  CPU: the 96 x 54 frame of the traces renders in 70 ms, too short to time a few percent on).
* `threaded`: 8 threads, 25,000 `pread64` of 4 KiB each (200,000 in all).

`floor_s`: the render run under the recorder built as its floor (`compile_program(floor=True)`:
the same programs on the same tracepoints, each returning at once): what attaching them costs
any eBPF recorder, the kernel's share; `ebpf_s` minus `floor_s` is the program's. With
`--bpf-stats`, `floor_ns_per_call` and `ebpf_ns_per_call` are the run time per call of the busiest
program (the raw `sys_enter` one, over every call it sees: the render's and every other
process's) as the kernel's BPF statistics count it: the program's own cost, which the machine's
other load hardly moves (the statistics add about 40 ns a call to both).

`plain_s`, `floor_s`, `strace_s`, `ebpf_s` are the render's own wall time (it times itself, from
its first line, before its imports, to its end): what a production frame pays.
`*_cpu_s` are its CPU time (user + system, its own threads): the BPF program runs in
the render's system calls, so `ebpf_cpu_ratio` is its cost with the machine's other
load taken out (strace's cost is mostly waiting, which CPU time does not show). The recorder's start and the
filing of the record come before and after the render (`*_total_s`: the whole
`prewarm record`; clang and libbpf compile, load and attach the program in a fraction of a second).
`strace_ratio`/`ebpf_ratio`/`floor_ratio` are against `plain_s` of the same run. `blocks_equal`: the
eBPF record's 4 KiB blocks per file, as filed in the store, equal the strace record's.
`records_per_s`: the read calls the render made (counted in its strace record) per
second of the render under eBPF. `plans_equal`: a plan of shot200 (frames 1-36) from
the eBPF records of frames `--plan-frames` equals the plan from their strace records.

    .venv/bin/python bench/capture.py [--repeat 3] [--json bench/out/capture.json]

Needs root (or CAP_BPF and CAP_PERFMON), clang and libbpf, strace, and the `textures` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prewarm.flow.planning import plan_manifest  # noqa: E402
from prewarm.plan.access import Op  # noqa: E402
from prewarm.plan.manifest import parse_manifest  # noqa: E402
from prewarm.plan.pathmap import PathMap, Prefix  # noqa: E402
from prewarm.site.settings import Settings  # noqa: E402
from prewarm.testkit.samples import build_shot  # noqa: E402
from prewarm.traces.ebpf import EbpfRecorder  # noqa: E402
from prewarm.traces.files import read_traces  # noqa: E402
from prewarm.traces.record import RecordResult, record  # noqa: E402

STATS = """
def bpf_ns():
    # run time per call of the busiest BPF program the bench (this render's parent, which loaded the
    # recorder's programs in-process) holds, from the kernel's BPF statistics
    me, best = os.getppid(), (0, 0)
    try:
        for fd in os.listdir(f"/proc/{me}/fd"):
            if os.readlink(f"/proc/{me}/fd/{fd}") == "anon_inode:bpf-prog":
                info = dict(x.split(":", 1) for x in open(f"/proc/{me}/fdinfo/{fd}").read().splitlines() if ":" in x)
                best = max(best, (int(info.get("run_cnt", 0)), int(info.get("run_time_ns", 0))))
    except OSError:
        pass
    return best[1] / best[0] if best[0] else 0.0
open(out, "w").write(f"{wall} {c.user + c.system} {bpf_ns()}")
"""

READER = """
import time
t0 = time.perf_counter()
import os, sys, threading
path, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = os.path.getsize(path)
fd = os.open(path, os.O_RDONLY)
def loop(k, n):
    for i in range(n):
        os.pread(fd, 4096, ((k * n + i) * 4096 * 7) % size)
ts = [threading.Thread(target=loop, args=(k, 200_000 // threads)) for k in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
c = os.times()
wall = time.perf_counter() - t0
STATS
"""

TEXTURE = '''
"""Texture-only render of a dev shot: the camera pans across the set, then pushes in."""
import time
t0 = time.perf_counter()
import OpenImageIO as oiio, os, sys, math
root, frame, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
scale = int(sys.argv[4]) if len(sys.argv) > 4 else 1
ts = oiio.TextureSystem(shared=False)
ts.attribute("max_memory_MB", 64.0); ts.attribute("autotile", 0)
W, H = 96 * scale, 54 * scale
t = (frame - 1) / 35.0
zoom = 0.35 if t < 0.66 else 0.35 - (t - 0.66) * 0.8
cx, cy = 0.1 + 0.8 * min(t / 0.66, 1.0), 0.45
opt = oiio.TextureOpt()
d0 = f"{root}/assets/lookdev/tex"
tex = [f"{d0}/{n}.tx" for n in ("terrain_col", "terrain_spec", "rock_col", "rock_nrm")]
acc = 0.0
for j in range(H):
    for i in range(W):
        s = cx + (i / W - 0.5) * zoom; tt = cy + (j / H - 0.5) * zoom * H / W
        d = zoom / W
        files = tex[:2] if j > H // 3 else tex[2:]
        for f in files:
            acc += ts.texture(f, opt, s % 1, tt % 1, d, 0, 0, d, 3)[0]
        if i / W > 0.8 and 8 <= frame <= 20:
            acc += ts.texture(f"{d0}/tree_col.tx", opt, (s * 2) % 1, (tt * 2) % 1, d * 2, 0, 0, d * 2, 3)[0]
        if frame % 12 == 0:
            acc += ts.texture(f"{d0}/sign_mask.tx", opt, s % 1, tt % 1, d, 0, 0, d, 1)[0]
c = os.times()
wall = time.perf_counter() - t0
STATS
'''

READER, TEXTURE = (script.replace("\nSTATS\n", "\n" + STATS) for script in (READER, TEXTURE))

TARGETS = {"reader": 1.5, "texture": 1.05, "threaded": 1.05}
KINDS = ("plain", "floor", "strace", "ebpf")


@contextmanager
def bpf_stats(on: bool) -> Iterator[None]:
    """kernel.bpf_stats_enabled on for the block when asked (and put back as it was)."""
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    was = knob.read_text().strip()
    if on:
        knob.write_text("1")
    try:
        yield
    finally:
        if on:
            knob.write_text(was)


def run_floor(argv: list[str]) -> None:
    """`argv` run under the recorder built as its floor (the command starts once every program is attached)."""
    with open(os.devnull, "wb") as out:
        rec = EbpfRecorder(out, None, floor=True)
        proc = rec.start(argv)
        try:
            if proc.wait() != 0:
                raise SystemExit(f"{argv[1]} under the floor: status {proc.returncode}")
        finally:
            rec.stop()


def blocks(result: RecordResult) -> dict[str, set[int]]:
    assert result.stored is not None, (result.error, result.notes)
    out: dict[str, set[int]] = {}
    for a in read_traces([result.stored.folder]):
        if a.op is Op.READ and a.length:
            out.setdefault(a.path, set()).update(range(a.offset // 4096, (a.offset + a.length - 1) // 4096 + 1))
    return out


def reads(result: RecordResult) -> int:
    assert result.stored is not None
    return sum(1 for a in read_traces([result.stored.folder]) if a.op is Op.READ)


def run_case(settings: Settings, argv: list[str], timing: Path, repeat: int, job: str) -> dict[str, Any]:
    """Plain, strace and eBPF runs of one command, interleaved; medians and the last records."""
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    per_call: dict[str, list[float]] = {k: [] for k in KINDS}
    totals: dict[str, list[float]] = {"strace": [], "ebpf": []}
    last: dict[str, RecordResult] = {}
    for i in range(repeat):
        for kind in KINDS:
            t0 = time.perf_counter()
            if kind == "plain":
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            elif kind == "floor":
                run_floor(argv)
            else:
                result = record(settings, argv, job=f"{job}_{kind}_{i}", frame=1, recorder=kind)
                if result.returncode != 0 or result.recorder != kind or result.stored is None:
                    raise SystemExit(f"{job} under {kind}: status {result.returncode}, {result.notes}, {result.error}")
                totals[kind].append(time.perf_counter() - t0)
                last[kind] = result
            wall, used, ns = timing.read_text().split()
            times[kind].append(float(wall))
            cpu[kind].append(float(used))
            per_call[kind].append(float(ns))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    n_reads = reads(last["strace"])
    return {"plain_s": round(med["plain"], 3), "floor_s": round(med["floor"], 3), "strace_s": round(med["strace"], 3),
            "ebpf_s": round(med["ebpf"], 3), "strace_ratio": round(med["strace"] / med["plain"], 2),
            "floor_ratio": round(med["floor"] / med["plain"], 3), "ebpf_ratio": round(med["ebpf"] / med["plain"], 3),
            "plain_cpu_s": round(med_cpu["plain"], 3), "floor_cpu_s": round(med_cpu["floor"], 3),
            "strace_cpu_s": round(med_cpu["strace"], 3), "ebpf_cpu_s": round(med_cpu["ebpf"], 3),
            "floor_cpu_ratio": round(med_cpu["floor"] / med_cpu["plain"], 3),
            "ebpf_cpu_ratio": round(med_cpu["ebpf"] / med_cpu["plain"], 3),
            "floor_ns_per_call": round(statistics.median(per_call["floor"])) or None,
            "ebpf_ns_per_call": round(statistics.median(per_call["ebpf"])) or None,
            "strace_total_s": round(statistics.median(totals["strace"]), 2),
            "ebpf_total_s": round(statistics.median(totals["ebpf"]), 2),
            "blocks_equal": blocks(last["ebpf"]) == blocks(last["strace"]),
            "records_per_s": round(n_reads / med["ebpf"]), "reads": n_reads,
            "ebpf_notes": last["ebpf"].notes[1:], "runs": {k: [round(x, 3) for x in v] for k, v in times.items()}}


def plans_equal(settings: Settings, render: Path, proj: Path, timing: Path, frames: list[int]) -> bool:
    """shot200 planned from the eBPF records of `frames`, and from their strace records: the same plan."""
    folders: dict[str, str] = {}
    for kind in ("ebpf", "strace"):
        for f in frames:
            r = record(settings, [sys.executable, str(render), str(proj), str(f), str(timing)],
                       job=f"shot200_lookdev_{kind}", show="proj", shot="shot200", frame=f, recorder=kind)
            assert r.stored is not None and r.recorder == kind, (r.error, r.notes)
            folders[kind] = r.stored.folder
    manifest = parse_manifest((ROOT / "sample_jobs" / "shot200" / "manifest.yaml").read_text(), "manifest.yaml")
    plans = {kind: plan_manifest(manifest, [folder], settings) for kind, folder in folders.items()}
    shape = {kind: [(r.path, r.offset, r.length) for r in p.ranges] for kind, p in plans.items()}
    return shape["ebpf"] == shape["strace"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plan-frames", default="1,12,30", help="shot200 frames recorded both ways for the plan check")
    ap.add_argument("--bpf-stats", action="store_true",
                    help="turn on the kernel's BPF run-time statistics for the run (about 40 ns more per call) "
                         "and report each case's busiest probe's run time per call, under the floor and eBPF")
    ap.add_argument("--texture-scale", type=int, default=8, help="the timed texture render's image, times 96 x 54")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "capture.json"))
    args = ap.parse_args()
    with bpf_stats(args.bpf_stats), tempfile.TemporaryDirectory(prefix="capture-") as tmp:
        d = Path(tmp)
        proj = d / "proj"
        print(f"building shot200: {build_shot(ROOT / 'sample_jobs' / 'shot200', proj)}", file=sys.stderr)
        data = proj / "bench" / "reader.bin"
        data.parent.mkdir(parents=True)
        data.write_bytes(os.urandom(64 << 20))
        (d / "reader.py").write_text(READER)
        (d / "texture.py").write_text(TEXTURE)
        timing = d / "elapsed"
        settings = Settings(trace_store=str(d / "store"), roots=("/studio/proj",),
                            path_map=PathMap((Prefix("/studio/proj", (), str(proj)),)))
        cases = {
            "reader": [sys.executable, str(d / "reader.py"), str(data), str(timing), "1"],
            "texture": [sys.executable, str(d / "texture.py"), str(proj), "1", str(timing), str(args.texture_scale)],
            "threaded": [sys.executable, str(d / "reader.py"), str(data), str(timing), "8"],
        }
        results = {name: run_case(settings, argv, timing, args.repeat, name) for name, argv in cases.items()}
        frames = [int(f) for f in args.plan_frames.split(",")]
        same_plan = plans_equal(settings, d / "texture.py", proj, timing, frames)
    print(f"{'case':10} {'plain s':>8} {'strace s':>9} {'eBPF s':>8} {'strace x':>9} {'floor x':>8} {'eBPF x':>7} "
          f"{'target':>7} {'floor cpu x':>11} {'eBPF cpu x':>10} {'blocks =':>9} {'reads/s':>10}")
    for name, r in results.items():
        print(f"{name:10} {r['plain_s']:8.3f} {r['strace_s']:9.3f} {r['ebpf_s']:8.3f} {r['strace_ratio']:9.2f} "
              f"{r['floor_ratio']:8.3f} {r['ebpf_ratio']:7.3f} {'<=' + str(TARGETS[name]):>7} "
              f"{r['floor_cpu_ratio']:11.3f} {r['ebpf_cpu_ratio']:10.3f} {str(r['blocks_equal']):>9} "
              f"{r['records_per_s']:10,}")
    if args.bpf_stats:
        print("run time per call of the busiest probe (ns): " + ", ".join(
            f"{name} floor {r['floor_ns_per_call']} eBPF {r['ebpf_ns_per_call']}" for name, r in results.items()))
    print(f"plan of shot200 from eBPF records of frames {args.plan_frames} == from strace records: {same_plan}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "repeat": args.repeat,
                               "texture_scale": args.texture_scale, "cases": results,
                               "targets": TARGETS, "plans_equal": same_plan, "plan_frames": frames}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
