"""The limits of prewarm/plan/limits.py, each refused in one line before any work, and findings folded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from prewarm.cli import main
from prewarm.errors import ConfigError, ManifestError
from prewarm.plan.build import fold_missing
from prewarm.plan.inputs import Failure, Kind, Missing, Stat, resolve_inputs
from prewarm.plan.limits import MAX_FILES, MAX_GATEWAYS
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.model import FIELDS_LIMITS
from prewarm.site.settings import Settings
from tests.fixtures.services import ROOT
from tests.fixtures.studio import PREFIX, Studio


def manifest(**changes: object) -> str:
    doc = {"job": "j", "frames": "1-10", "inputs": [f"{PREFIX}/a.tx"], **changes}
    return yaml.safe_dump(doc)


@pytest.mark.parametrize("changes, says", [
    ({"granule": 1}, "granule: must be between 4 KiB and 64 MiB, got 1"),
    ({"granule": "1TiB"}, "granule: must be between 4 KiB and 64 MiB, got 1099511627776"),
    ({"granule": "1e400"}, "granule: more than 4,611,686,018,427,387,904 bytes"),
    ({"max_bytes": "1e400"}, "max_bytes: more than"),
    ({"frames": "1-1000000"}, "frames: '1-1000000' has 1,000,000 frames, more than 100,000"),
    ({"frames": "1-" + "9" * 30}, "frames: frame numbers are at most 1,000,000,000"),
    ({"frames": "9" * 5000}, "frames: cannot parse"),
    ({"priority": 10**30}, "priority: expected an integer between -1,000,000 and 1,000,000"),
    ({"start": 1e400}, "start: expected ISO 8601"),
    ({"gateway": [f"g{i}" for i in range(MAX_GATEWAYS + 1)]}, "gateway: 33 gateways, at most 32"),
    ({"gateway": "gw:*"}, "is not a gateway name"),
])
def test_manifest_limits_are_one_line(changes: dict[str, object], says: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(manifest(**changes), "job.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("setting, value, says", [
    ("in_flight", 10**9, "at most 1,024"),
    ("granule", 1, "must be between 4 KiB and 64 MiB"),
    ("read_size", 1 << 40, "must be between 4 KiB and 64 MiB"),
    ("visibility_timeout_s", 10**12, "at most 604,800"),
])
def test_settings_limits(setting: str, value: int, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_mapping({setting: value}, "config.yaml")


def test_a_deeply_nested_settings_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("roots: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        Settings.load(env={}, path=str(cfg))


class WideFS:
    """A studio file system with one folder of `n` files, none on disk (the file system is passed in)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def stat_many(self, paths: Sequence[str]) -> list[Stat | Failure]:
        return [Stat(Kind.DIR if p == f"{PREFIX}/big" else Kind.FILE, 10, 1.0, (1, hash(p))) for p in paths]

    def listdir(self, path: str) -> list[str] | Failure:
        return [f"f{i}.tx" for i in range(self.n)]


def test_inputs_that_resolve_to_too_many_files_are_refused_not_walked() -> None:
    m = parse_manifest(yaml.safe_dump({"job": "j", "frames": "1", "inputs": [f"{PREFIX}/big/"]}), "job.yaml")
    assert len(resolve_inputs(m, WideFS(1000)).files) == 1000
    with pytest.raises(ManifestError, match=f"inputs\\[0\\]: the inputs resolve to more than {MAX_FILES:,} files"):
        resolve_inputs(m, WideFS(MAX_FILES + 1))


