"""The repo's job bundles, written the way the Deadline Cloud submitters write them, each planned;
and the bundle features the published samples use: extensions, chunked steps, relative paths,
parameter values given on the command line, Windows paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from prewarm.errors import ManifestError
from prewarm.flow import jobs
from prewarm.plan.pathmap import PathMap
from prewarm.site.settings import Settings
from tests.fixtures.services import ROOT

BUNDLES = ROOT / "sample_jobs" / "bundles"
NO_MAP = PathMap()
WINDOWS_MAP = PathMap.parse([{"studio": "/studio/proj", "aliases": ["W:/proj", "\\\\filer01\\proj"]}], "test")


def _settings(tmp_path: Path, path_map: PathMap = NO_MAP) -> Settings:
    studio = tmp_path / "studio"
    studio.mkdir(exist_ok=True)
    local = PathMap.parse([{"studio": "/studio/proj", "local": str(studio)}], "test")
    return Settings(roots=("/studio/proj",), path_map=path_map.merged(local))


@pytest.mark.parametrize("bundle, frames, inputs", [
    ("nuke_comp_chunked", tuple(range(1001, 1013)),
     ["/studio/proj/shot300/comp/shot300_comp_v004.nk", "/studio/proj/assets/luts/show.cube",
      "/studio/proj/shot300/plates/bg01/"]),
    ("houdini_sim_adaptive", tuple(range(1001, 1049)),
     ["/studio/proj/shot400/houdini/shot400_fx_v012.hip", "/studio/proj/shot400/cache/pyro_v012/"]),
    ("maya_windows", tuple(range(1, 21)),
     ["/studio/proj/shot500/maya/scenes/shot500_anim_v003.mb", "/studio/proj/shot500/maya/",
      "/studio/proj/assets/hero/tex/hero_diffuse.1001.tx"]),
])
def test_each_sample_bundle_plans(tmp_path: Path, bundle: str, frames: tuple[int, ...], inputs: list[str]) -> None:
    settings = _settings(tmp_path, WINDOWS_MAP)
    job = jobs.load(BUNDLES / bundle, settings)
    assert job.manifest is not None and job.manifest.frames == frames
    assert [i.path for i in job.manifest.inputs] == inputs
    plan = jobs.plan(job, None, settings)
    assert plan.frames == frames and sorted(m.path for m in plan.missing) == sorted(inputs)


def test_the_bundles_own_script_folder_is_left_out_with_a_note(tmp_path: Path) -> None:
    job = jobs.load(BUNDLES / "maya_windows", _settings(tmp_path, WINDOWS_MAP))
    assert job.notes == ("parameter ScriptDir: 'scripts' is the bundle's own file, outside the studio roots: "
                         "job attachments ship it with the job; not warmed",)


def test_a_relative_path_in_a_bundle_on_the_filer_is_a_studio_input(tmp_path: Path) -> None:
    """Deadline resolves a relative PATH against the bundle folder: on the studio filer, that is a studio path."""
    settings = _settings(tmp_path, WINDOWS_MAP)
    shutil.copytree(BUNDLES / "maya_windows", tmp_path / "studio" / "shot500" / "bundle")
    job = jobs.load(tmp_path / "studio" / "shot500" / "bundle", settings)
    assert job.manifest is not None and not job.notes
    assert "/studio/proj/shot500/bundle/scripts/" in [i.path for i in job.manifest.inputs]


def test_windows_paths_no_prefix_maps_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"MayaSceneFile: 'W:\\\\proj.*' is a Windows path that no entry"):
        jobs.load(BUNDLES / "maya_windows", _settings(tmp_path))


def test_parameter_values_given_override_the_bundles(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job = jobs.load(BUNDLES / "nuke_comp_chunked", settings, {"Frames": "1-3", "ChunkSize": "2"})
    assert job.manifest is not None and job.manifest.frames == (1, 2, 3)
    values = tmp_path / "values.yaml"
    values.write_text("parameterValues:\n- {name: Frames, value: 10-12}\n")
    assert jobs.parameter_file(str(values), settings) == {"Frames": "10-12"}


def test_parameter_values_and_bundle_files_are_read_no_larger_than_the_sites_request_limit(tmp_path: Path) -> None:
    """One default per setting: the service's body limit bounds every job file, the CLI's too."""
    small = replace(_settings(tmp_path), max_request_bytes=40)
    values = tmp_path / "values.yaml"
    values.write_text("parameterValues:\n- {name: Frames, value: 10-12}\n")
    with pytest.raises(ManifestError, match=r"larger than 40 bytes \(the site's max_request_bytes\)"):
        jobs.parameter_file(str(values), small)
    with pytest.raises(ManifestError, match=r"template.yaml: larger than 40 bytes \(the site's max_request_bytes\)"):
        jobs.load(BUNDLES / "nuke_comp_chunked", small)
    assert jobs.load(BUNDLES / "nuke_comp_chunked", _settings(tmp_path)).manifest is not None


def test_required_parameters_without_values_stay_one_clear_refusal(tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(BUNDLES / "nuke_comp_chunked", tmp_path / "b"))
    (bundle / "parameter_values.yaml").unlink()
    with pytest.raises(ManifestError) as err:
        jobs.load(bundle, _settings(tmp_path))
    assert "Values missing for required job parameters: Frames, NukeScriptFile" in str(err.value)
    assert "\n" not in str(err.value)


def test_plan_and_warm_take_a_bundle_folder_and_parameters_offline(tmp_path: Path) -> None:
    """`prewarm plan BUNDLE_DIR -p Name=Value` as Deadline's `bundle submit -p` takes them; warm the same."""
    base = [sys.executable, "-m", "prewarm"]
    local = ["--local", f"/studio/proj={tmp_path}"]
    out = subprocess.run([*base, "plan", str(BUNDLES / "nuke_comp_chunked"), "-p", "Frames=1001-1003", *local],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["frames"] == [1001, 1002, 1003]
    bad = subprocess.run([*base, "plan", str(BUNDLES / "nuke_comp_chunked"), "-p", "Frames", *local],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "expected NAME=VALUE" in bad.stderr
    nk = tmp_path / "shot300" / "comp" / "shot300_comp_v004.nk"
    nk.parent.mkdir(parents=True)
    nk.write_bytes(b"x" * 300_000)
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    warm = subprocess.run([*base, "warm", str(BUNDLES / "nuke_comp_chunked"), "-p", "Frames=1001-1003", *local,
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert warm.returncode == 1, warm.stderr     # partial: the LUT and the plates are not there
    [report] = json.loads(warm.stdout)
    assert report["name"] == "Nuke Comp" and report["counters"]["bytes_done"] == 300_000


@pytest.mark.parametrize("template, message", [
    ("{" * 5000 + "}" * 5000, "not valid"),
    ("specificationVersion: jobtemplate-2023-09\nname: x\nsteps: 7\n", "not a valid OpenJD job template"),
    ("a: &a [*a, *a]\n", "valid"),
    ("[1, 2]", "expected a job template"),
    ("specificationVersion: jobtemplate-2023-09\nname: x\nextensions: [TASK_CHUNKING]\nsteps:\n- name: R\n"
     "  parameterSpace:\n    taskParameterDefinitions:\n    - name: Frame\n      type: CHUNK[INT]\n"
     "      range: 1-2000000000\n      chunks: {defaultTaskCount: 5, targetRuntimeSeconds: 60, "
     "rangeConstraint: CONTIGUOUS}\n  script:\n    actions:\n      onRun: {command: x}\n",
     "task parameter Frame has 2,000,000,000 values, more than 100,000"),   # openjd-model would list them all
])
def test_a_hostile_template_is_one_line(tmp_path: Path, template: str, message: str) -> None:
    bundle = tmp_path / "hostile"
    bundle.mkdir()
    (bundle / "template.yaml").write_text(template)
    with pytest.raises(ManifestError) as err:
        jobs.load(bundle, _settings(tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 700


def test_a_job_reading_only_its_bundles_own_files_is_refused_saying_so(tmp_path: Path) -> None:
    bundle = tmp_path / "scripts_only"
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "template.yaml").write_text(
        "specificationVersion: jobtemplate-2023-09\nname: Scripts only\nparameterDefinitions:\n"
        "- {name: ScriptDir, type: PATH, objectType: DIRECTORY, dataFlow: IN, default: scripts}\n"
        "steps:\n- name: Run\n  script:\n    actions:\n      onRun: {command: '{{Param.ScriptDir}}/run.sh'}\n")
    with pytest.raises(ManifestError) as err:
        jobs.load(bundle, _settings(tmp_path))
    assert str(err.value) == (f"{bundle}: inputs: the job reads only the bundle's own files (scripts), which job "
                              "attachments ship with it: nothing on the studio filer to warm")
