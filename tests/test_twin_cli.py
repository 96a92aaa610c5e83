"""`prewarm twin start|stats|stop` as a user runs them, and recovery from a SIGKILLed twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.site.mounts import mount_of
from prewarm.twin.control import (
    fuse_missing,
    is_mounted,
    is_stale,
    process_alive,
    stop_twin,
)

ROOT = Path(__file__).resolve().parents[1]
Setup = tuple[Path, Path, Path]
"""origin, mountpoint, state dir"""


def prewarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prewarm", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while process_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still running"
        time.sleep(0.05)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    missing = fuse_missing()
    if missing:
        pytest.fail(f"the gateway twin needs FUSE: {missing}")
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "shot.abc").write_bytes(os.urandom(300_000))
    mount, state = tmp_path / "mnt", tmp_path / "state"
    yield origin, mount, state
    stop_twin(mount, state_dir=state)


@pytest.mark.integration
def test_start_stats_stop(setup: Setup) -> None:
    origin, mount, state = setup
    res = prewarm("twin", "start", str(origin), str(mount), "--rtt-ms", "2", "--mbps", "0", "--granule", "64KiB",
                  "--capacity", "1MiB", "--attr-ttl", "60", "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    started = json.loads(res.stdout)
    assert os.path.ismount(mount)
    assert (state / next(p.name for p in state.glob("*.pid"))).read_text().strip() == str(started["pid"])
    assert (mount / "shot.abc").read_bytes() == (origin / "shot.abc").read_bytes()

    res = prewarm("twin", "stats", str(mount), "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["wan_bytes"] == 300_000 and stats["config"]["granule"] == 64 * 1024
    res = prewarm("twin", "stats", started["url"], "--mountstats")
    assert json.loads(res.stdout)["mounts"][0]["stats"]["bytes"]["serverRead"] == 300_000

    res = prewarm("twin", "start", str(origin), str(mount), "--state-dir", str(state))
    assert res.returncode != 0 and "already serves" in res.stderr

    res = prewarm("twin", "stop", str(mount), "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    assert not is_mounted(mount)
    wait_dead(started["pid"])
    assert not list(state.glob("*.pid"))


@pytest.mark.integration
def test_bad_size_is_one_line_not_a_traceback(setup: Setup) -> None:
    origin, mount, state = setup
    res = prewarm("twin", "start", str(origin), str(mount), "--granule", "lots", "--state-dir", str(state))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "lots" in res.stderr


@pytest.mark.integration
def test_a_killed_twin_leaves_a_stale_mount_that_the_next_start_cleans(setup: Setup) -> None:
    origin, mount, state = setup
    res = prewarm("twin", "start", str(origin), str(mount), "--rtt-ms", "1", "--state-dir", str(state))
    pid = json.loads(res.stdout)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    assert is_mounted(mount) and is_stale(mount)

    res = prewarm("twin", "start", str(origin), str(mount), "--rtt-ms", "1", "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["pid"] != pid
    assert not is_stale(mount)
    assert (mount / "shot.abc").read_bytes() == (origin / "shot.abc").read_bytes()


@pytest.mark.integration
def test_an_fsc_twin_says_so_in_mountinfo_and_restarts_keeping_its_data(setup: Setup) -> None:
    origin, mount, state = setup
    res = prewarm("twin", "start", str(origin), str(mount), "--fsc", "--cache-model", "chunk", "--rsize", "256KiB",
                  "--node-name", "proxy-1", "--rtt-ms", "1", "--state-dir", str(state))
    assert res.returncode == 0, res.stderr
    m = mount_of(str(mount))
    assert m is not None and m.fsc and m.options["rsize"] == str(256 * 1024)
    fd = os.open(mount / "shot.abc", os.O_RDONLY)
    os.pread(fd, 1000, 0)
    os.close(fd)
    res = prewarm("twin", "restart", str(mount), "--state-dir", str(state))
    assert res.returncode == 0 and "data kept" in res.stdout
    stats = json.loads(prewarm("twin", "stats", str(mount), "--state-dir", str(state)).stdout)
    assert (stats["restarts"], stats["wan_bytes"], stats["cached_bytes"]) == (1, 0, 300_000)
    assert stats["config"]["fsc"] and stats["config"]["cache_model"] == "chunk"


@pytest.mark.integration
def test_a_bad_rsize_is_one_line(setup: Setup) -> None:
    origin, mount, state = setup
    res = prewarm("twin", "start", str(origin), str(mount), "--rsize", "100", "--state-dir", str(state))
    assert res.returncode == 2 and "one 4 KiB page" in res.stderr and "Traceback" not in res.stderr


def test_missing_fusermount_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert fuse_missing() == "fusermount3 not found: apt-get install -y fuse3"
