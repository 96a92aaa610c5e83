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
    .venv/bin/python bench/e2e.py --demo      # shot100, cold against prewarm (embedded, or Celery
                                              # on $PREWARM_REDIS_URL), what `make demo` runs
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from prewarm.errors import ServiceError
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import aggregate, restrict
from prewarm.plan.evaluate import ready_at
from prewarm.plan.framespec import format_frames
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.predict import PredictOptions
from prewarm.plan.records import MetaOp
from prewarm.plan.units import parse_size
from prewarm.site.settings import Settings
from prewarm.state import keys, runner
from prewarm.state.dedupe import forget_gateway
from prewarm.testkit.replay import ReplayResult, group_frames, replay_frames
from prewarm.testkit.samples import build_shot
from prewarm.testkit.services import RedisServer, Worker, start_worker
from prewarm.traces.files import read_traces
from prewarm.twin.control import TwinHandle, fuse_missing, start_twin
from prewarm.twin.gateway import GiB, TwinConfig
from prewarm.warm import embedded

ROOT = Path(__file__).resolve().parents[1]


STUDIO = "/studio/proj"
SHOTS = ("shot100", "shot200")
"""The sample shots under --samples, run when no --shot is given."""
STRATEGIES = ("cold", "naive", "prewarm", "oracle")
NAIVE_THREADS = 8
CAT_BUFFER = 128 * 1024
"""coreutils `cat` reads 128 KiB at a time."""


class Services:
    """A redis-server (unless given a URL) and one Celery worker, both ours, stopped by PID."""

    def __init__(self, work: Path, mount: Path, redis_url: str | None) -> None:
        self.work = work
        self.mount = mount
        self.url = redis_url
        self.server: RedisServer | None = None
        self.worker: Worker | None = None

    def start(self, queue: str) -> str:
        try:
            if self.url is None:
                self.server = RedisServer(self.work)
                self.server.start()
                self.url = self.server.url
            config = self.work / "worker.yaml"
            config.write_text(json.dumps({"path_map": [{"studio": STUDIO, "local": str(self.mount)}]}))
            self.worker = start_worker(config, queue, self.work / "worker.log", f"e2e-{os.getpid()}",
                                       concurrency=2, redis_url=self.url)
            self.worker.wait_ready()
        except ServiceError as exc:
            raise SystemExit(f"{exc} (./scripts/system-deps.sh installs what is missing, or use --embedded)") from exc
        return self.url

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.server is not None:
            self.server.stop()


Warm = Callable[[Plan], None]


def embedded_warm(settings: Settings) -> Warm:
    def warm(plan: Plan) -> None:
        info = embedded.run_embedded(plan, settings)
        if info.state.value != "done":
            raise SystemExit(f"embedded warm ended {info.state.value}: {info.findings[:3]}")
    return warm


def celery_warm(settings: Settings) -> Warm:
    """Submit through the engine as `prewarm warm --redis` does, wait for the job to end."""
    from prewarm.state.celery_app import DEFAULT_URL, CelerySender
    from prewarm.state.client import connect
    from prewarm.state.jobs import WarmJob
    from prewarm.warm.job import JobState

    send = CelerySender(settings).send
    r = connect(settings.redis_url or DEFAULT_URL)

    def warm(plan: Plan) -> None:
        gateways = settings.gateways(plan.gateways)
        for gw in gateways:  # every strategy starts from a dropped twin: nothing is warmed any more
            forget_gateway(r, gw)
        jobs = [runner.submit(r, plan, settings, send, gw) for gw in gateways]
        for job in jobs:
            while True:
                state = job.state()
                if state is not None and state.final:
                    break
                time.sleep(0.01)
            if state is not JobState.DONE:
                info = WarmJob(r, job.id).info()
                raise SystemExit(f"celery warm ended {state}: {info.findings[:3] if info else ''}")
    return warm


def warm_up(warm: Warm) -> None:
    """One tiny job (a stat of the export's root) before anything is measured.

    A farm's client and workers are long-lived: the first job of a fresh process pays
    for Redis connections, script loads and Celery's producer (about 40 ms measured
    here), which no later job pays. The twin's caches are dropped before each
    strategy, so this leaves nothing warm that a strategy could profit from.
    """
    warm(Plan(job="bench-warm-up", frames=(1,), ranges=(), metadata=(MetaOp(Op.STAT, STUDIO),), files={}))


