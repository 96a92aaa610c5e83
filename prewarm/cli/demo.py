"""`prewarm demo [SHOT_DIR]`: a sample shot read cold through the gateway twin, then after prewarm's warm.

What `make demo` runs, and the first thing a user sees: the shot's input tree is built
(sparse files of the real sizes), a FUSE twin of a caching gateway is mounted over it
(30 ms RTT, 50 MB/s by default), a plan is made from the traces of the first quarter of
its frames, and the other frames' traces are replayed through the mount twice: from an
empty gateway, and after the plan was warmed (in process, or by a Celery worker when
`$PREWARM_REDIS_URL` is set). The benchmark of every strategy is `bench/e2e.py`.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

DEMO_LEGEND = """
the columns, one row per strategy (cold: the frames read through an empty gateway; prewarm: after the warm):
  warm_s     seconds the warm took (0 when there is none)      ideal_s  its WAN bytes / the link rate
  util       ideal_s / warm_s: how close the warm ran to the link
  WAN MB     bytes the gateway fetched over the WAN, warm and frames together
  frames MB  bytes the frames read                             wait_s   seconds the frames waited on reads
  floor_s    wait_s when every read hits (this machine's own cost)
  wan_wait   wait_s - floor_s: the wait warming can remove     hit      share of frame reads the cache answered

try next:
  .venv/bin/prewarm evaluate .demo/shot100.plan.json --local /studio/proj=.demo/proj \\
      --traces sample_jobs/shot100/traces/frame.0010.strace.gz -o .demo/eval.json
                               the plan's recall and over-fetch against a frame it never saw
  PREWARM_REDIS_URL=redis://localhost:6379/0 make demo
                               the same warm through a Celery worker (start redis-server first)
  .venv/bin/python bench/e2e.py --quick
                               both sample shots, every strategy, and the README's verdicts
  README, "Warming a job" and "On the farm": workers, the service, hooks and watch folders"""

NODES = 4
MAX_TEST = 8


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="a sample shot's frames read cold through the gateway twin, then after a warm",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shot", nargs="?", default="sample_jobs/shot100", metavar="SHOT_DIR",
                   help="a shot folder: manifest.yaml, traces/, sizes.json (default sample_jobs/shot100)")
    p.add_argument("--rtt-ms", type=float, default=30.0, help="the twin's round trip to the origin (default 30)")
    p.add_argument("--mbps", type=float, default=50.0, help="the twin's WAN rate in MB/s (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.plan.framespec import format_frames
    from prewarm.testkit import e2e
    from prewarm.testkit.replay import replay_frames
    from prewarm.twin.control import running_twin
    from prewarm.twin.gateway import GiB, TwinConfig

    shot = Path(args.shot)
    e2e.check_shots([shot])
    url = os.environ.get("PREWARM_REDIS_URL")
    setup = e2e.Run(strategies=("cold", "prewarm"), rtt_ms=args.rtt_ms, mbps=args.mbps, nodes=NODES,
                    replay=functools.partial(replay_frames, nodes=NODES, processes=True, pace=1.0),
                    max_test=MAX_TEST, celery=url is not None, redis_url=url)
    config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps, capacity=4 * GiB, client_cache=True, cache_model="page")
    results, mode = e2e.run_model("page", [shot], setup,
                                  lambda origin, work: running_twin(origin, work, config))
    rows = results[shot.name]
    print("\n".join([f"gateway twin: {args.rtt_ms:g} ms RTT, {args.mbps:g} MB/s; warm: {mode}; {NODES} render nodes",
                     "", *e2e.table(f"{shot.name} (page cache)", rows)]))
    c, p = rows["cold"], rows["prewarm"]
    print(f"\nplanned from the traces of frames {format_frames(p['train_frames'])} only; replayed frames "
          f"{format_frames(p['test_frames'])}, which the plan never saw.\n"
          f"frames waited {c['frame_wait_s']:.2f} s on reads cold, {p['frame_wait_s']:.2f} s after "
          f"a {p['warm_s']:.2f} s warm ({p['frame_hit_ratio']:.0%} of frame reads from cache; "
          f"{p['frame_floor_wait_s']:.2f} s when every read hits: the replay's own floor on this machine)")
    print(DEMO_LEGEND)
    return 0
