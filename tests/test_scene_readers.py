"""The scene readers on real files: stages built with usd-core, .blend files made by Blender.

Every read goes through `SceneReader`, as planning does: a child process per scene.
"""

from __future__ import annotations

import json
import shutil
import struct
import textwrap
from pathlib import Path

import pytest
from blender_asset_tracer import blendfile

from prewarm.errors import InputError
from prewarm.formats.blend import image_user_frame, sequence_member
from prewarm.formats.scenes import SceneReader
from prewarm.plan.scenes import (
    SceneDep,
    SceneDeps,
    SceneKind,
    SceneLimits,
    SceneRequest,
    Unresolved,
)
from prewarm.site.guard import Guard
from tests.fixtures.scenes import BLEND_DATA, STUDIO, SceneTree

EXPECTED = json.loads((BLEND_DATA / "expected_frames.json").read_text())


def read(tree: SceneTree, rel: str, frames: range | tuple[int, ...] = range(1, 5), kind: SceneKind = SceneKind.USD,
         **limits: float) -> SceneDeps:
    request = SceneRequest(f"{STUDIO}/{rel}", kind, tuple(frames), SceneLimits(**limits))  # type: ignore[arg-type]
    return SceneReader(Guard((STUDIO,), tree.path_map), grace=0.5)(request)


def by_path(found: SceneDeps) -> dict[str, SceneDep]:
    return {d.path.removeprefix(STUDIO + "/"): d for d in found.deps}


# ---------------------------------------------------------------- USD


def test_usd_closure_names_every_layer_and_asset_with_who_asked(usd_tree: SceneTree) -> None:
    found = read(usd_tree, "shot.usda")
    deps = by_path(found)
    asked = {p: d.layer.removeprefix(STUDIO + "/") for p, d in deps.items()}
    assert {p: asked[p] for p in ("layout.usda", "asset.usdc", "set.usda", "loop_a.usda", "loop_b.usda",
                                  "tex/rough.png", "tex/spec.png", "tex/diff.<UDIM>.png")} == {
        "layout.usda": "shot.usda", "asset.usdc": "shot.usda", "set.usda": "shot.usda",    # sublayer, reference, payload
        "loop_a.usda": "shot.usda", "loop_b.usda": "loop_a.usda",                          # the cycle, walked once
        "tex/rough.png": "asset.usdc", "tex/spec.png": "asset.usdc",                       # spec: an absolute studio path
        "tex/diff.<UDIM>.png": "asset.usdc"}
    assert deps["tex/diff.<UDIM>.png"].pattern and not any("diff.100" in p for p in deps)  # tiles: by listing the folder
    assert deps["vol/fire.####.vdb"].pattern and deps["vol/fire.####.vdb"].frames is None  # one file per frame
    assert found.unresolved == (Unresolved(f"{STUDIO}/tex/nope.png", f"{STUDIO}/asset.usdc"),)
    assert found.error is None and found.notes == () and found.layers == 16


def test_usd_clips_and_time_samples_are_per_frame_with_motion_blur_neighbours(usd_tree: SceneTree) -> None:
    deps = by_path(read(usd_tree, "shot.usda", frames=(1, 2, 3, 4)))
    clips = {p: d.frames for p, d in deps.items() if p.startswith("clips/")}
    # clip i is active from frame i; frame F reads what is active in [F-1, F+1]; clips 6-10 no frame reads
    assert clips == {"clips/anim.0001.usdc": (1, 2), "clips/anim.0002.usdc": (1, 2, 3),
                     "clips/anim.0003.usdc": (2, 3, 4), "clips/anim.0004.usdc": (3, 4), "clips/anim.0005.usdc": (4,)}
    # samples at 1 and 3, held: smoke.0001 until frame 3, smoke.0003 from then on
    assert deps["vol/smoke.0001.vdb"].frames == (1, 2, 3) and deps["vol/smoke.0003.vdb"].frames == (2, 3, 4)
    sharp = by_path(read(usd_tree, "shot.usda", frames=(7,), blur=0))
    assert [p for p in sharp if p.startswith("clips/")] == ["clips/anim.0007.usdc"]
    assert sharp["vol/smoke.0003.vdb"].frames == (7,) and "vol/smoke.0001.vdb" not in sharp


