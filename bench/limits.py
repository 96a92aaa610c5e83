"""Peak memory of `prewarm warm` on the largest plans the limits allow (prewarm/plan/limits.py).

Why: a plan is a few MB of JSON that a worker or a user loads; before issue 11 a plan of
10 million ranges took 4.7 GB. The limits allow 2,000,000 ranges over 200,000 files and
16 TiB of reads; this bench writes such plans over a real tree on local disk, runs the
real command (`python -m prewarm warm PLAN.json --json`, embedded) as a child process and
reads its peak RSS from the kernel (`wait4`'s `ru_maxrss`), so nothing is sampled and
nothing is missed. Rows:

- `ranges`: R ranges of 4 KiB, five per file, over R/5 files (every range a separate read;
  more a file where R/5 would pass the files' limit);
- `bytes`: one range of `--sparse-gib` GiB over a sparse file (the reads' count grows,
  the memory must not);
- `submit`: the largest `ranges` plan submitted to a real Redis (`prewarm warm PLAN
  --redis URL --no-wait`, no worker): the submitter's peak RSS and what Redis then holds
  (`used_memory`), the plan and its batches;
- `baseline`: with `--baseline`, the same plans through another checkout (e.g. main
  before issue 11: `git archive 9ca9654 | tar -x -C /tmp/main-before`), for the ratio.

    .venv/bin/python bench/limits.py [--ranges 10000,100000,1000000] [--sparse-gib 16]
                                     [--baseline /tmp/main-before] [--json bench/out/limits.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from prewarm.plan.limits import MAX_FILES, MAX_PLAN_BYTES, MAX_RANGES

ROOT = Path(__file__).resolve().parents[1]
STUDIO = "/studio/proj"
RANGE = 4096
PER_FILE = 5
PER_DIR = 1000


def tree(root: Path, files: int, per_file: int = PER_FILE) -> list[str]:
    """`files` sparse files of `per_file` x 64 KiB, a thousand per folder; their studio paths."""
    out = []
    size = per_file * 65536
    for i in range(files):
        rel = f"d{i // PER_DIR:04d}/f{i:06d}.bin"
        path = root / rel
        if i % PER_DIR == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(size)
        out.append(f"{STUDIO}/{rel}")
    return out


def write_plan(path: Path, studio_files: list[str], root: Path, per_file: int, length: int) -> int:
    """A plan JSON written as a stream (it is itself hundreds of MB at the limits); its range count."""
    n = 0
    with open(path, "w") as fh:
        fh.write('{"format": "prewarm.plan/1", "job": "limits", "frames": [1], "granule": 1048576, "ranges": [')
        for p in studio_files:
            for k in range(per_file):
                fh.write(("," if n else "") + json.dumps({"path": p, "offset": k * 65536, "length": length,
                                                          "frame": 1, "frames": 1, "reason": "trace"}))
                n += 1
        fh.write('], "files": {')
        for i, p in enumerate(studio_files):
            st = os.stat(root / os.path.relpath(p, STUDIO))
            fh.write(("," if i else "") + json.dumps(p) + f': {{"size": {st.st_size}, "mtime": {st.st_mtime!r}}}')
        fh.write('}, "metadata": []}\n')
    return n


def run_warm(python: str, cwd: Path, plan: Path, config: Path, redis_url: str | None = None) -> dict[str, Any]:
    """The real command in a child process: its report and its time (`measure` adds its peak RSS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    env["PYTHONPATH"] = str(cwd)
    t0 = time.monotonic()
    more = ["--redis", redis_url, "--no-wait"] if redis_url else ["--json"]
    proc = subprocess.Popen([python, "-m", "prewarm", "--config", str(config), "warm", str(plan), *more],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    elapsed = time.monotonic() - t0
    report = json.loads(out)[0] if not redis_url and proc.returncode in (0, 1) and out.strip() else None
    return {"returncode": proc.returncode, "seconds": round(elapsed, 1), "report": report,
            "stderr": err.decode(errors="replace")[-400:]}


def measure(python: str, cwd: Path, plan: Path, config: Path, redis_url: str | None = None) -> dict[str, Any]:
    """`run_warm` in a fresh child of its own, whose peak RSS the kernel reports as this child's maximum."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child runs the warm and reports; its own children's peak is its RUSAGE_CHILDREN
        os.close(r)
        import resource

        result = run_warm(python, cwd, plan, config, redis_url)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return dict(json.loads(b"".join(chunks)))


def submitted(python: str, cwd: Path, plan: Path, config: Path, folder: Path) -> dict[str, Any]:
    """`measure` of a submission to a Redis of its own, and that Redis's memory afterwards."""
    from prewarm.testkit.services import RedisServer

    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        res = measure(python, cwd, plan, config, server.url)
        import redis

        r = redis.Redis.from_url(server.url)
        res["redis_used_mb"] = round(int(r.info("memory")["used_memory"]) / 1e6, 1)
        r.close()
    finally:
        server.stop()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranges", default=f"10000,100000,{MAX_RANGES}", help="range counts, comma-separated")
    ap.add_argument("--sparse-gib", type=int, default=16, help="size of the one-range sparse file row")
    ap.add_argument("--baseline", metavar="CHECKOUT", help="another checkout to run the ranges rows through")
    ap.add_argument("--no-submit", dest="submit", action="store_false", help="skip the Redis submission row")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "limits.json"))
    args = ap.parse_args()
    counts = [int(x) for x in args.ranges.split(",")]
    work = Path(tempfile.mkdtemp(prefix="prewarm-limits-"))
    rows: list[dict[str, Any]] = []
    try:
        root = work / "proj"
        root.mkdir()
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({"path_map": [{"studio": STUDIO, "local": str(root)}],
                                          "roots": [STUDIO], "in_flight": 16}))
        most = max(PER_FILE, -(-max(counts) // MAX_FILES))  # ranges a file in the largest plan
        files = tree(root, min(MAX_FILES, max(counts) // PER_FILE), most)
        checkouts = [("prewarm", ROOT)] + ([("baseline", Path(args.baseline))] if args.baseline else [])
        for n in counts:
            plan = work / f"plan-{n}.json"
            per = max(PER_FILE, -(-n // MAX_FILES))  # more ranges a file once every file allowed is used
            made = write_plan(plan, files[:-(-n // per)], root, per, RANGE)
            for name, cwd in checkouts:
                res = measure(sys.executable, cwd, plan, config)
                rows.append(_row(name, "ranges", made, -(-n // per), made * RANGE, plan, res))
                print(_line(rows[-1]), file=sys.stderr)
                if n == max(counts) and args.submit:
                    res = submitted(sys.executable, cwd, plan, config, work / f"redis-{name}")
                    rows.append(_row(name, "submit", made, -(-n // per), made * RANGE, plan, res))
                    print(_line(rows[-1]), file=sys.stderr)
            plan.unlink()
        big = root / "sparse.bin"
        with open(big, "wb") as fh:
            fh.truncate(args.sparse_gib << 30)
        plan = work / "plan-sparse.json"
        write_plan(plan, [f"{STUDIO}/sparse.bin"], root, 1, args.sparse_gib << 30)
        res = measure(sys.executable, ROOT, plan, config)
        rows.append(_row("prewarm", "bytes", 1, 1, args.sparse_gib << 30, plan, res))
        print(_line(rows[-1]), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(_table(rows))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"limits": {"max_ranges": MAX_RANGES, "max_files": MAX_FILES,
                                          "max_plan_bytes": MAX_PLAN_BYTES}, "rows": rows}, indent=1))
    return 0


def _row(code: str, kind: str, ranges: int, files: int, nbytes: int, plan: Path, res: dict[str, Any]) -> dict[str, Any]:
    report = res.get("report") or {}
    counters = report.get("counters", {})
    return {"code": code, "kind": kind, "ranges": ranges, "files": files, "bytes": nbytes,
            "plan_mb": round(plan.stat().st_size / 1e6, 1), "peak_rss_mb": res["peak_rss_mb"],
            "seconds": res["seconds"], "returncode": res["returncode"], "state": report.get("state"),
            "bytes_done": counters.get("bytes_done"), "reads": counters.get("reads"),
            "redis_used_mb": res.get("redis_used_mb"),
            "stderr": "" if res["returncode"] in (0, 1) else res["stderr"]}


def _line(r: dict[str, Any]) -> str:
    return (f"{r['code']:<9} {r['kind']:<7} {r['ranges']:>9,} ranges {r['files']:>8,} files "
            f"{r['bytes'] / 2**30:>8.2f} GiB  plan {r['plan_mb']:>7.1f} MB  peak RSS {r['peak_rss_mb']:>7.1f} MB  "
            f"{r['seconds']:>6.1f} s  exit {r['returncode']} {r['state']} reads={r['reads']}"
            + (f" redis={r['redis_used_mb']} MB" if r.get("redis_used_mb") is not None else ""))


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| code | plan | ranges | files | GiB | plan JSON MB | peak RSS MB | s | state | Redis MB |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['code']} | {r['kind']} | {r['ranges']:,} | {r['files']:,} | {r['bytes'] / 2**30:.2f} | "
            f"{r['plan_mb']} | {r['peak_rss_mb']} | {r['seconds']} | {r['state']} | {r.get('redis_used_mb') or '-'} |"
            for r in rows]
    return "\n".join([head, *body])


if __name__ == "__main__":
    sys.exit(main())
