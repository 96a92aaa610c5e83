"""Adapters on job bundles and job files written the way the farms' submitters write them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from prewarm.errors import ManifestError
from prewarm.flow.adapters.deadline10 import job_to_manifest
from prewarm.flow.adapters.openjd import bundle_json_to_manifest, bundle_to_manifest
from prewarm.flow.planning import plan_manifest
from prewarm.plan.framespec import format_frames, parse_frames
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings

DATA = Path(__file__).parent / "data"
BLENDER_BUNDLE = DATA / "bundles" / "blender_shot100"
D10 = DATA / "deadline10"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A copy of the Blender submitter's bundle, to break in one place per test."""
    return Path(shutil.copytree(BLENDER_BUNDLE, tmp_path / "bundle"))


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_blender_bundle_gives_frames_inputs_and_farm_fields() -> None:
    m = bundle_to_manifest(BLENDER_BUNDLE, "bundle")
    assert m.job == "shot100_lighting_v002"
    assert m.frames == (*range(1, 11), 15, 20, 22, 24)
    assert [i.path for i in m.inputs] == [
        "/studio/proj/shot100/shot100_lighting_v001.blend",   # PATH parameter, dataFlow IN
        "/studio/proj/assets/tex/",                           # PATH DIRECTORY parameter: a folder input
        "/studio/proj/shot100/cache/crate_anim.abc",          # asset references
        "/studio/proj/assets/tex/studio_hdri.exr",
    ]
    assert not any("render" in i.path for i in m.inputs)     # dataFlow OUT and outputs are not read
    assert (m.priority, m.show, m.shot) == (75, "proj", "shot100")


def test_bundle_posted_as_json_is_the_same_job() -> None:
    obj = {stem: yaml.safe_load((BLENDER_BUNDLE / f"{stem}.yaml").read_text())
           for stem in ("template", "asset_references", "parameter_values")}
    assert bundle_json_to_manifest(obj, "request").inputs == bundle_to_manifest(BLENDER_BUNDLE, "b").inputs
    as_files = {f"{stem}.yaml": (BLENDER_BUNDLE / f"{stem}.yaml").read_text() for stem in obj}   # as the client sends it
    assert bundle_json_to_manifest(as_files, "request").frames == bundle_to_manifest(BLENDER_BUNDLE, "b").frames
    with pytest.raises(ManifestError, match="template.yaml: the bundle also has template.json: keep one"):
        bundle_json_to_manifest({**as_files, "template.json": "{}"}, "request")


def test_bundle_defaults_apply_and_json_files_are_read(bundle: Path) -> None:
    _edit(bundle / "parameter_values.yaml",
          lambda d: d.update(parameterValues=[v for v in d["parameterValues"] if v["name"] != "Frames"]))
    _edit(bundle / "template.yaml", lambda d: [p.update(default="-2-2") for p in d["parameterDefinitions"]
                                               if p["name"] == "Frames"])
    import json
    (bundle / "asset_references.json").write_text(json.dumps(yaml.safe_load((bundle / "asset_references.yaml").read_text())))
    (bundle / "asset_references.yaml").unlink()
    m = bundle_to_manifest(bundle, "b")
    assert m.frames == (-2, -1, 0, 1, 2)
    assert "/studio/proj/shot100/cache/crate_anim.abc" in [i.path for i in m.inputs]


def test_bundle_plans_with_the_real_traces(real_traces: Path, shot_trees: Path) -> None:
    settings = Settings(path_map=PathMap((Prefix("/studio/proj", (), str(shot_trees)),)), roots=("/studio/proj",))
    plan = plan_manifest(bundle_to_manifest(BLENDER_BUNDLE, "b"), [str(real_traces / "shot100" / "traces")], settings)
    assert plan.ranges and {r.path for r in plan.ranges} >= {"/studio/proj/shot100/shot100_lighting_v001.blend"}


