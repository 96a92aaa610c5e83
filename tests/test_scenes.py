"""The pure part of scene inputs: which inputs are scenes, the expansion, the plan's origins."""

from __future__ import annotations

import pytest

from prewarm.errors import InputError, ManifestError
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.inputs import Missing, ResolvedFile
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.model import Plan
from prewarm.plan.predict import predict
from prewarm.plan.prediction import Candidate
from prewarm.plan.records import FileInfo, Finding, Origin, PlannedRange
from prewarm.plan.scenes import (
    SceneDep,
    SceneDeps,
    SceneKind,
    SceneLimits,
    SceneRequest,
    Unresolved,
    expand_scenes,
    frames_in_steps,
    scene_kind,
)
from prewarm.plan.stats import PlanStats, PredictStats, SceneStats, TraceStats

S = "/studio/proj"


def manifest(*inputs: str, frames: str = "1-4"):  # type: ignore[no-untyped-def]
    lines = "\n".join(f"  - {i}" for i in inputs)
    return parse_manifest(f"job: j\nframes: {frames}\ninputs:\n{lines}\n", "job.yaml")


def test_which_inputs_are_scenes() -> None:
    m = manifest(f"{S}/a.usd", f"{S}/b.USDA", f"{S}/c.usdc", f"{S}/d.usdz", f"{S}/e.blend", f"{S}/f.blend1",
                 f"{S}/shot.####.usd", f"{S}/dir.usd/", f"{{usd: {S}/stage.v3}}", f"{{blend: {S}/x}}",
                 f"{{scene: {S}/y}}", f"{{path: {S}/g.usd, expand: false}}", f"{{path: {S}/h.blend, literal: true}}")
    assert [scene_kind(i) for i in m.inputs] == [
        SceneKind.USD, SceneKind.USD, SceneKind.USD, SceneKind.USD, SceneKind.BLEND, None,
        None, None, SceneKind.USD, SceneKind.BLEND, SceneKind.AUTO, None, SceneKind.BLEND]


