"""`prewarm warm` embedded, and what it does with bad and hostile input: one line, exit 2, no read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.services import ROOT, free_port
from tests.fixtures.studio import Studio

MiB = 1 << 20


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(config)] if config else []
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", *pre, "warm", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_embedded_warm_of_a_plan(studio: Studio, tmp_path: Path) -> None:
    a = studio.file("a.tx", 2 * MiB)
    b = studio.file("b.tx", 100_000)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([a, b]).to_json()))
    out = cli(str(plan), "--local", f"/studio/proj={studio.root}", "--json", "--in-flight", "4")
    assert out.returncode == 0, out.stderr
    [report] = json.loads(out.stdout)
    assert report["state"] == "done" and report["counters"]["bytes_done"] == 2 * MiB + 100_000
    assert "done" in out.stderr and "Traceback" not in out.stderr


def test_embedded_partial_warm_exits_1_and_names_the_missing_file(studio: Studio, tmp_path: Path) -> None:
    a = studio.file("a.tx", 1000)
    gone = studio.file("gone.tx", 1000)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([a, gone]).to_json()))
    studio.local(gone).unlink()
    out = cli(str(plan), "--local", f"/studio/proj={studio.root}")
    assert out.returncode == 1
    assert "partial" in out.stderr and "missing: 1 file(s)" in out.stderr and gone in out.stderr


def hostile(tmp_path: Path, ranges: object, name: str = "hostile.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"format": "prewarm.plan/1", "job": "evil", "ranges": ranges}))
    return p


@pytest.mark.parametrize(("ranges", "field"), [
    ([{"path": "/studio/proj/a.tx", "offset": -1, "length": 10}], "ranges[0].offset"),
    ([{"path": "/studio/proj/a.tx", "offset": 0, "length": 0}], "ranges[0].length"),
    ([{"path": "/etc/shadow", "offset": 0, "length": 10}], "ranges[0].path"),
    ([{"path": "/studio/proj/../../etc/shadow", "offset": 0, "length": 10}], "ranges[0].path"),
    ([{"path": "/studio/proj/a.tx", "offset": 0, "length": 10},
      {"path": "/studio/projX/a.tx", "offset": 0, "length": 10}], "ranges[1].path"),
    ([{"path": "studio/proj/a.tx", "offset": 0, "length": 10}], "ranges[0].path"),
    ([{"path": "/studio/proj/a.tx", "offset": 0, "length": 1 << 61}], "ranges"),
    ("not a list", "ranges"),
])
def test_hostile_plans_are_refused_naming_the_field(studio: Studio, tmp_path: Path, ranges: object,
                                                    field: str) -> None:
    studio.file("a.tx", 1000)
    out = cli(str(hostile(tmp_path, ranges)), "--local", f"/studio/proj={studio.root}")
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "hostile.json" in out.stderr and field in out.stderr


def test_not_json_and_missing_files_are_one_line(tmp_path: Path, studio: Studio) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    for target in (bad, tmp_path / "nope.json"):
        out = cli(str(target), "--local", f"/studio/proj={studio.root}")
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and str(target) in out.stderr


def test_no_roots_means_nothing_is_read(tmp_path: Path, studio: Studio) -> None:
    a = studio.file("a.tx", 1000)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([a]).to_json()))
    out = cli(str(plan))
    assert out.returncode == 2 and "roots" in out.stderr


def test_a_hundred_thousand_tiny_ranges_are_handled(studio: Studio, tmp_path: Path) -> None:
    a = studio.file("many.bin", 400_000)
    b = studio.file("other.bin", 400_000)
    ranges = [{"path": p, "offset": i * 4, "length": 1} for i in range(50_000) for p in (a, b)]
    out = cli(str(hostile(tmp_path, ranges)), "--local", f"/studio/proj={studio.root}", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    [report] = json.loads(out.stdout)
    assert report["counters"]["bytes_done"] == 100_000 and report["state"] == "done"


def test_throttle_set_and_show(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}

    def throttle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "prewarm", "throttle", *args, "--redis", redis_url], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)

    assert "not set" in throttle("show", "gw1").stdout
    assert throttle("set", "gw1", "20MB/s").stdout.strip() == "gw1: 20.0 MB/s"
    assert throttle("set", "gw1", "off").stdout.strip() == "gw1: unthrottled"
    bad = throttle("set", "gw1", "fast")
    assert bad.returncode == 2 and "RATE" in bad.stderr


@pytest.mark.parametrize("command", [["status"], ["report", "0123abcd"], ["cancel", "0123abcd"]])
def test_commands_say_at_once_that_redis_is_unreachable(command: list[str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "prewarm", *command, "--redis", dead], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "cannot reach Redis" in r.stderr and "Traceback" not in r.stderr
    # not the ~20 s a worker's client spends riding out a restart (a bound on behaviour, not a benchmark)
    assert time.monotonic() - started < 10


def test_an_embedded_warm_writes_the_same_report_as_prewarm_report(studio: Studio, tmp_path: Path) -> None:
    a = studio.file("a.tx", 2 * MiB)
    gone = studio.file("gone.tx", MiB)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([a, gone]).to_json()))
    os.unlink(studio.local(gone))
    local = f"/studio/proj={studio.root}"
    out = cli(str(plan), "--local", local, "--report", str(tmp_path / "r.json"))
    assert out.returncode == 1, out.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["job"]["state"] == "partial" and data["summary"]["warmed"]["bytes"] == 2 * MiB
    assert {row["path"] for row in data["coverage"]} == {a, gone}
    assert [p["kind"] for p in data["problems"]] == ["missing"]
    page = cli(str(plan), "--local", local, "--report", str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert page.returncode == 1 and 'data-chart="coverage"' in html and "gone.tx" in html
    bad = cli(str(plan), "--local", local, "--report", str(tmp_path / "r.txt"))
    assert bad.returncode == 2 and "--report" in bad.stderr and not (tmp_path / "r.txt").exists()


@pytest.mark.integration
def test_a_warm_no_worker_serves_stops_waiting_and_says_what_to_do(studio: Studio, tmp_path: Path,
                                                                    redis_url: str) -> None:
    """`prewarm warm --redis` on a queue no worker reads: told at once, and the wait is bounded (exit 3)."""
    a = studio.file("a.tx", 100_000)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(studio.whole([a]).to_json()))
    t0 = time.monotonic()
    out = cli(str(plan), "--redis", redis_url, "--gateway", "nobody-here", "--give-up", "2",
              "--local", f"/studio/proj={studio.root}")
    assert out.returncode == 3, out.stderr
    assert "no worker consumes prewarm.nobody-here" in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "no worker is warming prewarm.nobody-here" in last and "prewarm worker --gateway nobody-here" in last
    assert time.monotonic() - t0 < 60