def test_usd_template_clips_bring_the_job_frames_clips(usd_tree: SceneTree) -> None:
    (usd_tree.root / "templ.usda").write_text(textwrap.dedent("""\
        #usda 1.0
        def Xform "Anim" (
            clips = {
                dictionary default = {
                    string templateAssetPath = "./clips/anim.####.usdc"
                    double templateStartTime = 1
                    double templateEndTime = 10
                    double templateStride = 1
                    string primPath = "/Anim"
                }
            }
        )
        {
        }
        """))
    deps = by_path(read(usd_tree, "templ.usda", frames=(3, 8), blur=0))
    assert {p: d.frames for p, d in deps.items()} == {"clips/anim.0003.usdc": (3,), "clips/anim.0008.usdc": (8,)}


def test_usd_unreadable_layers(usd_tree: SceneTree) -> None:
    usd_tree.local(f"{STUDIO}/set.usda").write_text("#usda 1.0\ndef X \"a\" {\n")
    found = read(usd_tree, "shot.usda")
    assert [(u.path, u.layer) for u in found.unresolved] == [
        (f"{STUDIO}/set.usda", f"{STUDIO}/shot.usda"), (f"{STUDIO}/tex/nope.png", f"{STUDIO}/asset.usdc")]
    assert found.unresolved[0].reason.startswith("cannot read the layer: ")
    assert "asset.usdc" in by_path(found) and "set.usda" not in by_path(found)   # the rest is still there
    usd_tree.file("crate.usdc").write_bytes(b"PXR-USDC" + b"\xff" * 200)
    crate = read(usd_tree, "crate.usdc")
    assert crate.deps == () and crate.error is not None and "crate file version mismatch" in crate.error
    assert "\n" not in crate.error and "\xff" not in crate.error


def test_usd_thousands_of_unresolved_assets_and_the_dependency_cap(usd_tree: SceneTree) -> None:
    attrs = "\n".join(f"    asset t{i} = @./missing/t{i}.png@" for i in range(3000))
    (usd_tree.root / "many.usda").write_text(f'#usda 1.0\ndef "Many"\n{{\n{attrs}\n}}\n')
    found = read(usd_tree, "many.usda")
    assert len(found.unresolved) == 3000 and found.unresolved[0].layer == f"{STUDIO}/many.usda"
    capped = read(usd_tree, "many.usda", max_deps=100)
    assert len(capped.unresolved) == 100
    assert capped.notes == ("more than 100 dependencies: the rest are not planned",)


def test_a_scene_told_by_its_content(usd_tree: SceneTree) -> None:
    shutil.copy(usd_tree.local(f"{STUDIO}/shot.usda"), usd_tree.root / "shot_v3.usd")
    assert "asset.usdc" in by_path(read(usd_tree, "shot_v3.usd", kind=SceneKind.AUTO))
    shutil.copy(BLEND_DATA / "shot" / "shot.blend", usd_tree.root / "lighting_v3")
    assert "cache/crate_anim.abc" in by_path(read(usd_tree, "lighting_v3", kind=SceneKind.AUTO))   # // paths: beside it
    usd_tree.file("notes.txt").write_text("hello")
    assert read(usd_tree, "notes.txt", kind=SceneKind.AUTO).error == "neither a USD layer nor a .blend file"
    assert read(usd_tree, "absent.usd").absent


