"""Make the .blend files of tests/data/blend with Blender itself (PyPI `bpy`).

Run once, by hand, when the files need remaking (the tests do not need bpy):

    python -m venv /tmp/bpy && /tmp/bpy/bin/pip install bpy==5.0.1
    /tmp/bpy/bin/python tests/data/blend/make_blends.py

What the files hold, laid out as a studio tree (`/studio/proj` is the root;
`shot/` and `lib/` are the folders of this directory):

- `shot/shot.blend`: the scene of a job.
  - material Crate: a UDIM texture `//../assets/tex/crate_diff.<UDIM>.png` (tiles 1001-1002);
  - material Monitor: an image sequence `//anim_tex/monitor.0001.png` read through two
    image users, one from frame 3 with offset 10 for 5 frames, one cyclic (4 frames);
  - material Sign: `//../assets/tex/missing_sign.png`, which the tests never create;
  - the world: an environment map by absolute studio path `/studio/proj/assets/tex/studio_hdri.exr`;
  - an Alembic cache `//cache/crate_anim.abc` (a Mesh Sequence Cache modifier);
  - an object linked from `//../lib/prop.blend`, and one linked from `//../lib/cycle_a.blend`.
- `lib/prop.blend`: object Prop whose material uses `//tex/prop_diff.png` (relative to lib/).
- `lib/cycle_a.blend` and `lib/cycle_b.blend` link from each other: object A (a) uses material
  BMat (b, with `//tex/b_diff.png`), whose node group GroupA comes from a (`//tex/a_group.png`).
- `expected_frames.json`: for scene frames 1-12, the member of the image sequence each image
  user shows, as Blender's own evaluated `ImageUser.frame_current` says: the reference the
  reader's frame mapping is tested against.

Images and caches are referenced, not packed. Only the scene and what it uses is written
(`bpy.data.libraries.write`: no screens or workspaces), `shot.blend` as is and the libraries
with Blender's Compress option (zstd), so both kinds of file are read.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
SHOT = os.path.join(HERE, "shot")
LIB = os.path.join(HERE, "lib")

warnings.simplefilter("ignore", DeprecationWarning)


def empty(path: str) -> bpy.types.Scene:
    """A new file already named `path`, so that `//` paths and links are relative to it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path)
    return bpy.context.scene


def save(path: str, compress: bool = False, extra: set[bpy.types.ID] | None = None) -> None:
    """Only the scene and what it uses (no window manager, screens or workspaces): small files."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.data.libraries.write(path, {bpy.context.scene, *(extra or ())}, path_remap="RELATIVE", compress=compress)


def mesh_object(scene: bpy.types.Scene, name: str) -> bpy.types.Object:
    me = bpy.data.meshes.new(name)
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new(name, me)
    scene.collection.objects.link(ob)
    return ob


def image_material(ob: bpy.types.Object, name: str, image: bpy.types.Image) -> bpy.types.ShaderNodeTexImage:
    mat = bpy.data.materials.new(name)
    node = mat.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    ob.data.materials.append(mat)
    return node


def image(name: str, path: str, source: str = "FILE") -> bpy.types.Image:
    img = bpy.data.images.new(name, 4, 4, tiled=source == "TILED")
    if source == "TILED":
        img.tiles.new(1002)
    img.source = source
    img.filepath = path
    return img


def link(path: str, name: str, scene: bpy.types.Scene) -> None:
    with bpy.data.libraries.load(path, link=True, relative=True) as (_src, dst):
        dst.objects = [name]
    for ob in dst.objects:
        scene.collection.objects.link(ob)


def make_prop() -> None:
    scene = empty(os.path.join(LIB, "prop.blend"))
    ob = mesh_object(scene, "Prop")
    image_material(ob, "PropMat", image("PropDiff", "//tex/prop_diff.png"))
    save(os.path.join(LIB, "prop.blend"), compress=True)


def make_cycle() -> None:
    """a.blend uses a material of b.blend whose node group comes from a.blend: a -> b -> a."""
    a, b = os.path.join(LIB, "cycle_a.blend"), os.path.join(LIB, "cycle_b.blend")
    scene = empty(a)
    mesh_object(scene, "A")
    group = bpy.data.node_groups.new("GroupA", "ShaderNodeTree")
    group.nodes.new("ShaderNodeTexImage").image = image("AGroupTex", "//tex/a_group.png")
    group.use_fake_user = True
    save(a, compress=True, extra={group})
    scene = empty(b)
    with bpy.data.libraries.load(a, link=True, relative=True) as (_src, dst):
        dst.node_groups = ["GroupA"]
    ob = mesh_object(scene, "B")
    node = image_material(ob, "BMat", image("BDiff", "//tex/b_diff.png"))
    group_node = node.id_data.nodes.new("ShaderNodeGroup")
    group_node.node_tree = dst.node_groups[0]
    save(b, compress=True)
    bpy.ops.wm.open_mainfile(filepath=a)
    with bpy.data.libraries.load(b, link=True, relative=True) as (_src, dst):
        dst.materials = ["BMat"]
    bpy.data.objects["A"].data.materials.append(dst.materials[0])
    save(a, compress=True, extra={bpy.data.node_groups["GroupA"]})


def alembic_cache(scene: bpy.types.Scene, ob: bpy.types.Object) -> None:
    """A real CacheFile datablock: export a tiny archive, import it, then point it at the shot's path."""
    with tempfile.TemporaryDirectory() as tmp:
        abc = os.path.join(tmp, "crate_anim.abc")
        bpy.ops.wm.alembic_export(filepath=abc, start=1, end=1)
        bpy.ops.wm.alembic_import(filepath=abc)
        cache = bpy.data.cache_files[-1]
        for imported in list(bpy.context.selected_objects):
            if imported.name != ob.name:
                bpy.data.objects.remove(imported)
        mod = ob.modifiers.new("Cache", "MESH_SEQUENCE_CACHE")
        mod.cache_file = cache
        mod.object_path = "/Crate/CrateShape"
        cache.filepath = "//cache/crate_anim.abc"


