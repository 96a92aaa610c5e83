"""Scene inputs planned end to end: the manifest, the Deadline 10 and OpenJD adapters, `prewarm plan`.

They all plan through `prewarm.flow.planning.plan_manifest`, so a job whose scene is a
.blend or a USD stage brings the scene's files in whichever way it arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prewarm.flow.adapters.deadline10 import job_to_manifest
from prewarm.flow.adapters.openjd import bundle_to_manifest
from prewarm.flow.planning import plan_manifest
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.model import Plan
from prewarm.plan.records import Origin
from tests.fixtures.scenes import BLEND_DATA, STUDIO, SceneTree

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((BLEND_DATA / "expected_frames.json").read_text())
SHOT = f"{STUDIO}/shot/shot.blend"


def manifest_of(*inputs: str, frames: str = "1-4"):  # type: ignore[no-untyped-def]
    return parse_manifest(yaml.safe_dump({"job": "j", "frames": frames, "inputs": list(inputs)}), "job.yaml")


def monitors(plan: Plan) -> dict[int, set[str]]:
    """Which image sequence members each frame's ranges are for."""
    out: dict[int, set[str]] = {}
    for r in plan.ranges:
        if "monitor." in r.path:
            out.setdefault(r.frame or 0, set()).add(r.path.rpartition("/")[2])
    return out


def test_a_blend_input_brings_what_the_scene_uses(blend_tree: SceneTree) -> None:
    plan = plan_manifest(manifest_of(SHOT), [], blend_tree.settings())
    planned = {r.path for r in plan.ranges}
    assert {f"{STUDIO}/{p}" for p in ("assets/tex/crate_diff.1001.png", "assets/tex/crate_diff.1002.png",
                                      "assets/tex/studio_hdri.exr", "shot/cache/crate_anim.abc",
                                      "lib/prop.blend", "lib/tex/prop_diff.png", "lib/tex/b_diff.png")} <= planned
    assert f"{STUDIO}/assets/tex/unused_prop.png" not in planned            # in the tile folder, used by nothing
    assert plan.origins[f"{STUDIO}/lib/tex/prop_diff.png"] == Origin(SHOT, f"{STUDIO}/lib/prop.blend")
    assert SHOT not in plan.origins                                         # the manifest named it itself
    # the image sequence: only the members frames 1-4 show, each first needed by its frame
    want = {f: {f"monitor.{n:04d}.png" for n in EXPECTED["frames"][str(f)].values()} for f in range(1, 5)}
    got = monitors(plan)
    assert set().union(*got.values()) == set().union(*want.values())
    assert all(name in got.get(f, set()) or any(name in got[g] for g in range(1, f)) for f in want for name in want[f])
    assert [(m.path, m.reason, m.line) for m in plan.missing] == [
        (f"{STUDIO}/assets/tex/missing_sign.png", f"not found (asked for by {SHOT})", 3)]   # the scene's line
    assert ("readdir", f"{STUDIO}/assets/tex") in {(m.op.value, m.path) for m in plan.metadata}
    data = plan.to_json()
    assert data["files"][f"{STUDIO}/lib/tex/prop_diff.png"]["scene"] == SHOT
    assert Plan.from_json(json.loads(json.dumps(data))).origins == plan.origins
    assert data["summary"]["scenes"] == 1 and data["summary"]["scene_layers"] == 4


def test_deadline10_job_whose_scene_file_is_a_blend(blend_tree: SceneTree) -> None:
    job = "Plugin=Blender\nName=shot_lighting_v003\nFrames=1-4\nPriority=50\n"
    plugin = f"SceneFile={SHOT}\nThreads=0\n"
    plan = plan_manifest(job_to_manifest(job, plugin, "job.job"), [], blend_tree.settings())
    assert plan.origins[f"{STUDIO}/lib/tex/b_diff.png"] == Origin(SHOT, f"{STUDIO}/lib/cycle_b.blend")
    assert {f"{STUDIO}/shot/cache/crate_anim.abc", SHOT} <= {r.path for r in plan.ranges}


