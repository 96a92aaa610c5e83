"""The one job loader (`prewarm.flow.jobs`): every kind of job a user hands prewarm, planned one way."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from prewarm.cli.warm import load_source
from prewarm.errors import ManifestError
from prewarm.flow import jobs
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.store import import_traces

SAMPLE = Path(__file__).parent.parent / "sample_jobs"
BLENDER_BUNDLE = Path(__file__).parent / "data" / "bundles" / "blender_shot100"


def _settings(tmp_path: Path, shot_trees: Path) -> Settings:
    return Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                    path_map=PathMap((Prefix("/studio/proj", (), str(shot_trees)),)))


def test_warm_plans_a_manifest_from_the_trace_store_as_plan_does(tmp_path: Path, shot_trees: Path) -> None:
    """`prewarm warm MANIFEST` and `prewarm plan MANIFEST` are one plan: both from the shot's stored traces."""
    settings = _settings(tmp_path, shot_trees)
    result = import_traces(settings, [str(SAMPLE / "shot100" / "traces")], "proj", "shot100", "shot100_earlier")
    manifest = str(SAMPLE / "shot100" / "manifest.yaml")
    warmed, _ = load_source(manifest, [], settings, argparse.Namespace())
    planned = jobs.plan_job(manifest, [], settings)
    assert warmed.stats.store.traces_from_store == [result.folder] == planned.stats.store.traces_from_store
    assert warmed.ranges == planned.ranges and warmed.summary()["bytes"] > 0


def test_a_json_manifest_is_a_manifest_wherever_it_is_given(tmp_path: Path, shot_trees: Path) -> None:
    settings = _settings(tmp_path, shot_trees)
    doc = yaml.safe_load((SAMPLE / "shot100" / "manifest.yaml").read_text())
    as_json = tmp_path / "job.json"
    as_json.write_text(json.dumps(doc))
    job = jobs.load(as_json, settings)
    assert job.plan is None and job.manifest is not None
    from_yaml = jobs.load(SAMPLE / "shot100" / "manifest.yaml", settings).manifest
    assert from_yaml is not None and [i.path for i in job.manifest.inputs] == [i.path for i in from_yaml.inputs]
    plan, _ = load_source(str(as_json), [], settings, argparse.Namespace())   # `prewarm warm job.json`
    plan_file = tmp_path / "plan.json"
    plan_file.write_text("".join(plan.json_text()))
    assert jobs.load(plan_file, settings).plan is not None                  # and a plan stays a plan


HOOK_PAYLOAD = {
    "jobName": "shot100 lighting v002 (artist)",
    "jobBundleDir": str(BLENDER_BUNDLE),
    "parameters": [{"name": "Frames", "value": "1-5"},
                   {"name": "BlenderFile", "value": "/studio/proj/shot100/shot100_lighting_v001.blend"},
                   {"name": "TextureDir", "value": "/studio/proj/assets/tex"},
                   {"name": "OutputDir", "value": "/studio/proj/shot100/render/v002"},
                   {"name": "deadline:priority", "value": 60}],
    "assetReferences": {
        "inputFilenames": ["/studio/proj/shot100/shot100_lighting_v001.blend",
                           "/studio/proj/assets/tex/studio_hdri.exr"],
        "inputDirectories": ["/studio/proj/assets/tex/wood"],
        "outputDirectories": ["/studio/proj/shot100/render/v002"],
        "referencedPaths": ["/studio/proj/shot100/cache/crate_anim.abc"],
    },
}


def test_a_deadline_cloud_hook_payload_names_the_job_and_every_input() -> None:
    """The client's payload: flat asset references, each input kept; the job named `jobName`, not the template."""
    job = jobs.hook(HOOK_PAYLOAD, "payload", jobs.context(Settings(roots=("/studio/proj",))))
    m = job.manifest
    assert m is not None and m.job == "shot100 lighting v002 (artist)" and m.frames == (1, 2, 3, 4, 5)
    assert [i.path for i in m.inputs] == [
        "/studio/proj/shot100/shot100_lighting_v001.blend",
        "/studio/proj/assets/tex/",
        "/studio/proj/assets/tex/studio_hdri.exr",
        "/studio/proj/assets/tex/wood/",
        "/studio/proj/shot100/cache/crate_anim.abc",
    ]
    assert m.priority == 60 and not any("render" in i.path for i in m.inputs)


def test_a_hook_payload_file_and_text_are_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(HOOK_PAYLOAD))
    settings = Settings(roots=("/studio/proj",))
    assert jobs.load(path, settings).manifest == jobs.hook(HOOK_PAYLOAD, str(path), jobs.context(settings)).manifest


@pytest.mark.parametrize("payload, message", [
    ({"jobName": 5, "jobBundleDir": "/x"}, "jobName: expected the job's name"),
    ({"jobName": "a", "assetReferences": ["/x"]}, "assetReferences: expected {inputFilenames"),
    ({"jobName": "a", "assetReferences": {"inputFilenames": "/x"}}, "assetReferences.inputFilenames: expected a list"),
    ({"jobName": "a", "parameters": "Frames=1"}, "parameters: expected a list of {name, value}"),
    ({"jobName": "a"}, "jobBundleDir: the hook payload names no bundle folder"),
    ({"jobName": "a", "parameters": [{"name": "Frames", "value": "1" * (1 << 20)}]}, "more than a parameter value"),
])
def test_a_payload_of_the_wrong_shape_is_one_line(payload: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError) as err:
        jobs.hook(payload, "payload", jobs.context(Settings()))
    assert message in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 400


def test_windows_prefixes_in_the_sites_settings_map_farm_paths(tmp_path: Path) -> None:
    """Drive letters and UNC shares are aliases of a studio prefix in the settings file: either slash, any case."""
    config = tmp_path / "config.yaml"
    config.write_text("roots: [/studio/proj]\npath_map:\n"
                      "  - {studio: /studio/proj, aliases: ['W:/proj', '\\\\filer01\\proj']}\n")
    settings = Settings.load(path=str(config))
    payload = {"jobName": "win", "jobBundleDir": str(BLENDER_BUNDLE),
               "parameters": [{"name": "Frames", "value": "1"},
                              {"name": "BlenderFile", "value": "w:\\PROJ\\shot100\\a.blend"},
                              {"name": "TextureDir", "value": "//FILER01/proj/assets/tex"}],
               "assetReferences": {"inputFilenames": ["\\\\filer01\\proj\\assets\\hdri.exr"]}}
    m = jobs.hook(payload, "payload", jobs.context(settings)).manifest
    assert m is not None and [i.path for i in m.inputs] == [
        "/studio/proj/shot100/a.blend", "/studio/proj/assets/tex/", "/studio/proj/assets/hdri.exr"]
