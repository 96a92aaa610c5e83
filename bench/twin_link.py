"""Throughput through the gateway twin at 30 ms / 50 MB/s: cold with 1-32 readers, then hits.

The `small-hit` rows are the path a renderer's thousands of 4 KiB reads take once
everything is cached (direct I/O, every read a FUSE round trip into the twin): reads
per second and the mean duration of one read call, which is the twin's own floor.

The `tiles` rows are what granularity costs: random 37 KB tile reads, cold, with
WAN bytes against bytes read (`wan_per_byte`); the `seq` row is one reader going
through files in 128 KiB reads, which Linux readahead turns into large READs ahead.

Why: a warmer's design rests on "one reader gets a fraction of the link, many fill
it" (test-bench.md: a prototype gave 20 MB/s with 1 reader, 49 MB/s with 16). This
measures the twin the tests and benchmarks use, so its numbers can be trusted. Every
row runs the page model (the default: what a gateway fetches); the cold-16 and tiles
rows run once more on the chunk model (1 MiB granules), for comparison.

    .venv/bin/python bench/twin_link.py [--mib-per-run 48] [--rtt-ms 30] [--mbps 50]

Prints a table and writes bench/out/twin_link.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prewarm.twin.control import TwinHandle, start_twin
from prewarm.twin.gateway import TwinConfig
from prewarm.twin.link import MB

MiB = 1024 * 1024


def read_all(mount: Path, names: list[str], readers: int) -> float:
    """Read each 1 MiB chunk of `names` once with `readers` threads pulling from one queue; return seconds."""
    jobs = [(n, off) for n in names for off in range(0, (mount / n).stat().st_size, MiB)]
    lock = threading.Lock()

    def work() -> None:
        fds: dict[str, int] = {}
        while True:
            with lock:
                if not jobs:
                    break
                name, off = jobs.pop()
            fd = fds.get(name)
            if fd is None:
                fd = fds[name] = os.open(mount / name, os.O_RDONLY)
            os.pread(fd, MiB, off)
        for fd in fds.values():
            os.close(fd)

    return _timed(work, readers)


def _timed(work: Callable[[], None], readers: int) -> float:
    """Seconds for `readers` threads each running `work` to finish."""
    threads = [threading.Thread(target=work) for _ in range(readers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def row(twin: TwinHandle, model: str, path: str, readers: int, secs: float) -> dict[str, Any]:
    """One row of the table: a run of `secs` against the twin's counters since its last reset."""
    s = quiet(twin)
    return {"model": model, "path": path, "readers": readers, "bytes": s["bytes_served"], "seconds": secs,
            "mb_per_s": s["bytes_served"] / secs / MB, "wan_bytes": s["wan_bytes"],
            "wan_per_byte": s["wan_bytes"] / max(s["bytes_served"], 1), "readahead_bytes": s["readahead_bytes"],
            "misses": s["misses"], "peak_reads_in_flight": s["peak_reads_in_flight"], "reads": s["reads"]}


def quiet(twin: TwinHandle) -> dict[str, Any]:
    """The twin's counters once readahead still on the link has landed."""
    while (s := twin.stats())["fetches_in_flight"]:
        time.sleep(0.01)
    return s


TILE = 37_000
TILES = 400
"""Random 37 KB tile reads per tiles run: a texture's sparse reads, as the traces show them."""