def make_shot() -> dict[str, dict[str, int]]:
    scene = empty(os.path.join(SHOT, "shot.blend"))
    scene.frame_start, scene.frame_end = 1, 12
    crate = mesh_object(scene, "Crate")
    image_material(crate, "Crate", image("CrateDiff", "//../assets/tex/crate_diff.<UDIM>.png", "TILED"))
    monitor = mesh_object(scene, "Monitor")
    seq = image("Monitor", "//anim_tex/monitor.0001.png", "SEQUENCE")
    users = {}
    for mat_name, start, offset, duration, cyclic in (("Monitor", 3, 10, 5, False), ("MonitorLoop", 1, 0, 4, True)):
        node = image_material(monitor, mat_name, seq)
        iu = node.image_user
        iu.frame_start, iu.frame_offset, iu.frame_duration = start, offset, duration
        iu.use_cyclic, iu.use_auto_refresh = cyclic, True
        users[mat_name] = node.name
    sign = mesh_object(scene, "Sign")
    image_material(sign, "Sign", image("SignDiff", "//../assets/tex/missing_sign.png"))
    scene.world = bpy.data.worlds.new("World")
    env = scene.world.node_tree.nodes.new("ShaderNodeTexEnvironment")
    env.image = image("HDRI", "/studio/proj/assets/tex/studio_hdri.exr")
    alembic_cache(scene, crate)
    link(os.path.join(LIB, "prop.blend"), "Prop", scene)
    link(os.path.join(LIB, "cycle_a.blend"), "A", scene)
    bpy.data.images.new("Unused", 4, 4)   # no user: Blender does not save it

    expected: dict[str, dict[str, int]] = {}
    for frame in range(1, 13):
        scene.frame_set(frame)
        graph = bpy.context.evaluated_depsgraph_get()
        expected[str(frame)] = {
            mat_name: bpy.data.materials[mat_name].evaluated_get(graph).node_tree.nodes[node].image_user.frame_current
            for mat_name, node in users.items()}
    scene.frame_set(1)
    save(os.path.join(SHOT, "shot.blend"))
    return expected


def main() -> None:
    make_prop()
    make_cycle()
    expected = make_shot()
    with open(os.path.join(HERE, "expected_frames.json"), "w") as out:
        json.dump({"bpy": bpy.app.version_string, "image_users": {
            "Monitor": {"frame_start": 3, "frame_offset": 10, "frame_duration": 5, "cyclic": False},
            "MonitorLoop": {"frame_start": 1, "frame_offset": 0, "frame_duration": 4, "cyclic": True}},
            "frames": expected}, out, indent=1)
    for root, _, files in os.walk(HERE):
        for name in sorted(files):
            if name.endswith(".blend"):
                path = os.path.join(root, name)
                print(f"{os.path.relpath(path, HERE)}: {os.path.getsize(path):,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