def test_openjd_bundle_naming_a_usd_stage(usd_tree: SceneTree, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    template = {
        "specificationVersion": "jobtemplate-2023-09", "name": "usd_shot",
        "parameterDefinitions": [{"name": "Stage", "type": "PATH", "objectType": "FILE", "dataFlow": "IN"},
                                 {"name": "Frames", "type": "STRING"}],
        "steps": [{"name": "Render", "parameterSpace": {"taskParameterDefinitions": [
            {"name": "Frame", "type": "INT", "range": "{{Param.Frames}}"}]},
            "script": {"actions": {"onRun": {"command": "husk", "args": ["{{Param.Stage}}", "{{Task.Param.Frame}}"]}}}}],
    }
    (bundle / "template.yaml").write_text(yaml.safe_dump(template))
    (bundle / "parameter_values.yaml").write_text(yaml.safe_dump({"parameterValues": [
        {"name": "Stage", "value": f"{STUDIO}/shot.usda"}, {"name": "Frames", "value": "7-8"}]}))
    plan = plan_manifest(bundle_to_manifest(bundle, "bundle"), [], usd_tree.settings())
    clips = {r.path.rpartition("/")[2]: r.frame for r in plan.ranges if "/clips/" in r.path}
    assert clips == {"anim.0006.usdc": 7, "anim.0007.usdc": 7, "anim.0008.usdc": 7, "anim.0009.usdc": 8}
    fire = {r.path.rpartition("/")[2]: r.frame for r in plan.ranges if "fire." in r.path}
    assert fire == {"fire.0007.vdb": 7, "fire.0008.vdb": 8}                    # the frame-token asset path
    assert plan.origins[f"{STUDIO}/tex/diff.1002.png"] == Origin(f"{STUDIO}/shot.usda", f"{STUDIO}/asset.usdc")
    assert [m.path for m in plan.missing] == [f"{STUDIO}/tex/nope.png"]


def test_thousands_of_unresolved_assets_are_a_bounded_list(usd_tree: SceneTree) -> None:
    attrs = "\n".join(f"    asset t{i} = @./missing/t{i}.png@" for i in range(5000))
    (usd_tree.root / "many.usda").write_text(f'#usda 1.0\ndef "Many"\n{{\n{attrs}\n}}\n')
    plan = plan_manifest(manifest_of(f"{STUDIO}/many.usda"), [], usd_tree.settings())
    assert len(plan.missing) == 101 and plan.stats.scenes.scene_unresolved == 5000
    assert plan.missing[-1].reason == "4,900 more unresolved paths in the scene (the first 100 are listed)"


def prewarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prewarm", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_plan_cli_without_usd_core_is_one_line_naming_the_extra(usd_tree: SceneTree, tmp_path: Path) -> None:
    fake = tmp_path / "no_usd" / "pxr"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'pxr'\")\n")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(f"job: j\nframes: 1-2\ninputs:\n  - {STUDIO}/tex/rough.png\n  - {STUDIO}/shot.usda\n")
    r = prewarm("plan", str(manifest), "--local", f"{STUDIO}={usd_tree.root}",
                env={**os.environ, "PYTHONPATH": str(fake.parent)})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f"prewarm plan: {manifest}:5: {STUDIO}/shot.usda: a USD stage: reading it needs usd-core, "
                                "the optional extra 'scenes' (pip install 'prewarm[scenes]'), or `expand: false`")
    manifest.write_text(manifest.read_text().replace(f"  - {STUDIO}/shot.usda",
                                                     f"  - {{path: {STUDIO}/shot.usda, expand: false}}"))
    r = prewarm("plan", str(manifest), "--local", f"{STUDIO}={usd_tree.root}",
                env={**os.environ, "PYTHONPATH": str(fake.parent)})
    assert r.returncode == 0, r.stderr
    assert {p["path"] for p in json.loads(r.stdout)["ranges"]} == {f"{STUDIO}/tex/rough.png", f"{STUDIO}/shot.usda"}


@pytest.mark.parametrize("content", [b"BLENDER-v500" + b"\0" * 64, b"\x28\xb5\x2f\xfd garbage"])
def test_plan_cli_with_a_corrupt_blend_plans_the_rest_and_says_why(blend_tree: SceneTree, tmp_path: Path,
                                                                    content: bytes) -> None:
    blend_tree.local(SHOT).write_bytes(content)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(f"job: j\nframes: 1\ninputs:\n  - {SHOT}\n  - {STUDIO}/shot/cache/crate_anim.abc\n")
    r = prewarm("plan", str(manifest), "--local", f"{STUDIO}={blend_tree.root}")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    data = json.loads(r.stdout)
    assert {p["path"] for p in data["ranges"]} == {SHOT, f"{STUDIO}/shot/cache/crate_anim.abc"}
    [finding] = data["missing"]
    assert finding["path"] == SHOT and finding["line"] == 4 and finding["reason"].startswith("cannot read the scene: ")
