"""End to end through the gateway twin: cold frames, today's whole-file warm, and prewarm.

Why: prediction quality (bench/predict.py) only matters if a warm through a real
mount, with real workers, makes frames stop waiting on the WAN, costs few bytes and
finishes near what the link allows. For each sample shot, from a cold twin each time:

- cold:    the test frames' real traces replayed through the mount, nothing warmed;
- naive:   every resolved manifest input read whole by 8 threads (`xargs -P 8 cat`), then frames;
- prewarm: planned from the first quarter of frames' traces for the rest (`--train
           stepped`: from every 4th frame, as after a stepped check render), warmed by a
           Celery worker on Redis (both started here, stopped by PID; `--embedded`: in
           process), then frames;
- oracle:  the same warm of a plan made from the replayed frames' own traces (spread
           0): what a perfect predictor would warm at this granule, the ceiling that
           prewarm's WAN bytes and read wait are measured against.

After the prewarm row, the same plan is warmed once more on a dropped twin whose
attribute cache was first filled by a metadata-only job of that plan
(`warm_meta_hot_s`): a gateway that served any job of the show within its attribute
timeout (600 s). The difference to `warm_s` is what the cold path lookups cost.

frame_hit_ratio counts the twin's granule lookups during the replay phase:
hits / (hits + misses + joined), where joined means a read waited on a fetch already
in flight (not served from cache). ideal_s is the warm phase's WAN bytes at link rate.

The twin runs with `client_cache` (a render node's page cache answers re-reads within
an open, see TwinConfig) and each render node replays in its own process, so a hit
costs what it costs on a node. Each recorded thread keeps its trace's gaps between
accesses (`--pace 1`, the renderer's compute as recorded under strace): without them
8 nodes of back-to-back reads are 40 tight loops on 2 cores and the wait measured is
mostly waiting for a CPU. What the replay still costs on 2 shared cores is
measured: after prewarm the frames are replayed 3 more times, all hits, and the
median is `frame_floor_wait_s`, the wait that has nothing to do with the WAN.
`frame_wan_wait_s` = frame_wait_s - that floor (clamped at 0) is the wait that warming
can remove; frame_wait_s stays the raw sum of the frames' pread times. WAN bytes then
include the kernel's readahead (128 KiB) of frame reads, as a real NFS client's would;
`--direct-io` measures without it (every read reaches the twin; the twin's own cost
per read then dominates the wait).

    .venv/bin/python bench/e2e.py [--rtt-ms 30] [--mbps 50] [--quick] [--embedded] [--direct-io]
                                  [--train first-quarter|stepped] [--pace 1] [--json FILE] [--shot DIR]...

`--shot DIR` runs any shot folder instead of the samples (repeatable): `DIR/manifest.yaml`
(studio paths under /studio/proj), `DIR/traces/` (a file per frame), `DIR/sizes.json`
(sparse files of those sizes), and optionally `DIR/tree/` (real files, paths relative to
/studio/proj, used instead of sparse ones) and `DIR/textures.json` (textures made with
openimageio, as shot200's). Each shot's row also says where in its plan the first
replayed frame is fully covered (`first_frame_at`, a share of the plan's bytes in warm
order; the oracle's for comparison).

The machinery is `prewarm.testkit.e2e`'s, shared with `prewarm demo` (what `make demo`
runs: shot100, cold against prewarm).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from prewarm.errors import PrewarmError
from prewarm.plan.units import parse_size
from prewarm.site.settings import Settings
from prewarm.testkit.e2e import FLOOR_REPLAYS, STRATEGIES, TRAIN, Replay, Run, check_shots, run_model, table
from prewarm.testkit.replay import replay_frames
from prewarm.twin.control import running_twin
from prewarm.twin.gateway import GiB, TwinConfig

ROOT = Path(__file__).resolve().parents[1]

SHOTS = ("shot100", "shot200")
"""The sample shots under --samples, run when no --shot is given."""


def combine(shots: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sums over shots; the hit ratio weighted by each shot's frame bytes."""
    out: dict[str, dict[str, Any]] = {}
    for name in next(iter(shots.values())):
        rows = [s[name] for s in shots.values()]
        keys = ("warm_s", "ideal_s", "wan_bytes", "frame_read_bytes", "frame_wait_s", "frame_floor_wait_s",
                "frame_wan_wait_s")
        total: dict[str, Any] = {k: sum(r[k] for r in rows) for k in keys}
        nbytes = total["frame_read_bytes"]
        total["frame_hit_ratio"] = (sum(r["frame_hit_ratio"] * r["frame_read_bytes"] for r in rows) / nbytes
                                    if nbytes else 1.0)
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in total.items()}
    return out


