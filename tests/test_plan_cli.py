"""`prewarm plan` as users and submitter hooks call it (contract 3), on the real sample jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from prewarm.plan.model import Plan
from prewarm.plan.ranges import covered, normalize
from prewarm.plan.stats import PlanStats, PredictStats, SceneStats, StoreStats, StructureStats, TraceStats

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_jobs"


def prewarm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prewarm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture()
def local(shot_trees: Path) -> str:
    return f"/studio/proj={shot_trees}"


def test_plan_to_stdout_follows_contract(local: str):
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--traces", str(SAMPLES / "shot100/traces"),
                "--local", local)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["job"] == "shot100_lighting_v001"
    assert {"path", "offset", "length"} <= set(data["ranges"][0])
    assert data["summary"]["bytes"] == sum(x["length"] for x in data["ranges"])
    assert data["summary"]["files"] == len({x["path"] for x in data["ranges"]})
    assert all(x["path"].startswith("/studio/proj/") for x in data["ranges"]), "plans carry studio paths"
    Plan.from_json(data)  # what the plan command writes, the warm side accepts


def test_plan_orders_first_frame_and_shared_data_first(local: str, tmp_path: Path):
    out = tmp_path / "plan.json"
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--traces", str(SAMPLES / "shot100/traces"),
                "--local", local, "-o", str(out), "--summary")
    assert r.returncode == 0, r.stderr
    assert "planned" in r.stderr and "shot100_lighting_v001" in r.stderr
    ranges = json.loads(out.read_text())["ranges"]
    firsts = [x["frame"] for x in ranges if x["reason"] not in ("fallback", "unread_tile")]
    assert firsts == sorted(firsts), "frames' needs come in frame order"
    head = [x for x in ranges if x["frame"] == 1]
    assert head[0]["frames"] == 24, "what every frame needs leads"
    monitors = [x["path"] for x in ranges if "monitor" in x["path"]]
    assert monitors == sorted(monitors) and len(monitors) == 24
    assert ranges[-1]["reason"] == "unread_tile", "untraced tiles 1002/1003 (tile 1001 was read) go last"
    assert {x["path"].rsplit(".", 2)[-2] for x in ranges if x["reason"] == "unread_tile"} == {"1002", "1003"}


def test_plan_extrapolates_unseen_frames_from_earlier_traces(local: str, tmp_path: Path):
    traces = tmp_path / "traces"
    traces.mkdir()
    for f in range(1, 7):
        (traces / f"frame.{f:04d}.strace.gz").write_bytes((SAMPLES / f"shot100/traces/frame.{f:04d}.strace.gz").read_bytes())
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--traces", str(traces), "--local", local,
                "--frames", "7-24", "--granule", "64KiB")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    reasons = {x["reason"] for x in data["ranges"]}
    assert {"progression", "pattern"} <= reasons
    abc = normalize((x["offset"], x["offset"] + x["length"]) for x in data["ranges"]
                    if x["path"].endswith("crate_anim.abc"))
    # frames 7 and 24 read their Alembic regions here (checked by hand in the raw traces)
    for start, end in [(234_850 + 5 * 120_720, 234_850 + 6 * 120_720), (2_890_618, 3_011_338)]:
        assert covered(abc, start, end) == end - start
    # frames 2-6 (traced, not in the job) read 234,850-838,450: whole granules inside it stay out
    assert covered(abc, 4 * 65_536, 12 * 65_536) == 0


def test_budget_drops_and_reports(local: str):
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--traces", str(SAMPLES / "shot100/traces"),
                "--local", local, "--max-bytes", "4MiB")
    data = json.loads(r.stdout)
    assert data["summary"]["bytes"] <= 4 << 20
    assert data["summary"]["dropped_bytes"] > 0 and data["dropped"]
    # the scene, read by all 24 frames, survives the budget before any one frame's monitor image
    assert any(x["path"].endswith(".blend") for x in data["ranges"])


def test_missing_inputs_are_findings_not_crashes(tmp_path: Path):
    manifest = tmp_path / "job.yaml"
    manifest.write_text("job: j\nframes: 1-3\ninputs:\n  - /nowhere/scene.blend\n  - /nowhere/c.####.bgeo\n")
    r = prewarm("plan", str(manifest), "--local", f"/nowhere={tmp_path / 'nowhere'}")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ranges"] == []
    assert {m["path"] for m in data["missing"]} >= {"/nowhere/scene.blend", "/nowhere/c.0002.bgeo"}
    assert all(m["line"] in (4, 5) for m in data["missing"])


@pytest.mark.parametrize("text, expected", [
    ("job: j\nframes: 1-x\ninputs: [/a]\n", ":2: "),
    ("job: j\nframes: 1-3\n", "inputs"),
    ("job: j\nframes: 1-3\ninputs: [/a]\nframs: 2\n", ":4: "),
    ("- just\n- a list\n", ":1: "),
])
def test_bad_manifest_is_one_line_exit_2(tmp_path: Path, text: str, expected: str):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    out = tmp_path / "plan.json"
    r = prewarm("plan", str(manifest), "-o", str(out))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(manifest) in r.stderr and expected in r.stderr
    assert not out.exists(), "nothing half-written"


def test_bad_trace_path_and_bad_flags_are_one_line_exit_2(tmp_path: Path, local: str):
    manifest = SAMPLES / "shot100/manifest.yaml"
    for args, needle in [(["--traces", str(tmp_path / "nope"), "--local", local], "nope"),
                         (["--granule", "lots", "--local", local], "--granule"),
                         (["--local", "relative=x"], "--local"),
                         ([], "no allowed studio roots")]:
        r = prewarm("plan", str(manifest), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and needle in r.stderr


def test_garbage_trace_file_is_named(tmp_path: Path, local: str):
    bad = tmp_path / "frame.0001.log"
    bad.write_bytes(b"\x00\x01binary garbage\n")
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--traces", str(bad), "--local", local)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_unwritable_output_is_one_line_exit_2(local: str, tmp_path: Path):
    out = tmp_path / "no-such-folder" / "plan.json"
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--local", local, "-o", str(out))
    assert r.returncode == 2 and "-o" in r.stderr and str(out) in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plan_to_dev_null_leaves_the_device_alone(local: str):
    r = prewarm("plan", str(SAMPLES / "shot100/manifest.yaml"), "--local", local, "-o", "/dev/null")
    assert r.returncode == 0 and Path("/dev/null").is_char_device()


def test_summary_is_the_typed_totals_then_the_planner_stats() -> None:
    """The plan file's `summary` (contract 3): the totals' keys in their order, then the planner's stats."""
    from prewarm.plan.records import FileInfo, PlannedRange, Reason

    plan = Plan(job="j", frames=(1, 2), granule=4096,
                ranges=(PlannedRange("/s/a", 0, 4096), PlannedRange("/s/b", 0, 8192, reason=Reason.PATTERN)),
                files={"/s/a": FileInfo("/s/a", 10_000, 1.0), "/s/b": FileInfo("/s/b", 8192, 1.0)},
                stats=PlanStats(TraceStats(trace_records=7), 4096, PredictStats(sequences=1)))
    totals = plan.totals()
    assert (totals.bytes, totals.files, totals.ranges, totals.whole_file_bytes) == (12288, 2, 2, 18192)
    assert totals.bytes_by_reason == {"pattern": 8192, "trace": 4096}
    summary = plan.summary()
    assert list(summary) == ["bytes", "files", "ranges", "frames", "whole_file_bytes", "metadata_ops", "missing",
                             "dropped_bytes", "dropped_ranges", "bytes_by_reason", "trace_records", "trace_frames",
                             "trace_lines_skipped", "trace_calls_failed", "granule", "sequences", "remapped_files",
                             "identity_unknown", "shared_files", "changed_since_traced", "tiled_files",
                             "unseen_files", "unseen_tiled_files", "unread_tiles"]
    assert summary["trace_records"] == 7 and summary["sequences"] == 1 and summary["granule"] == 4096
    assert Plan.from_json(json.loads("".join(plan.json_text()))).summary() == totals.to_json(), \
        "a plan read back has no planner stats: its summary is its totals"