@pytest.mark.parametrize("entry, message", [
    (f"{{usd: {S}/a.usd, path: {S}/b}}", "inputs[0].usd: give one of path, usd, blend, scene"),
    (f"{{usd: {S}/shot.####.usd}}", "inputs[0].usd: a scene is one file: no frame or tile tokens"),
    (f"{{scene: {S}/dir/}}", "inputs[0].scene: a scene is a file, not a folder"),
    (f"{{path: {S}/a.usd, expand: maybe}}", "inputs[0].expand: expected true or false"),
])
def test_scene_long_forms_refuse_mistakes_in_one_line(entry: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        manifest(entry)
    assert str(err.value).startswith(f"job.yaml:4: {message}"), err.value


@pytest.mark.parametrize("starts, frames, blur, expected", [
    ([1, 2, 3], [1, 2, 3], 0, [(1,), (2,), (3,)]),
    ([1, 2, 3], [1, 2, 3], 1, [(1, 2), (1, 2, 3), (2, 3)]),
    ([1, 3], [0, 2, 9], 0, [(0, 2), (9,)]),              # held before the first start and after the last
    ([1, 3], [2], 0.5, [(2,), ()]),                     # a window inside one interval
    ([10.0], [1, 50], 1, [(1, 50)]),
    ([], [1], 1, []),
])
def test_frames_in_steps(starts: list[float], frames: list[int], blur: float, expected: list[tuple[int, ...]]) -> None:
    assert frames_in_steps(starts, frames, blur) == expected


class Reader:
    """A reader that answers from a table: the IO passed in, as `expand_scenes` wants it."""

    def __init__(self, answers: dict[str, SceneDeps]) -> None:
        self.answers = answers
        self.asked: list[SceneRequest] = []

    def __call__(self, request: SceneRequest) -> SceneDeps:
        self.asked.append(request)
        return self.answers[request.path]


def test_expansion_appends_dependencies_once_with_their_origin() -> None:
    m = manifest(f"{S}/shot.usda", f"{S}/tex/shared.png", f"{S}/b.blend", frames="1-3")
    read = Reader({
        f"{S}/shot.usda": SceneDeps(deps=(
            SceneDep(f"{S}/asset.usd", f"{S}/shot.usda"),
            SceneDep(f"{S}/tex/shared.png", f"{S}/asset.usd"),                  # the manifest names it too
            SceneDep(f"{S}/tex/d.<UDIM>.tx", f"{S}/asset.usd", pattern=True),
            SceneDep(f"{S}/clip.0002.usd", f"{S}/shot.usda", frames=(1, 2, 3)),
            SceneDep("/opt/renderer/lib/noise.tx", f"{S}/shot.usda"),           # outside the roots
        ), layers=2),
        f"{S}/b.blend": SceneDeps(deps=(SceneDep(f"{S}/asset.usd", f"{S}/b.blend"),), layers=1),
    })
    out = expand_scenes(m, read, allowed=lambda p: p.startswith(S + "/"))
    added = out.manifest.inputs[len(m.inputs):]
    assert [(i.path, i.frames, i.line, i.expand) for i in added] == [
        (f"{S}/asset.usd", None, 4, False), (f"{S}/tex/d.<UDIM>.tx", None, 4, False),
        (f"{S}/clip.0002.usd", (1, 2, 3), 4, False)]
    assert added[1].pattern.has_tile and added[0].pattern.is_literal
    assert out.origins == {3: Origin(f"{S}/shot.usda", f"{S}/shot.usda"), 4: Origin(f"{S}/shot.usda", f"{S}/asset.usd"),
                           5: Origin(f"{S}/shot.usda", f"{S}/shot.usda")}
    assert out.stats == SceneStats(scenes=2, scene_layers=3, scene_inputs=3, scene_unresolved=0, scene_outside_roots=1)
    assert [r.frames for r in read.asked] == [(1, 2, 3), (1, 2, 3)]


def test_expansion_findings_name_the_layer_and_are_bounded() -> None:
    m = manifest(f"{S}/a.usd", f"{S}/gone.usd", f"{S}/bad.blend")
    read = Reader({
        f"{S}/a.usd": SceneDeps(unresolved=tuple(Unresolved(f"{S}/t{i}.png", f"{S}/lay.usd") for i in range(7)),
                                notes=("more than 5 dependencies: the rest are not planned",)),
        f"{S}/gone.usd": SceneDeps(absent=True),
        f"{S}/bad.blend": SceneDeps(error="not a .blend file, or a corrupt one"),
    })
    out = expand_scenes(m, read, limits=SceneLimits(max_findings=3))
    assert out.findings == (
        Finding(f"{S}/a.usd", "more than 5 dependencies: the rest are not planned", 4),
        Finding(f"{S}/t0.png", f"not found (asked for by {S}/lay.usd)", 4),
        Finding(f"{S}/t1.png", f"not found (asked for by {S}/lay.usd)", 4),
        Finding(f"{S}/t2.png", f"not found (asked for by {S}/lay.usd)", 4),
        Finding(f"{S}/a.usd", "4 more unresolved paths in the scene (the first 3 are listed)", 4),
        Finding(f"{S}/bad.blend", "cannot read the scene: not a .blend file, or a corrupt one", 6),
    )
    assert out.stats.scenes == 2 and out.stats.scene_unresolved == 7   # the absent one is resolution's


def test_a_reader_error_becomes_the_manifests_line() -> None:
    def read(request: SceneRequest) -> SceneDeps:
        raise InputError(request.path, "a USD stage: reading it needs usd-core")

    with pytest.raises(ManifestError) as err:
        expand_scenes(manifest(f"{S}/x.txt", f"{S}/a.usd"), read)
    assert str(err.value) == f"job.yaml:5: {S}/a.usd: a USD stage: reading it needs usd-core"


def test_a_manifest_without_scenes_is_left_alone() -> None:
    m = manifest(f"{S}/a.abc", f"{S}/t.<UDIM>.tx")
    out = expand_scenes(m, Reader({}))
    plan = Plan("j", (1,), ())
    assert out.manifest is m and out.annotate(plan, [], []) is plan


def test_annotate_gives_files_their_origin_and_missing_ones_their_layer() -> None:
    m = manifest(f"{S}/shot.usda", f"{S}/tex/own.png")
    read = Reader({f"{S}/shot.usda": SceneDeps(deps=(SceneDep(f"{S}/tex/a.png", f"{S}/asset.usd"),
                                                   SceneDep(f"{S}/tex/own2.png", f"{S}/shot.usda"),
                                                   SceneDep(f"{S}/tex/gone.png", f"{S}/asset.usd")),
                                             unresolved=(Unresolved(f"{S}/x.png", f"{S}/asset.usd"),))})
    out = expand_scenes(m, read)
    info = {p: FileInfo(p, 10, 1.0) for p in (f"{S}/tex/a.png", f"{S}/tex/own.png", f"{S}/shot.usda")}
    files = [ResolvedFile(f"{S}/shot.usda", 10, 1.0, 0), ResolvedFile(f"{S}/tex/own.png", 10, 1.0, 1),
             ResolvedFile(f"{S}/tex/a.png", 10, 1.0, 2), ResolvedFile(f"{S}/tex/own.png", 10, 1.0, 3)]
    missing = [Missing(f"{S}/tex/gone.png", 4, "not found", 4)]
    plan = Plan("j", (1,), tuple(PlannedRange(p, 0, 10) for p in info), files=info,
                missing=(Finding(f"{S}/tex/gone.png", "not found", 4),), stats=PlanStats(TraceStats(), 4096, PredictStats()))
    done = out.annotate(plan, files, missing)
    assert done.origins == {f"{S}/tex/a.png": Origin(f"{S}/shot.usda", f"{S}/asset.usd")}
    assert done.missing == (Finding(f"{S}/tex/gone.png", f"not found (asked for by {S}/asset.usd)", 4),
                            Finding(f"{S}/x.png", f"not found (asked for by {S}/asset.usd)", 4))
    assert done.stats is not None and done.stats.scenes is not None and done.stats.scenes.scene_files_planned == 1


def test_origins_survive_the_plan_json_and_old_plans_still_load() -> None:
    info = FileInfo(f"{S}/t.png", 10, 1.0)
    plan = Plan("j", (1,), (PlannedRange(info.path, 0, 10),), files={info.path: info},
                origins={info.path: Origin(f"{S}/shot.usda", f"{S}/asset.usd")})
    data = plan.to_json()
    assert data["files"][info.path] == {"size": 10, "mtime": 1.0, "scene": f"{S}/shot.usda", "layer": f"{S}/asset.usd"}
    assert Plan.from_json(data).origins == plan.origins
    del data["files"][info.path]["scene"], data["files"][info.path]["layer"]
    old = Plan.from_json(data)
    assert old.origins == {} and old.files == plan.files
    data["files"][info.path]["scene"] = "relative/x.usd"
    with pytest.raises(InputError, match="scene: expected a normalised absolute path"):
        Plan.from_json(data)


def test_candidate_frames_limit_a_scene_file_to_the_frames_reading_it() -> None:
    sizes = {f"{S}/clip.0002.usd": FileInfo(f"{S}/clip.0002.usd", 100, 1.0)}
    result = predict([1, 2, 3, 4], [Candidate(f"{S}/clip.0002.usd", frames=(1, 2, 3, 9))], TraceSet(), sizes.get)
    assert [(p.path, p.frames) for p in result.predictions] == [(f"{S}/clip.0002.usd", (1, 2, 3))]