def verdicts(shots: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The issue's targets, as measured ratios."""
    lines = []
    for shot, rows in shots.items():
        lines.append(f"{shot}: frames' read wait when every read hits (median of {FLOOR_REPLAYS} replays after "
                     f"prewarm): {rows['prewarm']['frame_floor_wait_s']:.2f} s, subtracted as the floor")
        p, c, n = rows["prewarm"], rows["cold"], rows.get("naive")

        def check(label: str, value: float, limit: float, ok: bool, shot: str = shot) -> None:
            lines.append(f"{shot}: {label} = {value:.3f} (target {limit:g}) {'MET' if ok else 'MISSED'}")

        speed = p["warm_s"] / p["ideal_s"] if p["ideal_s"] else float("inf")
        check("prewarm warm_s / ideal_s", speed, 1.15, speed <= 1.15)
        if "warm_first_fetch_s" in p:
            lead = p["warm_first_fetch_s"]
            lines.append(f"{shot}: prewarm's first origin READ went out {lead:.3f} s into the warm (dispatch, then "
                         f"lookups of a cold gateway, a round trip per path level); from there to the end: "
                         f"{(p['warm_s'] - lead) / p['ideal_s']:.3f} x ideal")
        if "warm_meta_hot_s" in p:
            hot = p["warm_meta_hot_s"] / p["ideal_meta_hot_s"] if p["ideal_meta_hot_s"] else float("inf")
            lines.append(f"{shot}: the same warm with the gateway's attribute cache already hot: "
                         f"{p['warm_meta_hot_s']:.3f} s = {hot:.3f} x ideal ({p['meta_hot_round_trips']} metadata "
                         f"round trips; cold lookups cost {p['warm_s'] - p['warm_meta_hot_s']:+.3f} s)")
        wait = p["frame_wait_s"] / c["frame_wait_s"] if c["frame_wait_s"] else float("inf")
        check("prewarm frame wait / cold (raw)", wait, 0.05, wait <= 0.05)
        if c["frame_wan_wait_s"]:
            wan_wait = p["frame_wan_wait_s"] / c["frame_wan_wait_s"]
            check("prewarm frame WAN wait / cold (floor subtracted)", wan_wait, 0.05, wan_wait <= 0.05)
        else:
            lines.append(f"{shot}: prewarm frame WAN wait / cold (floor subtracted): no measure, cold frames "
                         "waited no longer than the all-hit floor")
        wan = p["wan_bytes"] / p["frame_read_bytes"] if p["frame_read_bytes"] else float("inf")
        check("prewarm WAN / frame bytes", wan, 1.3, wan <= 1.3)
        if p.get("first_frame_at") is not None:
            o_at = rows.get("oracle", {}).get("first_frame_at")
            lines.append(f"{shot}: the first replayed frame is fully covered after {p['first_frame_at']:.1%} of the "
                         f"plan's bytes" + (f" (oracle {o_at:.1%})" if o_at is not None else ""))
        if n is not None and shot == "shot200":
            fewer = n["wan_bytes"] / p["wan_bytes"] if p["wan_bytes"] else float("inf")
            check("naive WAN / prewarm WAN", fewer, 3.0, fewer >= 3.0)
            sooner = p["warm_s"] / n["warm_s"] if n["warm_s"] else float("inf")
            check("prewarm warm_s / naive warm_s", sooner, 1.0, sooner < 1.0)
        o = rows.get("oracle")
        if o is not None:
            parts = [f"warm {o['warm_s'] / o['ideal_s']:.3f} x ideal" if o["ideal_s"] else "nothing to warm",
                     f"frame wait {o['frame_wait_s'] / c['frame_wait_s']:.3f} of cold" if c["frame_wait_s"] else "",
                     f"WAN {o['wan_bytes'] / o['frame_read_bytes']:.3f} x frame bytes" if o["frame_read_bytes"] else "",
                     f"naive WAN / oracle WAN {n['wan_bytes'] / o['wan_bytes']:.3f}" if n and o["wan_bytes"] else ""]
            lines.append(f"{shot}: ceiling, a plan from the replayed frames' own traces: "
                         + "; ".join(x for x in parts if x))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--mbps", type=float, default=50.0)
    ap.add_argument("--nodes", type=int, default=None, help="frames replayed at once (default 8, --quick 4)")
    ap.add_argument("--quick", action="store_true", help="at most 8 test frames per shot, 4 nodes")
    ap.add_argument("--embedded", action="store_true", help="warm in process instead of Celery on Redis")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "e2e.json"))
    ap.add_argument("--samples", default=str(ROOT / "sample_jobs"))
    ap.add_argument("--plan-granule", metavar="SIZE",
                    help="the plans' granule (default: the site's, 4 KiB pages)")
    ap.add_argument("--cache-model", choices=("page", "chunk", "both"), default=None,
                    help="the twin's cache: page (what a gateway fetches), chunk (whole 1 MiB granules, the old "
                         "model, for comparison) or both, one after the other (default both; page with --quick "
                         "or --shot)")
    ap.add_argument("--read-size", metavar="SIZE",
                    help="the warm side's granule (reads are cut and deduplicated per granule); plans keep the "
                         "default. 1MiB shows what page-sized warm reads cost")
    ap.add_argument("--shot", action="append", default=[], metavar="DIR",
                    help="a shot folder (manifest.yaml, traces/, sizes.json, optional tree/); repeatable; "
                         "default: the samples' shot100 and shot200")
    ap.add_argument("--direct-io", action="store_true",
                    help="twin without client cache: every frame read reaches the twin (exact read counters, "
                         "no kernel readahead, but the Python twin's cost per read dominates the wait)")
    ap.add_argument("--pace", type=float, default=1.0,
                    help="1: keep the traces' gaps between a thread's accesses (the renderer's compute, as "
                         "recorded under strace); 0: back to back, every node a tight loop")
    ap.add_argument("--train", choices=sorted(TRAIN), default="first-quarter",
                    help="which traced frames the plan learns from (default: the first quarter)")
    args = ap.parse_args()
    try:
        return run(args)
    except PrewarmError as exc:
        raise SystemExit(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    nodes = args.nodes or (4 if args.quick else 8)
    replay_run: Replay = functools.partial(replay_frames, nodes=nodes, processes=True, pace=args.pace)
    shot_dirs = [Path(d) for d in args.shot] or [Path(args.samples) / s for s in SHOTS]
    check_shots(shot_dirs)
    models = [args.cache_model] if args.cache_model not in (None, "both") else \
        (["page"] if args.quick or args.cache_model is None and args.shot else ["page", "chunk"])
    plan_granule = parse_size(args.plan_granule, "command line", "--plan-granule") if args.plan_granule else None
    read_size = parse_size(args.read_size, "command line", "--read-size") if args.read_size else None
    setup = Run(strategies=STRATEGIES, rtt_ms=args.rtt_ms, mbps=args.mbps, nodes=nodes, replay=replay_run,
                max_test=8 if args.quick else None, train=args.train, plan_granule=plan_granule,
                read_size=read_size, celery=not args.embedded)
    by_model: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    mode = ""
    for model in models:
        config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps, capacity=4 * GiB, client_cache=not args.direct_io,
                            cache_model=model)
        by_model[model], mode = run_model(model, shot_dirs, setup,
                                          functools.partial(running_twin, config=config))
    results = by_model[models[0]]
    lines = [f"gateway twin: {args.rtt_ms:g} ms RTT, {args.mbps:g} MB/s; warm: {mode}; {nodes} render nodes"]
    for model, shots in by_model.items():
        for shot, rows in shots.items():
            lines += ["", *table(f"{shot} ({model} cache)", rows)]
    lines += ["", *verdicts(results)]
    print("\n".join(lines))
    settings_granule = read_size or Settings().read_size
    link = {"rtt_ms": args.rtt_ms, "mbps": args.mbps}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    combined = combine(results)
    out.write_text(json.dumps({
        # "strategies" holds the three; the oracle is a ceiling, not a strategy a studio can run
        "link": link, "strategies": {k: v for k, v in combined.items() if k != "oracle"},
        **({"oracle": combined["oracle"]} if "oracle" in combined else {}), "shots": results,
        "cache_model": models[0],
        "models": {m: {"strategies": combine(shots), "shots": shots} for m, shots in by_model.items()},
        "method": {"frame_hit_ratio": "twin granule lookups during replay: hits / (hits + misses + joined)",
                   "frame_wait_s": "sum over the frames' reads of each pread call's duration",
                   "frame_floor_wait_s": f"median frame_wait_s of {FLOOR_REPLAYS} replays after prewarm, all hits: "
                                         "what the replay costs on this machine whatever the WAN",
                   "frame_wan_wait_s": "frame_wait_s - frame_floor_wait_s, clamped at 0: the wait warming can remove",
                   "twin": ("direct I/O: every frame read reaches the twin" if args.direct_io else
                            "client_cache on: the page cache answers re-reads within an open, kernel readahead "
                            "(128 KiB) included in WAN bytes"),
                   "replay": f"one forked process per render node, pace {args.pace:g} (1: recorded gaps "
                             "between a thread's accesses kept, counted from each call's return)",
                   "ideal_s": "twin WAN bytes during the warm phase / link rate",
                   "warm_first_fetch_s": "from the start of the warm to the first origin READ the twin sent",
                   "warm_up": "one stat-only job ran before any measurement: connections of a fresh client and "
                              "worker are not a job's cost",
                   "wan_bytes": "twin WAN bytes over the whole run (warm + frames)",
                   "oracle": "the prewarm warm of a plan made from the replayed frames' own traces (spread 0): "
                             "the ceiling of any prediction at this granule",
                   "warm_meta_hot_s": "prewarm's plan warmed again on a dropped twin after a metadata-only job "
                                      "of it: the warm on a gateway whose attribute cache is hot",
                   "split": TRAIN[args.train],
                   "read_size": settings_granule,
                   "cache_model": "page: the twin fetches the pages a READ asks for, with Linux readahead, as a "
                                  "gateway does; chunk: whole 1 MiB granules (the old model, for comparison). "
                                  "The top-level figures are the first model's; `models` holds each",
                   "first_frame_at": "share of the plan's bytes, in warm order, after which every byte the first "
                                     "replayed frame reads is planned",
                   "shots": {d.name: str(d) for d in shot_dirs},
                   "warm": mode, "nodes": nodes, "quick": args.quick},
    }, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
