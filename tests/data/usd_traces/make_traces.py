"""Record what a usd-core process reads when it opens a stage and reads values at a frame.

    python tests/data/usd_traces/make_traces.py     # with usd-core installed, strace on PATH

Writes, beside this script:
- `traces/frame.NNNN.strace.gz` for frames 1-8: one process per frame opening `shot.usdc`
  and reading every attribute at that frame, run with `USDC_USE_PREAD=1` so that crate
  reads are `pread64` calls strace can see;
- `mmap/frame.0001.strace.gz`: frame 1 with usd-core's default, which maps crate files
  (`mmap`), so the reads themselves are page faults no trace shows;
- `sizes.json`: every file of the stage and its size (tests recreate them as sparse files).

The stage: `shot.usdc` references `asset.usdc` (a mesh whose 20,000 points are sampled at
frames 1-8: each frame's values are their own 240 KB block) and drives `/World/Anim` with
value clips `clips/anim.000N.usdc`, one per frame, with a clip manifest
(`clips/manifest.usda`: without one, usd-core opens every clip to learn what they hold). The traces were taken with
`strace -f -tt -T -y -e trace=openat,read,pread64,preadv,preadv2,lseek,mmap,newfstatat,statx,getdents64`;
only the lines touching the stage's folder (rewritten to `/studio/proj`; the working
directory to `/studio/render`, Python's own prefix to `/opt/python`) and every
`<... resumed>` line are kept, as in the
project's other real traces.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STUDIO = "/studio/proj"
RENDER = "/studio/render"
"""The recording process's working directory, as in the project's other real traces."""
FRAMES = range(1, 9)
STRACE = ["strace", "-f", "-tt", "-T", "-y", "-e",
          "trace=openat,read,pread64,preadv,preadv2,lseek,mmap,newfstatat,statx,getdents64"]


def build(root: str) -> None:
    from pxr import Gf, Sdf, Usd, UsdGeom, Vt  # type: ignore[import-untyped]

    os.makedirs(os.path.join(root, "clips"), exist_ok=True)
    asset = Usd.Stage.CreateNew(os.path.join(root, "asset.usdc"))
    mesh = UsdGeom.Mesh.Define(asset, "/Asset/Geo")
    points = mesh.CreatePointsAttr()
    for f in FRAMES:
        points.Set(Vt.Vec3fArray([Gf.Vec3f(i * 0.001 * f, i, f) for i in range(20000)]), f)
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray([3] * 6000))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray(list(range(18000))))
    asset.SetDefaultPrim(asset.GetPrimAtPath("/Asset"))
    asset.GetRootLayer().Save()
    for f in FRAMES:
        clip = Usd.Stage.CreateNew(os.path.join(root, "clips", f"anim.{f:04d}.usdc"))
        attr = clip.DefinePrim("/Anim", "Xform").CreateAttribute("weights", Sdf.ValueTypeNames.FloatArray)
        attr.Set(Vt.FloatArray([f + i * 1e-3 for i in range(4000)]), f)
        clip.GetRootLayer().Save()
    shot = Usd.Stage.CreateNew(os.path.join(root, "shot.usdc"))
    shot.DefinePrim("/World", "Xform")
    shot.DefinePrim("/World/Hero").GetReferences().AddReference("./asset.usdc")
    anim = shot.DefinePrim("/World/Anim", "Xform")
    anim.CreateAttribute("weights", Sdf.ValueTypeNames.FloatArray)
    clips = Usd.ClipsAPI(anim)
    clips.SetClipAssetPaths([Sdf.AssetPath(f"./clips/anim.{f:04d}.usdc") for f in FRAMES])
    clips.SetClipPrimPath("/Anim")
    clips.SetClipActive([(float(f), float(i)) for i, f in enumerate(FRAMES)])
    clips.SetClipTimes([(float(f), float(f)) for f in FRAMES])
    manifest = clips.GenerateClipManifest()
    manifest.Export(os.path.join(root, "clips", "manifest.usda"))
    clips.SetClipManifestAssetPath(Sdf.AssetPath("./clips/manifest.usda"))
    shot.GetRootLayer().Save()


def read_frame(root: str, frame: int) -> None:
    from pxr import Usd

    stage = Usd.Stage.Open(os.path.join(root, "shot.usdc"))
    for prim in stage.Traverse():
        for attr in prim.GetAttributes():
            attr.Get(frame)


def record(root: str, frame: int, out: str, pread: bool) -> None:
    raw = out + ".raw"
    env = {k: v for k, v in os.environ.items() if k != "USDC_USE_PREAD"}
    if pread:
        env["USDC_USE_PREAD"] = "1"
    subprocess.run([*STRACE, "-o", raw, sys.executable, __file__, "--frame", root, str(frame)],
                   env=env, check=True)
    with open(raw, encoding="utf-8", errors="replace") as f, gzip.open(out, "wt", encoding="utf-8") as g:
        for line in f:
            if root in line or "resumed>" in line:
                for old, new in ((root, STUDIO), (os.getcwd(), RENDER), (sys.prefix, "/opt/python"),
                                 (sys.base_prefix, "/opt/python")):
                    line = line.replace(old, new)
                g.write(line)
    os.unlink(raw)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "proj")
        build(root)
        for sub in ("traces", "mmap"):
            shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
            os.makedirs(os.path.join(HERE, sub))
        for f in FRAMES:
            record(root, f, os.path.join(HERE, "traces", f"frame.{f:04d}.strace.gz"), pread=True)
        record(root, 1, os.path.join(HERE, "mmap", "frame.0001.strace.gz"), pread=False)
        sizes = {}
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                sizes[STUDIO + path[len(root):]] = os.path.getsize(path)
        with open(os.path.join(HERE, "sizes.json"), "w") as out:
            json.dump(dict(sorted(sizes.items())), out, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--frame"]:
        read_frame(sys.argv[2], int(sys.argv[3]))
    else:
        main()
