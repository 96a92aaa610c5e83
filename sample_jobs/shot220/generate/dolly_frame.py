"""Texture-only render of shot220, a long dolly-in: frame N of 48 (python dolly_frame.py ROOT N).

Made from shot200's render script (real-traces/shot200/generate/tex_frame_dev.py: the same
OpenImageIO TextureSystem lookups with screen-space derivatives, over shot200's textures) with
another camera: it pushes in at one level finer every 8 frames (the view halves), drifting a
little to the right, from a wide view that reads 256-pixel levels to the finest level from
frame 28 on. Traced with
`strace -f -tt -y -s 0 -e trace=openat,read,pread64,preadv,preadv2,lseek,mmap,newfstatat,statx`.
"""
import sys

import OpenImageIO as oiio

root, frame = sys.argv[1], int(sys.argv[2])
ts = oiio.TextureSystem(shared=False)
ts.attribute("max_memory_MB", 64.0)
ts.attribute("autotile", 0)
W, H = 96, 54
zoom = 0.5 * 2 ** (-(frame - 1) / 8)
cx, cy = 0.37 + 0.002 * frame, 0.55
opt = oiio.TextureOpt()
d0 = f"{root}/assets/lookdev/tex"
tex = [f"{d0}/{n}.tx" for n in ("terrain_col", "terrain_spec", "rock_col", "rock_nrm")]
acc = 0.0
for j in range(H):
    for i in range(W):
        s = cx + (i / W - 0.5) * zoom
        tt = cy + (j / H - 0.5) * zoom * H / W
        d = zoom / W
        for f in (tex[:2] if j > H // 3 else tex[2:]):
            acc += ts.texture(f, opt, s % 1, tt % 1, d, 0, 0, d, 3)[0]
print(frame, acc)
