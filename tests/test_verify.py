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


def test_timing_splits_first_reads_between_the_hit_and_the_miss_it_measured() -> None:
    """No probes (the plan covers its files whole): the slow first reads are the cold reference."""
    samples = [ByteRange("/a", i * MiB, 4096) for i in range(4)]
    times = [(0.031, 0.0004), (0.0004, 0.0003), (0.045, 0.0004), (0.0006, 0.0005)]
    v = verify.judge_times(samples, times)
    assert v.timings is not None and v.timings.miss_ms == 38.0 and v.timings.threshold_ms is not None
    assert v.cold == [samples[0], samples[2]] and v.undecided is None
    assert v.timings.hit_ms == 0.5 and 0.5 < v.timings.threshold_ms < 38.0


def test_a_fully_cached_warm_reads_as_cached_against_cold_probes_with_its_confidence() -> None:
    """The verdict that churned: every sample a hit, one slowed by a busy host to 4x a hit."""
    samples = [ByteRange("/a", i * MiB, 4096) for i in range(64)]
    times = [(0.0005, 0.0004)] * 63 + [(0.0020, 0.0004)]
    probes = [(0.025, 0.0004)] * 8
    v = verify.judge_times(samples, times, probes)
    assert (v.cached, v.judged, v.cold, v.undecided) == (64, 64, [], None)
    low, high = v.interval_pct or (0, 0)
    assert high == 100.0 and 94.0 < low < 95.0  # 64 of 64: at least 94% cached, with 95% confidence
    assert v.to_json()["confidence_95"] == [94.3, 100.0]


@pytest.mark.parametrize(("times", "probes", "why"), [
    ([(0.0005, 0.0004)] * 16, [], "the plan leaves no range of its files to probe"),
    ([(0.0005, 0.0004)] * 15 + [(0.030, 0.0004)], [], "fewer than 2 reads were slower than a hit"),
    ([(0.0005, 0.0004)] * 16, [(0.0005, 0.0004)] * 8, "the probes outside the plan were cached too"),
    ([(0.0005, 0.0004)] * 8 + [(0.012 + i / 1e3, 0.0004) for i in range(8)], [(0.030, 0.0004)] * 8, "near the"),
])
def test_timing_says_it_cannot_tell_rather_than_guess(times, probes, why) -> None:
    samples = [ByteRange("/a", i * MiB, 4096) for i in range(len(times))]
    v = verify.judge_times(samples, times, probes)
    assert v.undecided and why in v.undecided and v.cached_pct is None and v.judged == 0 and v.cold == []


def test_cold_probes_stay_clear_of_planned_bytes() -> None:
    ranges = [ByteRange("/a", 0, 2 * MiB), ByteRange("/b", 0, 40 * MiB)]
    probes = verify.cold_probes(ranges, {"/a": 32 * MiB, "/b": 40 * MiB}, 100, seed=1)
    assert [(p.path, p.offset // MiB) for p in probes] == [("/a", u) for u in range(10, 32)]
    assert all(p.length == verify.SAMPLE_BYTES for p in probes)
    assert len(verify.cold_probes(ranges, {"/a": 32 * MiB, "/b": 40 * MiB}, 4, seed=1)) == 4
    assert verify.cold_probes(ranges, {}, 4) == []  # sizes unknown: nothing to probe


def test_only_the_reads_are_timed_never_the_open() -> None:
    """An open revalidates attributes (a WAN round trip on a cached file): it must not read as a miss."""
    now = [0.0]
    opened: list[str] = []

    class File:
        def read(self, offset: int, length: int) -> int:
            now[0] += 0.001
            return length

        def close(self) -> None:
            pass

    def open_file(path: str) -> File:
        now[0] += 0.050
        opened.append(path)
        return File()

    got = verify.time_reads([ByteRange("/a", 0, 4096)], open_file, clock=lambda: now[0])
    assert got == [(pytest.approx(0.001), pytest.approx(0.001))] and opened == ["/a"]


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


@pytest.mark.integration
def test_a_fully_warmed_plan_verifies_as_cached_by_timing_alone(
        studio: Studio, gateway_twin: StartTwin, tmp_path: Path) -> None:
    """Ranges of files, as plans are: the probes outside them calibrate what a miss costs here."""
    paths = [studio.file(f"tex/t{i}.tx", 16 * MiB) for i in range(4)]
    plan = studio.plan([(p, 0, 2 * MiB) for p in paths])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    twin = gateway_twin(studio.root, rtt_ms=20, mbps=400)
    settings = Settings(path_map=PathMap((Prefix(PREFIX, (), str(twin.mount)),)), roots=(PREFIX,), in_flight=8)
    assert embedded.run_embedded(plan, settings).state.value == "done"
    out = cli(str(plan_file), "--local", f"{PREFIX}={twin.mount}", "--sample", "16", "--seed", "1", "--json")
    v = json.loads(out.stdout)
    assert out.returncode == 0, (out.stderr, v)
    assert v["method"] == "timing" and v["cached_pct"] == 100.0 and v["cold_probes"] >= verify.MIN_COLD
    assert v["miss_ms"] >= 20 and v["confidence_95"][1] == 100.0


def test_an_unreachable_agent_falls_back_to_timing_and_says_so(studio: Studio, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(studio.whole([studio.file("a.tx", MiB)]).to_json()))
    out = cli(str(plan_file), "--local", f"{PREFIX}={studio.root}", "--agent", "http://127.0.0.1:9", "--json")
    v = json.loads(out.stdout)
    assert v["method"] == "timing" and "judged by timing instead" in v["note"]


def test_bad_sample_count_is_one_line_exit_2(tmp_path: Path) -> None:
    out = cli("nope.json", "--sample", "0")
    assert out.returncode == 2 and "--sample" in out.stderr and "Traceback" not in out.stderr