@pytest.mark.parametrize("breakage, where, message", [
    (lambda b: (b / "template.yaml").unlink(), "bundle", "no template.yaml"),
    (lambda b: _edit(b / "template.yaml", lambda d: d["steps"][0]["parameterSpace"]["taskParameterDefinitions"][0]
                     .update(range="1-x")), "template.yaml", "not a valid OpenJD job template"),
    (lambda b: (b / "template.yaml").write_text("steps: [unclosed\n"), "template.yaml:", "not valid YAML"),
    (lambda b: _edit(b / "parameter_values.yaml", lambda d: d["parameterValues"].append(
        {"name": "Nope", "value": "1"})), "parameter_values.yaml", "not defined in the template: Nope"),
    (lambda b: _edit(b / "parameter_values.yaml", lambda d: d.update(
        parameterValues=[v for v in d["parameterValues"] if v["name"] != "BlenderFile"])),
     "parameter_values.yaml", "missing for required job parameters: BlenderFile"),
    (lambda b: _edit(b / "asset_references.yaml", lambda d: d["assetReferences"]["inputs"]["filenames"].append(
        "textures/wood.tx")), "asset_references.yaml", "filenames[3]: 'textures/wood.tx' is not an absolute"),
    (lambda b: _edit(b / "parameter_values.yaml", lambda d: d["parameterValues"].append(
        {"name": "deadline:priority", "value": "high"})), "parameter_values.yaml", "given twice"),
    (lambda b: shutil.copy(b / "template.yaml", b / "template.json"), "template.json", "keep one"),
])
def test_bad_bundles_fail_in_one_line_naming_the_file(bundle: Path, breakage, where: str, message: str) -> None:  # type: ignore[no-untyped-def]
    breakage(bundle)
    with pytest.raises(ManifestError) as err:
        bundle_to_manifest(bundle, "bundle")
    text = str(err.value)
    assert "\n" not in text and where in err.value.where and message in text, text


def test_bundle_json_leaves_out_relative_paths_with_a_note_and_refuses_unknown_keys() -> None:
    """Posted without its folder, a bundle's relative path names one of its own files (shipped by job
    attachments): it is left out, and said so, rather than refusing the job."""
    obj = {stem: yaml.safe_load((BLENDER_BUNDLE / f"{stem}.yaml").read_text())
           for stem in ("template", "asset_references", "parameter_values")}
    obj["parameter_values"]["parameterValues"][6]["value"] = "scenes/x.blend"
    notes: list[str] = []
    m = bundle_json_to_manifest(obj, "request", notes=notes)
    assert not any("x.blend" in i.path for i in m.inputs)
    assert notes == ["parameter BlenderFile: 'scenes/x.blend' is the bundle's own file, outside the studio roots: "
                     "job attachments ship it with the job; not warmed"]
    with pytest.raises(ManifestError, match="templat: unknown key"):
        bundle_json_to_manifest({"templat": {}}, "request")


def test_deadline10_blender_job() -> None:
    m = job_to_manifest((D10 / "blender_job_info.job").read_text(), (D10 / "blender_plugin_info.job").read_text(),
                        "blender_job_info.job", extra_inputs=["/studio/proj/assets/tex/studio_hdri.exr"])
    assert m.job == "shot100_lighting_v002"
    assert m.frames == tuple(range(1, 25, 2))     # "1-24x2,3": 3 is already there
    assert (m.show, m.shot, m.priority, m.gateways) == ("proj", "shot100", 60, ("gw-a",))
    paths = [i.path for i in m.inputs]
    assert paths[0] == "/studio/proj/shot100/shot100_lighting_v001.blend"
    assert "/studio/proj/assets/tex/studio_hdri.exr" in paths                   # an auxiliary file
    tex = next(i for i in m.inputs if "UDIM" in i.path)                           # user patterns stay patterns
    assert tex.pattern.has_tile
    assert not any("render" in p for p in paths)                                  # OutputFile is not an input


def test_deadline10_maya_job() -> None:
    m = job_to_manifest((D10 / "maya_job_info.job").read_text(), (D10 / "maya_plugin_info.job").read_text(), "maya.job")
    assert m.job == "shot200_anim_v007 - beauty"
    assert m.frames == tuple(range(1001, 1101, 5))
    assert [i.path for i in m.inputs] == ["/studio/proj/shot200/maya/scenes/shot200_anim_v007.mb"]


