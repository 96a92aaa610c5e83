"""Throughput through the gateway twin at 30 ms / 50 MB/s: cold with 1-32 readers, then hits.

The `small-hit` rows are the path a renderer's thousands of 4 KiB reads take once
everything is cached (direct I/O, every read a FUSE round trip into the twin): reads
per second and the mean duration of one read call, which is the twin's own floor.

Why: a warmer's design rests on "one reader gets a fraction of the link, many fill
it" (test-bench.md: a prototype gave 20 MB/s with 1 reader, 49 MB/s with 16). This
measures the twin the tests and benchmarks use, so its numbers can be trusted.

    .venv/bin/python bench/twin_link.py [--mib-per-run 48] [--rtt-ms 30] [--mbps 50]

Prints a table and writes bench/out/twin_link.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
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

    threads = [threading.Thread(target=work) for _ in range(readers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def row(twin: TwinHandle, path: str, readers: int, secs: float) -> dict[str, Any]:
    """One row of the table: a run of `secs` against the twin's counters since its last reset."""
    s = twin.stats()
    return {"path": path, "readers": readers, "bytes": s["bytes_served"], "seconds": secs,
            "mb_per_s": s["bytes_served"] / secs / MB, "wan_bytes": s["wan_bytes"],
            "misses": s["misses"], "peak_reads_in_flight": s["peak_reads_in_flight"], "reads": s["reads"]}


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
        origin, mount = Path(tmp) / "origin", Path(tmp) / "mnt"
        origin.mkdir()
        names = [f"f{i}.bin" for i in range(n_files)]
        for name in names:
            (origin / name).write_bytes(os.urandom(per_file * MiB))
        config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps, capacity=4 * args.mib_per_run * MiB)
        twin = start_twin(origin, mount, config, cache_dir=Path(tmp) / "cache", state_dir=Path(tmp) / "state")
        try:
            for readers in (1, 4, 16, 32):
                twin.drop_cache()
                for name in names:          # metadata warm: measure the data path only
                    os.stat(mount / name)
                twin.reset()
                rows.append(row(twin, "cold", readers, read_all(mount, names, readers)))
            for readers in (1, 16):
                twin.reset()
                rows.append(row(twin, "hit", readers, read_all(mount, names, readers)))
            for readers in (1, 16):
                twin.reset()
                secs, per_call = small_hits(mount, names, readers)
                r = row(twin, "small-hit", readers, secs)
                rows.append({**r, "reads_per_s": r["reads"] / secs, "call_us": per_call * 1e6})
        finally:
            twin.stop()
    print(f"gateway twin at {args.rtt_ms:g} ms, {args.mbps:g} MB/s, {args.mib_per_run} MiB per run, 1 MiB reads")
    print(f"{'path':<9} {'readers':>7} {'MB/s':>8} {'seconds':>8} {'WAN MB':>8} {'misses':>6} {'peak':>5}")
    for r in rows:
        extra = f"  {r['reads_per_s']:>7.0f} reads/s, {r['call_us']:.0f} us a call" if "call_us" in r else ""
        print(f"{r['path']:<9} {r['readers']:>7} {r['mb_per_s']:>8.1f} {r['seconds']:>8.2f} "
              f"{r['wan_bytes'] / MB:>8.1f} {r['misses']:>6} {r['peak_reads_in_flight']:>5}{extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rtt_ms": args.rtt_ms, "mbps": args.mbps, "mib_per_run": args.mib_per_run,
                                    "read_size": MiB, "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