def tiles(mount: Path, names: list[str], readers: int, seed: int = 7) -> float:
    """`TILES` 37 KB reads at random page-aligned offsets (never 0), O_DIRECT as a render-side worker reads."""
    size = (mount / names[0]).stat().st_size
    rng = random.Random(seed)
    jobs = [(rng.choice(names), rng.randrange(1, (size - TILE) // 4096) * 4096) for _ in range(TILES)]
    lock = threading.Lock()
    buf_len = 40 * 1024

    def work() -> None:
        import mmap

        buf = mmap.mmap(-1, buf_len)
        fds: dict[str, int] = {}
        while True:
            with lock:
                if not jobs:
                    break
                name, off = jobs.pop()
            fd = fds.get(name)
            if fd is None:
                fd = fds[name] = os.open(mount / name, os.O_RDONLY | os.O_DIRECT)
            os.preadv(fd, [memoryview(buf)[:TILE]], off)
        for fd in fds.values():
            os.close(fd)

    return _timed(work, readers)


def sequential(mount: Path, names: list[str]) -> float:
    """One reader through every file in 128 KiB reads, as a renderer streams a cache file."""
    t0 = time.perf_counter()
    for name in names:
        fd = os.open(mount / name, os.O_RDONLY)
        try:
            off = 0
            while chunk := os.pread(fd, 128 * 1024, off):
                off += len(chunk)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


SMALL = 4096
SMALL_READS = 4000
"""Per reader: enough calls to average over, few enough to stay quick on 2 shared cores."""


def small_hits(mount: Path, names: list[str], readers: int) -> tuple[float, float]:
    """`SMALL_READS` 4 KiB preads per reader at scattered cached offsets; return (seconds, mean call seconds)."""
    size = (mount / names[0]).stat().st_size
    waits: list[float] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        fds = [os.open(mount / n, os.O_RDONLY) for n in names]
        spent = 0.0
        try:
            for i in range(SMALL_READS):
                fd = fds[(seed + i) % len(fds)]
                offset = ((seed * 7919 + i * 104729) * SMALL) % (size - SMALL)
                t0 = time.perf_counter()
                os.pread(fd, SMALL, offset)
                spent += time.perf_counter() - t0
        finally:
            for fd in fds:
                os.close(fd)
        with lock:
            waits.append(spent)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(readers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(waits) / (readers * SMALL_READS)


def cold(twin: TwinHandle, mount: Path, names: list[str]) -> None:
    """Empty the cache, warm the metadata (measure the data path only), zero the counters."""
    twin.drop_cache()
    for name in names:
        os.stat(mount / name)
    twin.reset()


def run_model(model: str, origin: Path, tmp: Path, names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The page model's every row; the chunk model's cold-16 and tiles rows only, for comparison."""
    mount = tmp / f"mnt-{model}"
    config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps, capacity=4 * args.mib_per_run * MiB, cache_model=model)
    twin = start_twin(origin, mount, config, cache_dir=tmp / f"cache-{model}", state_dir=tmp / "state")
    rows = []
    try:
        for readers in (1, 4, 16, 32) if model == "page" else (16,):
            cold(twin, mount, names)
            rows.append(row(twin, model, "cold", readers, read_all(mount, names, readers)))
        if model == "page":
            for readers in (1, 16):
                twin.reset()
                rows.append(row(twin, model, "hit", readers, read_all(mount, names, readers)))
            for readers in (1, 16):
                twin.reset()
                secs, per_call = small_hits(mount, names, readers)
                r = row(twin, model, "small-hit", readers, secs)
                rows.append({**r, "reads_per_s": r["reads"] / secs, "call_us": per_call * 1e6})
            cold(twin, mount, names)
            rows.append(row(twin, model, "seq", 1, sequential(mount, names)))
        cold(twin, mount, names)
        rows.append(row(twin, model, "tiles", 16, tiles(mount, names, 16)))
    finally:
        twin.stop()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib-per-run", type=int, default=48)
    p.add_argument("--rtt-ms", type=float, default=30.0)
    p.add_argument("--mbps", type=float, default=50.0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "twin_link.json")
    args = p.parse_args()
    n_files = 8
    per_file = args.mib_per_run // n_files
    rows = []
    with tempfile.TemporaryDirectory(prefix="twin-bench-") as tmp:
        origin = Path(tmp) / "origin"
        origin.mkdir()
        names = [f"f{i}.bin" for i in range(n_files)]
        for name in names:
            (origin / name).write_bytes(os.urandom(per_file * MiB))
        for model in ("page", "chunk"):
            rows += run_model(model, origin, Path(tmp), names, args)
    print(f"gateway twin at {args.rtt_ms:g} ms, {args.mbps:g} MB/s, {args.mib_per_run} MiB per run, "
          f"1 MiB reads (tiles: {TILES} x 37 KB, seq: 128 KiB reads)")
    print(f"{'model':<6} {'path':<9} {'readers':>7} {'MB/s':>8} {'seconds':>8} {'WAN MB':>8} {'WAN/B':>6} "
          f"{'misses':>6} {'peak':>5}")
    for r in rows:
        extra = f"  {r['reads_per_s']:>7.0f} reads/s, {r['call_us']:.0f} us a call" if "call_us" in r else ""
        print(f"{r['model']:<6} {r['path']:<9} {r['readers']:>7} {r['mb_per_s']:>8.1f} {r['seconds']:>8.2f} "
              f"{r['wan_bytes'] / MB:>8.1f} {r['wan_per_byte']:>6.2f} {r['misses']:>6} "
              f"{r['peak_reads_in_flight']:>5}{extra}")
    tile_wan = {r["model"]: r["wan_bytes"] for r in rows if r["path"] == "tiles"}
    print(f"tiles: the chunk model fetches {tile_wan['chunk'] / max(tile_wan['page'], 1):.1f}x "
          f"what the page model (a real gateway) fetches")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rtt_ms": args.rtt_ms, "mbps": args.mbps, "mib_per_run": args.mib_per_run,
                                    "read_size": MiB, "cpus": os.cpu_count(), "default_model": "page",
                                    "tiles_chunk_over_page": tile_wan["chunk"] / max(tile_wan["page"], 1),
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