@pytest.mark.parametrize("job, plugin, where, message", [
    ("Name=a\nFrames=1-10\nPriority\n", "SceneFile=/s/a.ma", "job.job:3", "expected Key=Value"),
    ("Name=a\nFrames=1-10x\n", "SceneFile=/s/a.ma", "job.job:2", "Frames:"),
    ("Name=a\nframes=1\nFrames=2\n", "SceneFile=/s/a.ma", "job.job:3", "Frames: given twice (first on line 2)"),
    ("Name=a\n", "SceneFile=/s/a.ma", "job.job", "Frames: missing"),
    ("Name=a\nFrames=1\n", "Threads=0\nSceneFile=C:\\proj\\a.ma\n", "plugin.job:2",
     "SceneFile: 'C:\\\\proj\\\\a.ma' is a Windows path that no entry of the site's path_map maps"),
    ("Name=a\nFrames=1\n", "SceneFile=scenes/a.ma\n", "plugin.job:1", "not an absolute POSIX path"),
    ("Name=a\nFrames=1\n", "Threads=0\n", "plugin.job", "no SceneFile"),
    ("Name=a\nFrames=1\nPriority=high\n", "SceneFile=/s/a.ma", "job.job:3", "Priority: expected an integer"),
])
def test_deadline10_bad_files_name_file_line_and_key(job: str, plugin: str, where: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        job_to_manifest(job, plugin, "job.job", plugin_where="plugin.job")
    assert err.value.where == where and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("frames", [[1], [1, 2], list(range(1, 11)), [5, 4, 3], [-3, -2, -1, 0, 4, 8, 12, 7],
                                    [1001, 1003, 1005, 1010, 1020, 1030, 1031]])
def test_a_farms_frames_read_back_in_order(frames: list[int]) -> None:
    assert parse_frames(format_frames(frames), "t") == tuple(frames)


class _Counting:
    """Stands in for a regex (or the `re` module): counts the characters handed to it, then delegates."""

    def __init__(self, inner: object, seen: list[int]) -> None:
        self.inner, self.seen = inner, seen

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: object, **kw: object) -> object:
            self.seen.append(sum(len(a) for a in args if isinstance(a, str)))
            return attr(*args, **kw)
        return counted


def test_a_plugin_info_of_33k_keys_is_read_in_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadline 10 files are read in one pass: the characters given to any regex stay a small multiple of
    the file's size (a search over the whole text per key once cost 113 s of CPU for this 1 MiB file)."""
    from prewarm.flow.adapters import deadline10

    seen: list[int] = []
    for name in ("re", "_EXTRA_KEY", "_INPUT_KEY", "_NOT_INPUT"):
        monkeypatch.setattr(deadline10, name, _Counting(getattr(deadline10, name), seen))
    plugin = "".join(f"Texture{i:05d}File=/studio/proj/assets/tex/t{i:05d}.tx\n" if i % 16 == 0 else
                     f"RenderSetting{i:05d}=some value of the renderer\n" for i in range(33_000))
    assert len(plugin) > 1_000_000
    m = job_to_manifest("Name=big\nFrames=1-2\n", plugin, "job.job")
    assert len(m.inputs) == 2063 and m.inputs[-1].path == "/studio/proj/assets/tex/t32992.tx"
    assert sum(seen) < 2 * len(plugin)


def test_a_bundle_without_a_frame_task_parameter_is_one_task(bundle: Path) -> None:
    """A job of single tasks still reads its inputs: planned as one task, said in a note."""
    (bundle / "template.yaml").write_text((bundle / "template.yaml").read_text().replace("Frame}}", "Camera}}")
                                          .replace("- name: Frame\n", "- name: Camera\n"))
    notes: list[str] = []
    m = bundle_to_manifest(bundle, "bundle", notes=notes)
    assert m.frames == (1,) and m.inputs[0].path == "/studio/proj/shot100/shot100_lighting_v001.blend"
    assert notes == ["no step has a Frame task parameter: planned as one task (frame 1)"]