def naive_warm(paths: Sequence[str]) -> None:
    """`xargs -P 8 cat > /dev/null` over every input: 8 threads, each file read whole."""
    todo = list(paths)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop(0)
            fd = os.open(path, os.O_RDONLY)
            try:
                while os.read(fd, CAT_BUFFER):
                    pass
            finally:
                os.close(fd)

    threads = [threading.Thread(target=work) for _ in range(NAIVE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    return int(after[key]) - int(before[key])


FLOOR_REPLAYS = 3

Replay = Callable[[list[list[Access]], Callable[[str], str]], ReplayResult]
"""Frames and the path mapping in, their replay out: nodes, processes and pace fixed once per run."""


def metadata_hot_warm(twin: TwinHandle, warm: Warm, plan: Plan, mbps: float) -> dict[str, float]:
    """The plan's warm on a dropped twin whose attribute cache a metadata-only job already filled."""
    twin.drop_cache()
    warm(replace(plan, job=f"{plan.job}-metadata", ranges=(), files={}))
    twin.reset()
    t0 = time.monotonic()
    warm(plan)
    warm_s = time.monotonic() - t0
    s = twin.stats()
    return {"warm_meta_hot_s": round(warm_s, 3), "ideal_meta_hot_s": round(s["wan_bytes"] / (mbps * 1e6), 3),
            "meta_hot_round_trips": int(s["metadata_round_trips"])}


def run_strategy(twin: TwinHandle, name: str, test: list[list[Access]], to_mount: Callable[[str], str],
                 warm: Callable[[], None] | None, mbps: float, replay_run: Replay) -> dict[str, Any]:
    twin.drop_cache()
    twin.reset()
    t0 = time.monotonic()  # the twin's fetch_window is on this clock
    if warm is not None:
        warm()
    warm_s = time.monotonic() - t0 if warm is not None else 0.0
    s1 = twin.stats()
    window = s1["fetch_window"]
    replay = replay_run(test, to_mount)
    s2 = twin.stats()
    if replay.errors:
        bad = [f.failed for f in replay.frames if f.failed][:1]
        raise SystemExit(f"{name}: {replay.errors} replay errors, e.g. {bad}")
    floor = (statistics.median(replay_run(test, to_mount).read_wait_s for _ in range(FLOOR_REPLAYS))
             if name == "prewarm" else None)
    hits, misses, joined = (_delta(s2, s1, k) for k in ("hits", "misses", "joined"))
    lookups = hits + misses + joined
    return {
        "warm_s": round(warm_s, 3),
        "ideal_s": round(s1["wan_bytes"] / (mbps * 1e6), 3),
        "wan_bytes": int(s2["wan_bytes"]),
        "frame_read_bytes": replay.bytes_read,
        "frame_wait_s": round(replay.read_wait_s, 3),
        "frame_hit_ratio": round(hits / lookups, 4) if lookups else 1.0,
        **({} if floor is None else {"frame_floor_wait_s": round(floor, 3)}),
        **({} if warm is None or window is None else {"warm_first_fetch_s": round(window["first_sent"] - t0, 3)}),
    }


TRAIN = {
    "first-quarter": "plan trained on the first quarter of frames, frames replayed are the rest",
    "stepped": "plan trained on every 4th frame (a farm's stepped check render), frames replayed are the rest",
}


def training_frames(numbers: list[int], split: str) -> list[int]:
    return numbers[::4] if split == "stepped" else numbers[: max(1, len(numbers) // 4)]


def run_shot(shot_dir: Path, origin: Path, twin: TwinHandle, warm: Warm, strategies: Sequence[str],
             mbps: float, replay_run: Replay, max_test: int | None, split: str,
             granule: int | None = None) -> dict[str, dict[str, Any]]:
    shot = shot_dir.name
    manifest = load_manifest(shot_dir / "manifest.yaml")
    at_origin = PathMap.parse([{"studio": STUDIO, "local": str(origin)}], "bench")
    at_mount = PathMap.parse([{"studio": STUDIO, "local": str(twin.mount)}], "bench")
    accesses = [a for a in read_traces([str(shot_dir / "traces")], at_origin)
                if a.path.startswith(STUDIO + "/")]
    frames = group_frames(a for a in accesses if a.frame is not None)
    numbers = [f[0].frame for f in frames if f[0].frame is not None]
    train = training_frames(numbers, split)
    test_frames = [f for f in frames if f[0].frame not in train][:max_test]
    test_numbers = tuple(n for f in test_frames if (n := f[0].frame) is not None)
    traced = aggregate(iter(accesses))
    ts = restrict(traced, train)
    seen = restrict(traced, test_numbers)
    planning = Settings(path_map=at_origin)
    with site_fs(planning) as fs:
        resolved = resolve_inputs(manifest, fs)
        plan = plan_resolved(manifest, resolved, ts, fs, planning, PlanOptions(granule=granule, frames=test_numbers))
        oracle = plan_resolved(manifest, resolved, seen, fs, planning,
                               PlanOptions(granule=granule, frames=test_numbers, predict=PredictOptions(spread=0)))
    ready = {"prewarm": ready_at(plan, traced, test_numbers[0]) if test_numbers else None,
             "oracle": ready_at(oracle, traced, test_numbers[0]) if test_numbers else None}
    inputs = [at_mount.to_local(f.path) for f in resolved.files]
    warms: dict[str, Callable[[], None] | None] = {
        "cold": None, "naive": lambda: naive_warm(inputs), "prewarm": lambda: warm(plan),
        "oracle": lambda: warm(oracle)}
    out = {}
    for name in strategies:
        out[name] = run_strategy(twin, name, test_frames, at_mount.to_local, warms[name], mbps, replay_run)
        if name in ready:
            at = ready[name]
            out[name]["first_frame_at"] = None if at is None else round(at, 3)
            out[name]["plan_bytes"] = (plan if name == "prewarm" else oracle).bytes
        if name == "prewarm" and "oracle" in strategies:
            out[name].update(metadata_hot_warm(twin, warm, plan, mbps))
        print(f"  {shot} {name}: done", file=sys.stderr)
    floor = out["prewarm"]["frame_floor_wait_s"]
    for row in out.values():
        row["frame_floor_wait_s"] = floor
        row["frame_wan_wait_s"] = round(max(0.0, row["frame_wait_s"] - floor), 3)
        row["train_frames"], row["test_frames"] = list(train), list(test_numbers)
    return out


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


def table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [title, f"{'strategy':9} {'warm_s':>7} {'ideal_s':>7} {'util':>5} {'WAN MB':>8} {'frames MB':>9} "
                    f"{'wait_s':>7} {'floor_s':>7} {'wan_wait':>8} {'hit':>6}"]
    for name, r in rows.items():
        util = f"{r['ideal_s'] / r['warm_s']:.2f}" if r["warm_s"] > 0 else "-"
        lines.append(f"{name:9} {r['warm_s']:>7.2f} {r['ideal_s']:>7.2f} {util:>5} {r['wan_bytes'] / 1e6:>8.1f} "
                     f"{r['frame_read_bytes'] / 1e6:>9.1f} {r['frame_wait_s']:>7.2f} {r['frame_floor_wait_s']:>7.2f} "
                     f"{r['frame_wan_wait_s']:>8.2f} {r['frame_hit_ratio']:>6.3f}")
    return lines


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


@contextmanager
def twin_over(origin: Path, work: Path, rtt_ms: float, mbps: float,
              client_cache: bool = True, cache_model: str = "page") -> Iterator[TwinHandle]:
    missing = fuse_missing()
    if missing:
        raise SystemExit(f"the gateway twin needs FUSE: {missing} (./scripts/system-deps.sh installs it)")
    config = TwinConfig(rtt_ms=rtt_ms, mbps=mbps, capacity=4 * GiB, client_cache=client_cache,
                        cache_model=cache_model)
    twin = start_twin(origin, work / "mnt", config,
                      cache_dir=work / "cache", state_dir=work / "state")
    try:
        yield twin
    finally:
        twin.stop()


def run_model(model: str, shot_dirs: list[Path], args: argparse.Namespace, strategies: Sequence[str], nodes: int,
              replay_run: Replay, max_test: int | None, plan_granule: int | None, read_size: int | None,
              env_url: str | None, use_celery: bool) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    """Every shot through one twin of cache model `model`, from cold each time: the rows, and how warms ran."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="prewarm-e2e-") as tmp:
        work = Path(tmp)
        origin = work / "proj"
        for d in shot_dirs:
            print(f"{d.name}: {build_shot(d, origin)}", file=sys.stderr)
        with twin_over(origin, work, args.rtt_ms, args.mbps, client_cache=not args.direct_io,
                       cache_model=model) as twin:
            settings = Settings(path_map=PathMap.parse([{"studio": STUDIO, "local": str(twin.mount)}], "bench"))
            if read_size:
                settings = replace(settings, read_size=read_size)
            services = Services(work, twin.mount, env_url if args.demo else None)
            try:
                if use_celery:
                    url = services.start(queue=keys.queue(settings.queue))
                    warm = celery_warm(replace(settings, redis_url=url))
                    mode = f"Celery worker (pid {services.worker.pid if services.worker else '?'}) on {url}"
                else:
                    warm = embedded_warm(settings)
                    mode = "embedded (in process)"
                print(f"gateway twin ({model} cache) {args.rtt_ms:g} ms RTT, {args.mbps:g} MB/s; warm: {mode}; "
                      f"{nodes} nodes", file=sys.stderr)
                warm_up(warm)
                for d in shot_dirs:
                    results[d.name] = run_shot(d, origin, twin, warm, strategies, args.mbps, replay_run,
                                               max_test, args.train, plan_granule)
            finally:
                services.stop()
    return results, mode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--mbps", type=float, default=50.0)
    ap.add_argument("--nodes", type=int, default=None, help="frames replayed at once (default 8, --quick 4)")
    ap.add_argument("--quick", action="store_true", help="at most 8 test frames per shot, 4 nodes")
    ap.add_argument("--embedded", action="store_true", help="warm in process instead of Celery on Redis")
    ap.add_argument("--demo", action="store_true", help="shot100 only, cold against prewarm")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "e2e.json"))
    ap.add_argument("--samples", default=str(ROOT / "sample_jobs"))
    ap.add_argument("--plan-granule", metavar="SIZE",
                    help="the plans' granule (default: the site's, 4 KiB pages)")
    ap.add_argument("--cache-model", choices=("page", "chunk", "both"), default=None,
                    help="the twin's cache: page (what a gateway fetches), chunk (whole 1 MiB granules, the old "
                         "model, for comparison) or both, one after the other (default both; page with --demo "
                         "or --quick)")
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
    nodes = args.nodes or (4 if args.quick or args.demo else 8)
    replay_run: Replay = functools.partial(replay_frames, nodes=nodes, processes=True, pace=args.pace)
    max_test = 8 if args.quick or args.demo else None
    shot_dirs = [Path(d) for d in args.shot] or [Path(args.samples) / s for s in (("shot100",) if args.demo else SHOTS)]
    for d in shot_dirs:
        for need in ("manifest.yaml", "sizes.json", "traces"):
            if not (d / need).exists():
                raise SystemExit(f"{d}: no {need} (a shot folder holds manifest.yaml, traces/, sizes.json)")
    if len({d.name for d in shot_dirs}) != len(shot_dirs):
        raise SystemExit("--shot: two shot folders with the same name")
    strategies = ("cold", "prewarm") if args.demo else STRATEGIES
    env_url = os.environ.get("PREWARM_REDIS_URL")
    use_celery = (env_url is not None) if args.demo else not args.embedded
    models = [args.cache_model] if args.cache_model not in (None, "both") else \
        (["page"] if args.demo or args.quick or args.cache_model is None and args.shot else ["page", "chunk"])
    plan_granule = parse_size(args.plan_granule, "command line", "--plan-granule") if args.plan_granule else None
    read_size = parse_size(args.read_size, "command line", "--read-size") if args.read_size else None
    by_model: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    mode = ""
    for model in models:
        by_model[model], mode = run_model(model, shot_dirs, args, strategies, nodes, replay_run, max_test,
                                          plan_granule, read_size, env_url, use_celery)
    results = by_model[models[0]]
    lines = [f"gateway twin: {args.rtt_ms:g} ms RTT, {args.mbps:g} MB/s; warm: {mode}; {nodes} render nodes"]
    for model, shots in by_model.items():
        for shot, rows in shots.items():
            lines += ["", *table(f"{shot} ({model} cache)", rows)]
    if not args.demo:
        lines += ["", *verdicts(results)]
    print("\n".join(lines))
    if args.demo:
        c, p = results["shot100"]["cold"], results["shot100"]["prewarm"]
        print(f"\nplanned from the traces of frames {format_frames(p['train_frames'])} only; replayed frames "
              f"{format_frames(p['test_frames'])}, which the plan never saw.\n"
              f"frames waited {c['frame_wait_s']:.2f} s on reads cold, {p['frame_wait_s']:.2f} s after "
              f"a {p['warm_s']:.2f} s warm ({p['frame_hit_ratio']:.0%} of frame reads from cache; "
              f"{p['frame_floor_wait_s']:.2f} s when every read hits: the replay's own floor on this machine)")
        print(DEMO_LEGEND)
        return 0
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
