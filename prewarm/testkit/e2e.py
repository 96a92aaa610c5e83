"""End to end through the gateway twin, what the demo (`prewarm demo`) and the benchmark
(`bench/e2e.py`) share: a shot's plan from some frames' traces, its warm (a Celery worker on
Redis, or in process), and the other frames replayed through the mount after each strategy.

The twin is passed in (`Gateway`, started by the caller through `prewarm.twin.control`):
testkit and twin are sibling layers, and the caller decides the link and the cache model.
Failures of the services it starts are `ServiceError`s, so the command prints one line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from prewarm.errors import InputError, ServiceError
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import aggregate, restrict
from prewarm.plan.evaluate import ready_at
from prewarm.plan.inputs import resolve_inputs
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.records import MetaOp
from prewarm.site.settings import Settings
from prewarm.state import keys, runner
from prewarm.state.dedupe import forget_gateway
from prewarm.testkit.replay import ReplayResult, group_frames
from prewarm.testkit.samples import build_shot
from prewarm.testkit.services import RedisServer, Worker, start_worker
from prewarm.traces.files import read_traces
from prewarm.warm import embedded
from prewarm.warm.job import JobState

STUDIO = "/studio/proj"
STRATEGIES = ("cold", "naive", "prewarm", "oracle")
NAIVE_THREADS = 8
CAT_BUFFER = 128 * 1024
"""coreutils `cat` reads 128 KiB at a time."""


class Gateway(Protocol):
    """What a run needs of the twin (`prewarm.twin.control.TwinHandle` is one)."""

    mount: Path

    def stats(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def drop_cache(self) -> None: ...


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
            raise ServiceError(f"{exc} (./scripts/system-deps.sh installs what is missing, "
                               "or warm in process)") from exc
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
        if info.state is not JobState.DONE:
            raise ServiceError(f"embedded warm ended {info.state.value}: {info.findings[:3]}")
    return warm


def celery_warm(settings: Settings) -> Warm:
    """Submit through the engine as `prewarm warm --redis` does, wait for the job to end."""
    from prewarm.state.celery_app import DEFAULT_URL, CelerySender
    from prewarm.state.client import connect
    from prewarm.state.jobs import WarmJob

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
                raise ServiceError(f"celery warm ended {state}: {info.findings[:3] if info else ''}")
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


def metadata_hot_warm(twin: Gateway, warm: Warm, plan: Plan, mbps: float) -> dict[str, float]:
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


def run_strategy(twin: Gateway, name: str, test: list[list[Access]], to_mount: Callable[[str], str],
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
        raise ServiceError(f"{name}: {replay.errors} replay errors, e.g. {bad}")
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


def run_shot(shot_dir: Path, origin: Path, twin: Gateway, warm: Warm, strategies: Sequence[str],
             mbps: float, replay_run: Replay, max_test: int | None, split: str,
             granule: int | None = None) -> dict[str, dict[str, Any]]:
    shot = shot_dir.name
    manifest = load_manifest(shot_dir / "manifest.yaml")
    at_origin = PathMap.parse([{"studio": STUDIO, "local": str(origin)}], "e2e")
    at_mount = PathMap.parse([{"studio": STUDIO, "local": str(twin.mount)}], "e2e")
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


def table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [title, f"{'strategy':9} {'warm_s':>7} {'ideal_s':>7} {'util':>5} {'WAN MB':>8} {'frames MB':>9} "
                    f"{'wait_s':>7} {'floor_s':>7} {'wan_wait':>8} {'hit':>6}"]
    for name, r in rows.items():
        util = f"{r['ideal_s'] / r['warm_s']:.2f}" if r["warm_s"] > 0 else "-"
        lines.append(f"{name:9} {r['warm_s']:>7.2f} {r['ideal_s']:>7.2f} {util:>5} {r['wan_bytes'] / 1e6:>8.1f} "
                     f"{r['frame_read_bytes'] / 1e6:>9.1f} {r['frame_wait_s']:>7.2f} {r['frame_floor_wait_s']:>7.2f} "
                     f"{r['frame_wan_wait_s']:>8.2f} {r['frame_hit_ratio']:>6.3f}")
    return lines




def check_shots(shot_dirs: Sequence[Path]) -> None:
    """Each a shot folder, no two of one name (results are keyed by it)."""
    for d in shot_dirs:
        for need in ("manifest.yaml", "sizes.json", "traces"):
            if not (d / need).exists():
                raise InputError(str(d), f"no {need} (a shot folder holds manifest.yaml, traces/, sizes.json)")
    if len({d.name for d in shot_dirs}) != len(shot_dirs):
        raise InputError("shots", "two shot folders with the same name")


@dataclass(frozen=True)
class Run:
    """How one run goes: which strategies, the link (for the rate and the heading), replay and warm."""

    strategies: Sequence[str]
    rtt_ms: float
    mbps: float
    nodes: int
    replay: Replay
    """`prewarm.testkit.replay.replay_frames` with nodes, processes and pace fixed."""
    max_test: int | None = None
    train: str = "first-quarter"
    plan_granule: int | None = None
    read_size: int | None = None
    celery: bool = False
    """Warm through a Celery worker (on `redis_url`, or a redis-server of our own) instead of in process."""
    redis_url: str | None = None


OpenTwin = Callable[[Path, Path], AbstractContextManager[Gateway]]
"""(origin, work folder) -> a running twin of origin, stopped on exit."""


def run_model(model: str, shot_dirs: list[Path], run: Run, open_twin: OpenTwin,
              ) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    """Every shot through one twin (of cache model `model`), from cold each time: the rows, and how warms ran."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="prewarm-e2e-") as tmp:
        work = Path(tmp)
        origin = work / "proj"
        for d in shot_dirs:
            print(f"{d.name}: {build_shot(d, origin)}", file=sys.stderr)
        with open_twin(origin, work) as twin:
            settings = Settings(path_map=PathMap.parse([{"studio": STUDIO, "local": str(twin.mount)}], "e2e"))
            if run.read_size:
                settings = replace(settings, read_size=run.read_size)
            services = Services(work, twin.mount, run.redis_url)
            try:
                if run.celery:
                    url = services.start(queue=keys.queue(settings.queue))
                    warm = celery_warm(replace(settings, redis_url=url))
                    mode = f"Celery worker (pid {services.worker.pid if services.worker else '?'}) on {url}"
                else:
                    warm = embedded_warm(settings)
                    mode = "embedded (in process)"
                print(f"gateway twin ({model} cache) {run.rtt_ms:g} ms RTT, {run.mbps:g} MB/s; warm: {mode}; "
                      f"{run.nodes} nodes", file=sys.stderr)
                warm_up(warm)
                for d in shot_dirs:
                    results[d.name] = run_shot(d, origin, twin, warm, run.strategies, run.mbps, run.replay,
                                               run.max_test, run.train, run.plan_granule)
            finally:
                services.stop()
    return results, mode