def test_planner_stats_parts_write_their_keys_after_the_predictors_in_their_order() -> None:
    """Structure, scenes and the store add their keys only when they were counted, in that order;
    the store's skipped folders only when there are some."""
    stats = PlanStats(TraceStats(), 4096, PredictStats(), structure=StructureStats({"tiff": 2}, 0, {}),
                      scenes=SceneStats(scenes=1, scene_files_planned=3), store=StoreStats(["/store/a"]))
    keys = list(stats.to_json())
    assert keys[keys.index("unread_tiles") + 1:] == [
        "structured_files", "structure_unreadable", "structure_unreadable_files", "scenes", "scene_layers",
        "scene_inputs", "scene_unresolved", "scene_outside_roots", "scene_files_planned", "traces_from_store"]
    skipped = replace(stats, store=StoreStats(["/store/a"], {"/store/b": "frame.0002.jsonl.gz: not gzip"}))
    assert list(skipped.to_json())[-2:] == ["traces_from_store", "traces_skipped"]
    assert "scenes" not in PlanStats(TraceStats(), 4096, PredictStats()).to_json()


def test_a_deadline_10_pair_plans_from_the_command_line(local: str, tmp_path: Path):
    """`prewarm plan JOB_INFO --plugin-info PLUGIN_INFO`: the pair a Deadline 10 submitter writes, read by the
    one loader as the service reads it; its scene and texture planned, named by the job info."""
    job_info, plugin_info = tmp_path / "job_info.job", tmp_path / "plugin_info.job"
    job_info.write_text("Plugin=Blender\nName=shot100 lighting v001\nFrames=1-6\nChunkSize=1\n")
    plugin_info.write_text("SceneFile=/studio/proj/shot100/shot100_lighting_v001.blend\n"
                           "TextureFile=/studio/proj/assets/tex/studio_hdri.exr\n")
    r = prewarm("plan", str(job_info), "--plugin-info", str(plugin_info), "--traces",
                str(SAMPLES / "shot100/traces"), "--local", local, "-o", str(tmp_path / "plan.json"))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["frames"] == [1, 2, 3, 4, 5, 6] and data["job"] == "shot100 lighting v001"
    paths = {x["path"] for x in data["ranges"]}
    assert {"/studio/proj/shot100/shot100_lighting_v001.blend", "/studio/proj/assets/tex/studio_hdri.exr"} <= paths
    bad = prewarm("plan", str(job_info), "--plugin-info", str(tmp_path / "nope.job"), "--local", local)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope.job" in bad.stderr
