"""`prewarm verify` against the real gateway twin: half a plan warmed reads as about half cached,
by the agent's counters and by timed direct reads; `--rewarm` makes it whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.ranges import ByteRange
from prewarm.report import verify
from prewarm.site.settings import Settings
from prewarm.warm import embedded
from tests.fixtures.services import ROOT
from tests.fixtures.studio import PREFIX, Studio
from tests.fixtures.twin import StartTwin

MiB = 1 << 20


def test_samples_are_spread_over_the_bytes_one_per_granule() -> None:
    ranges = [ByteRange("/a", 0, 4 * MiB), ByteRange("/b", MiB, 4 * MiB)]
    got = verify.choose(ranges, 8, MiB, seed=1)
    assert [(s.path, s.offset // MiB) for s in got] == [("/a", 0), ("/a", 1), ("/a", 2), ("/a", 3),
                                                          ("/b", 1), ("/b", 2), ("/b", 3), ("/b", 4)]
    assert all(s.length == verify.SAMPLE_BYTES and s.offset % verify.ALIGN == 0 for s in got)
    assert len(verify.choose(ranges, 100, MiB, seed=1)) == 8  # never two in one granule


def test_counters_judge_hits_misses_and_reads_that_never_reached_the_gateway() -> None:
    samples = [ByteRange("/a", i * MiB, 4096) for i in range(4)]
    state = {"normal": 0, "server": 0}
    outcome = iter(["hit", "miss", "local", "hit"])

    def read(_: ByteRange) -> None:
        kind = next(outcome)
        if kind != "local":
            state["normal"] += 4096
        if kind == "miss":
            state["server"] += MiB

    v = verify.by_counters(samples, read, lambda: (state["normal"], state["server"]))
    assert (v.cached, v.unreached, v.judged, v.cold) == (2, 1, 3, [samples[1]])
    assert v.cached_pct == pytest.approx(66.67, abs=0.01)


def test_timing_splits_first_reads_at_a_multiple_of_the_measured_hit_latency() -> None:
    samples = [ByteRange("/a", i * MiB, 4096) for i in range(4)]
    v = verify.judge_times(samples, [0.031, 0.0004, 0.045, 0.0006], [0.0004, 0.0005, 0.0003, 0.0005])
    assert v.cold == [samples[0], samples[2]] and v.detail["miss_ms"] == 38.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", "verify", *args], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_half_a_warm_verifies_as_half_cached_by_counters_and_by_timing(
        studio: Studio, gateway_twin: StartTwin, tmp_path: Path) -> None:
    paths = [studio.file(f"tex/t{i}.tx", 2 * MiB) for i in range(8)]
    plan = studio.whole(paths)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    twin = gateway_twin(studio.root, rtt_ms=20, mbps=400)
    local = ("--local", f"{PREFIX}={twin.mount}")
    settings = Settings(path_map=PathMap((Prefix(PREFIX, (), str(twin.mount)),)), roots=(PREFIX,), in_flight=8)
    half = replace(plan, ranges=plan.ranges[:4])
    assert embedded.run_embedded(half, settings).state.value == "done"

    out = cli(str(plan_file), *local, "--agent", twin.url, "--sample", "16", "--seed", "3", "--json")
    assert out.returncode == 1, out.stderr  # not all cached
    v = json.loads(out.stdout)
    assert v["method"] == "counters" and v["samples"] == 16 and v["unreached"] == 0
    assert v["cached_pct"] == 50.0
    assert {c[0] for c in v["cold"]} == set(paths[4:])

    # the probes warmed what they touched; drop the cache, warm half again, judge by timing alone
    twin.drop_cache()
    assert embedded.run_embedded(half, settings).state.value == "done"
    out = cli(str(plan_file), *local, "--sample", "16", "--seed", "3", "--json", "--rewarm")
    v = json.loads(out.stdout)
    # a hit slowed past the threshold by a busy machine reads as cold: allow two of sixteen
    assert v["method"] == "timing" and 37.5 <= v["cached_pct"] <= 50.0, v
    assert v["miss_ms"] >= 20 > v["threshold_ms"]
    assert {c[0] for c in v["cold"]} >= set(paths[4:])
    assert v["rewarmed"]["files"] >= 4 and v["rewarmed"]["state"] == "done" and out.returncode == 0

    out = cli(str(plan_file), *local, "--agent", twin.url, "--sample", "16", "--json")
    assert json.loads(out.stdout)["cached_pct"] == 100.0 and out.returncode == 0


def test_an_unreachable_agent_falls_back_to_timing_and_says_so(studio: Studio, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(studio.whole([studio.file("a.tx", MiB)]).to_json()))
    out = cli(str(plan_file), "--local", f"{PREFIX}={studio.root}", "--agent", "http://127.0.0.1:9", "--json")
    v = json.loads(out.stdout)
    assert v["method"] == "timing" and "judged by timing instead" in v["note"]


def test_bad_sample_count_is_one_line_exit_2(tmp_path: Path) -> None:
    out = cli("nope.json", "--sample", "0")
    assert out.returncode == 2 and "--sample" in out.stderr and "Traceback" not in out.stderr