def test_missing_frames_of_a_pattern_fold_into_one_finding_with_a_count() -> None:
    m = parse_manifest(yaml.safe_dump({"job": "j", "frames": "1-100000",
                                       "inputs": [f"{PREFIX}/cache/fluid.####.vdb", f"{PREFIX}/a.tx"]}), "job.yaml")
    missing = [Missing(f"{PREFIX}/cache/fluid.{f:04d}.vdb", 3, "not found", 0, f) for f in range(1, 100_001)]
    missing += [Missing(f"{PREFIX}/a.tx", 4, "not found", 1)]
    traced = [(f"{PREFIX}/gone/{i}.tx", f"not found: frame {i} should read it") for i in range(50)]
    folded = fold_missing(m, missing, traced)
    assert [f.to_json() for f in folded[:2]] == [
        {"path": f"{PREFIX}/cache/fluid.####.vdb", "reason": "not found", "line": 3, "count": 100_000,
         "frames": "1-100000"},
        {"path": f"{PREFIX}/a.tx", "reason": "not found", "line": 4}]
    assert len(folded) == 3 and folded[2].count == 50 and folded[2].path == f"{PREFIX}/gone/0.tx"


def test_a_plan_of_a_missing_sequence_answers_with_one_finding(studio: Studio, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"job": "j", "frames": "1-20000", "inputs": [f"{PREFIX}/cache/f.####.vdb"]}))
    (studio.root / "cache").mkdir()
    out = subprocess.run([sys.executable, "-m", "prewarm", "plan", str(job), "--local", f"{PREFIX}={studio.root}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["missing"] == [{"path": f"{PREFIX}/cache/f.####.vdb", "reason": "not found", "line": 3,
                                "count": 20000, "frames": "1-20000"}]
    assert plan["summary"]["missing"] == 20000 and len(json.dumps(plan["missing"])) < 200


def test_a_range_far_past_the_end_of_an_unsized_file_costs_one_stat(studio: Studio, tmp_path: Path) -> None:
    path = studio.file("small.tx", 3_000_000)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"job": "j", "frames": [1], "ranges": [
        {"path": path, "offset": 0, "length": 1 << 40}]}))  # a terabyte of a 3 MB file, no `files` entry
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(studio.config(tmp_path / "c.yaml")),
                          "warm", str(plan)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PREWARM_REDIS_URL"})
    assert out.returncode == 2
    assert out.stderr.strip() == (f"prewarm warm: {plan}: ranges[0]: ends at 1099511627776, beyond the file's "
                                  "planned size 3000000")
    assert time.monotonic() - t0 < 30, "refused before any read"


def test_a_terabyte_range_of_a_file_that_cannot_be_measured_is_refused(studio: Studio, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"job": "j", "frames": [1], "ranges": [
        {"path": f"{PREFIX}/nowhere.tx", "offset": 0, "length": 1 << 40}]}))
    out = subprocess.run([sys.executable, "-m", "prewarm", "--config", str(studio.config(tmp_path / "c.yaml")),
                          "warm", str(plan)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PREWARM_REDIS_URL"})
    assert out.returncode == 2
    assert (f"files: no size for {PREFIX}/nowhere.tx (not found here), and its ranges reach 1,099,511,627,776 "
            "bytes: give its size in the plan's files") in out.stderr


def test_a_job_whose_plan_would_pass_a_plan_limit_is_refused_when_planned(studio: Studio, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The planner never writes a plan that `prewarm warm` would then refuse as too large (a
    sequence planned whole can pass the ranges limit): one line at plan time, and no plan file."""
    for f in range(1, 11):
        studio.file(f"cache/c.{f:04d}.bgeo", 3 * 4096)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"job": "j", "frames": "1-10", "inputs": [f"{PREFIX}/cache/c.####.bgeo"]}))
    out = tmp_path / "p.json"
    args = ["plan", str(job), "--local", f"{PREFIX}={studio.root}", "-o", str(out)]
    assert main(args) == 0 and len(json.loads(out.read_text())["ranges"]) == 10
    out.unlink()
    capsys.readouterr()
    monkeypatch.setitem(FIELDS_LIMITS, "ranges", 9)
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"prewarm plan: {job}: ranges: the plan would hold 10, more than the 9 a plan may (prewarm.plan.limits): "
        "plan the job in parts (fewer frames), or coarser (--granule, --max-gap)")
    assert not out.exists()