def test_without_usd_core_a_usd_scene_is_one_line_naming_the_extra(usd_tree: SceneTree, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "no_usd" / "pxr"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'pxr'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    with pytest.raises(InputError) as err:
        read(usd_tree, "shot.usda")
    assert str(err.value) == (f"{STUDIO}/shot.usda: a USD stage: reading it needs usd-core, the optional extra "
                              "'scenes' (pip install 'prewarm[scenes]'), or `expand: false`")


# ---------------------------------------------------------------- Blender


def test_blend_closure_with_libraries_followed_recursively(blend_tree: SceneTree) -> None:
    found = read(blend_tree, "shot/shot.blend", kind=SceneKind.BLEND)
    shared = {p: d.layer.removeprefix(STUDIO + "/") for p, d in by_path(found).items() if d.frames is None}
    assert shared == {
        "shot/cache/crate_anim.abc": "shot/shot.blend",           # the Alembic cache
        "assets/tex/crate_diff.<UDIM>.png": "shot/shot.blend",    # the UDIM set, as a tile pattern
        "assets/tex/studio_hdri.exr": "shot/shot.blend",          # by absolute studio path, through the path map
        "assets/tex/missing_sign.png": "shot/shot.blend",         # named; resolution reports it missing
        "lib/prop.blend": "shot/shot.blend",
        "lib/tex/prop_diff.png": "lib/prop.blend",                # a linked material's image (zstd library)
        "lib/cycle_a.blend": "shot/shot.blend",
        "lib/cycle_b.blend": "lib/cycle_a.blend",
        "lib/tex/b_diff.png": "lib/cycle_b.blend",
        "lib/tex/a_group.png": "lib/cycle_a.blend",               # back in cycle_a: the cycle ends there
    }
    assert by_path(found)["assets/tex/crate_diff.<UDIM>.png"].pattern
    assert found.unresolved == () and found.error is None and found.layers == 4     # shot, prop, cycle_a, cycle_b


def test_blend_image_sequence_members_are_blenders_own(blend_tree: SceneTree) -> None:
    frames = range(1, 13)
    found = read(blend_tree, "shot/shot.blend", frames=frames, kind=SceneKind.BLEND)
    reads: dict[int, set[str]] = {f: set() for f in frames}
    for d in found.deps:
        for f in d.frames or ():
            reads[f].add(d.path.rpartition("/")[2])
    assert reads == {f: {f"monitor.{n:04d}.png" for n in EXPECTED["frames"][str(f)].values()} for f in frames}


@pytest.mark.parametrize("name", ["Monitor", "MonitorLoop"])
def test_image_user_frame_is_blenders_rule(name: str) -> None:
    u = EXPECTED["image_users"][name]
    assert [image_user_frame(f, u["frame_start"], u["frame_offset"], u["frame_duration"], u["cyclic"])
            for f in range(1, 13)] == [EXPECTED["frames"][str(f)][name] for f in range(1, 13)]


def test_sequence_member_keeps_the_padding() -> None:
    assert sequence_member("/s/seq/monitor.0001.png", 12) == "/s/seq/monitor.0012.png"
    assert sequence_member("/s/v2/shot_v2_1.exr", 7) == "/s/v2/shot_v2_7.exr"
    assert sequence_member("/s/plain.png", 3) is None


def test_corrupt_blend_files(blend_tree: SceneTree) -> None:
    shot = blend_tree.local(f"{STUDIO}/shot/shot.blend")
    data = shot.read_bytes()
    blend_tree.file("shot/cut.blend").write_bytes(data[: len(data) // 3])
    blend_tree.file("shot/junk.blend").write_bytes(b"\0\1\2 not blender " * 100)
    for rel in ("shot/cut.blend", "shot/junk.blend"):
        found = read(blend_tree, rel, kind=SceneKind.BLEND)
        assert found.deps == () and found.error and "\n" not in found.error, (rel, found)
    blend_tree.local(f"{STUDIO}/lib/prop.blend").write_bytes(b"BLENDER-v500 and then nothing")
    found = read(blend_tree, "shot/shot.blend", kind=SceneKind.BLEND)
    assert [(u.path, u.reason.split(":")[0]) for u in found.unresolved] == [
        (f"{STUDIO}/lib/prop.blend", "cannot read the library")]
    assert "lib/tex/b_diff.png" in by_path(found)


def test_a_blend_that_loops_forever_is_stopped(blend_tree: SceneTree) -> None:
    """A node whose `next` points at itself: BAT would walk the list forever."""
    shot = blend_tree.local(f"{STUDIO}/shot/shot.blend")
    bf = blendfile.BlendFile(shot)
    material = next(b for b in bf.blocks if b.code == b"MA")
    tree = material.get_pointer(b"nodetree")
    node = tree.get_pointer((b"nodes", b"first")) if tree is not None else None
    assert node is not None and bf.structs[node.sdna_index].fields[0].name.name_only == b"next"
    offset, address = node.file_offset, node.addr_old
    bf.close()
    with open(shot, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<Q", address))
    found = read(blend_tree, "shot/shot.blend", kind=SceneKind.BLEND, seconds=1)
    assert found.error == "reading it took more than 1 s (stopped)" and found.deps == ()


# ---------------------------------------------------------------- the guard, with evidence


def traced_reader(tree: SceneTree, tmp_path: Path) -> tuple[SceneReader, Path]:
    """A SceneReader whose child process runs under strace: what it opens is logged, not taken on trust."""
    import sys

    log = tmp_path / "child.strace"
    wrapper = tmp_path / "python-under-strace"
    wrapper.write_text(f"#!/bin/sh\nexec strace -f -qq -e trace=open,openat,openat2,newfstatat,statx "
                       f"-o {log} {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return SceneReader(Guard((STUDIO,), tree.path_map), python=str(wrapper), grace=5), log


def test_a_hostile_stage_never_makes_the_reader_open_files_outside_the_roots(usd_tree: SceneTree,
                                                                              tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.usda").write_text('#usda 1.0\ndef "S" (references = @./deeper.usda@) {}\n')
    (outside / "deeper.usda").write_text("#usda 1.0\n")
    (usd_tree.root / "escape").symlink_to(outside)
    (usd_tree.root / "hostile.usda").write_text(textwrap.dedent(f"""\
        #usda 1.0
        (
            subLayers = [@{outside}/secret.usda@, @./escape/secret.usda@, @./layout.usda@]
        )
        def "A" (references = @/etc/hostname@) {{}}
        """))
    reader, log = traced_reader(usd_tree, tmp_path)
    found = reader(SceneRequest(f"{STUDIO}/hostile.usda", SceneKind.USD, (1, 2), SceneLimits()))
    opened = log.read_text()
    assert "hostile.usda" in opened and "layout.usda" in opened, "the trace sees the child's opens"
    assert str(outside) not in opened and "/etc/hostname" not in opened
    assert any("outside the allowed roots: not opened" in n for n in found.notes)
    assert not any(str(outside) in d.path or "escape" in d.path for d in found.deps)
    assert f"{STUDIO}/layout.usda" in {d.path for d in found.deps}, "what is inside the roots is still read"


def test_a_scene_file_that_is_a_symlink_out_of_the_roots_is_not_read(usd_tree: SceneTree, tmp_path: Path) -> None:
    outside = tmp_path / "outside.usda"
    outside.write_text("#usda 1.0\n")
    (usd_tree.root / "linked.usda").symlink_to(outside)
    reader, log = traced_reader(usd_tree, tmp_path)
    found = reader(SceneRequest(f"{STUDIO}/linked.usda", SceneKind.USD, (1,), SceneLimits()))
    assert found.error is not None and "leads outside the allowed roots" in found.error
    assert not log.exists(), "no child was even started"


def test_blend_libraries_behind_a_symlink_out_of_the_roots_are_never_opened(blend_tree: SceneTree,
                                                                            tmp_path: Path) -> None:
    outside = tmp_path / "outside_lib"
    shutil.move(str(blend_tree.root / "lib"), outside)
    (blend_tree.root / "lib").symlink_to(outside)
    reader, log = traced_reader(blend_tree, tmp_path)
    found = reader(SceneRequest(f"{STUDIO}/shot/shot.blend", SceneKind.BLEND, (1, 2), SceneLimits()))
    opened = log.read_text()
    assert "shot.blend" in opened and str(outside) not in opened
    assert any("libraries outside the allowed roots: not opened" in n for n in found.notes)
    assert f"{STUDIO}/shot/cache/crate_anim.abc" in {d.path for d in found.deps}, "the scene itself is still read"
