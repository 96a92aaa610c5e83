"""How long a live re-plan of a big running job takes: 1,000 frames, 2,000 inputs, from the store.

Why: issue 24 bounds a re-plan (`prewarm.flow.live.replan`) of a 1,000-frame job at 2 s,
so a wave of finished frames is warmed for within seconds and re-plans never pile up.
The job is bench/scale.py's (1,990 shared tiled textures and 10 per-frame caches,
frames 1-1000); its finished frames are the traced ones (every 4th, 250 frames, the
records filed into a trace store under the job's own name, as `prewarm frame done
--trace` files them); the other 750 wait. A live job is registered on a redis-server
started here (stopped by PID) and re-planned through the real flow: the store plan of
the 750 waiting frames, the previous warm's dispatch stopped, the difference submitted
as a warm job (batches sent nowhere). Each run registers the job afresh; the fastest of
`--repeat` (3) runs counts, every run is listed.

    .venv/bin/python bench/live_replan.py [--records 1000000] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale

from prewarm.flow import live
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_manifest
from prewarm.plan.manifest import Manifest
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.site.settings import Settings
from prewarm.state import frames as fstate
from prewarm.state.client import connect
from prewarm.state.frames import FrameEvent, Kind
from prewarm.testkit.services import RedisServer
from prewarm.traces.store import import_traces

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", type=int, default=1, help="planning processes (the service plans with 1)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "live_replan.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prewarm-replan-") as tmp:
        work = Path(tmp)
        root = work / "proj"
        inputs = scale.build_tree(root)
        manifest_path = work / "job.yaml"
        manifest_path.write_text(f"job: scale_v002\nshow: bench\nshot: scale\nframes: 1-{scale.FRAMES}\ninputs:\n"
                                 + "".join(f"  - {p}\n" for p in inputs))
        written = scale.write_traces(work / "traces", args.records)
        settings = Settings(path_map=PathMap.parse([{"studio": "/studio/proj", "local": str(root)}], "bench"),
                            trace_store=str(work / "store"))
        t0 = time.perf_counter()
        import_traces(settings, [str(work / "traces")], "bench", "scale", "scale_v002")
        filed_s = time.perf_counter() - t0
        manifest = load_manifest(manifest_path)
        server = RedisServer(work)
        server.start()
        runs = []
        try:
            r = connect(server.url)
            for _ in range(args.repeat):
                r.flushall()
                live.register(r, "scale-1", manifest, [], "manifest", manifest_path.read_text())
                fstate.apply_many(r, [FrameEvent(k, "scale-1", f, 1.0 if k is Kind.START else 600.0, "n")
                                      for f in scale.TRAINED for k in (Kind.START, Kind.DONE)])
                for f in scale.TRAINED:
                    fstate.add_evidence(r, "scale-1", f)
                planned: list[float] = []

                def planner(m: Manifest, frames: tuple[int, ...], planned: list[float] = planned) -> Plan:
                    t = time.perf_counter()
                    plan = plan_manifest(m, None, settings, PlanOptions(frames=frames), cores=args.cores)
                    planned.append(time.perf_counter() - t)
                    return plan

                t1 = time.perf_counter()
                done = live.replan(r, settings, lambda gw, job, i: None, "scale-1", now=1000.0, planner=planner)
                runs.append({"wall_s": round(time.perf_counter() - t1, 3), "plan_s": round(sum(planned), 3),
                             "frames": done.frames,
                             "added_bytes": done.added_bytes, "dropped_bytes": done.dropped_bytes,
                             "warm": done.warm})
                print(f"re-plan of {done.frames} waiting frames: {runs[-1]['wall_s']:.2f} s, of which planning "
                      f"{runs[-1]['plan_s']:.2f} s", file=sys.stderr)
            r.close()
        finally:
            server.stop()
    best = min(runs, key=lambda x: x["wall_s"])
    out = {"records": written, "frames": scale.FRAMES, "inputs": len(inputs), "finished_frames": len(scale.TRAINED),
           "waiting_frames": best["frames"], "replan_wall_s": best["wall_s"], "plan_s": best["plan_s"], "cores": args.cores, "walls_s": [x["wall_s"] for x in runs],
           "filed_s": round(filed_s, 2), "target_s": TARGET_S, "added_bytes": best["added_bytes"]}
    print(f"{'records':>9} {'frames':>6} {'waiting':>7} {'re-plan s':>9} {'target':>6}")
    print(f"{written:>9} {scale.FRAMES:>6} {best['frames']:>7} {best['wall_s']:>9.2f} {TARGET_S:>6}")
    print(f"{'PASS' if best['wall_s'] <= TARGET_S else 'FAIL'}  a 1,000-frame job re-planned from the store in "
          f"{best['wall_s']:.2f} s (target <= {TARGET_S:g} s); runs {out['walls_s']}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
