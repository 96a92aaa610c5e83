"""USD stages: the dependency closure of a layer, per frame, read with usd-core (`pxr`).

`UsdUtils.ComputeAllDependencies` walks sublayers, references, payloads, value clips
and asset-valued attributes, and expands `<UDIM>` to the tiles that exist. Its
processing callback is where this reader learns which layer asked for each path, maps
absolute studio paths (and aliases) to where this machine reaches them (the site's
`PathMap`), and stops following dependencies once the limits are reached.

Per frame, from the composed stage (payloads loaded):
- value clips: the clip active at each time (`clipActive`, or a template's start,
  stride and active offset); a job frame F reads the clips active anywhere in
  `[F - blur, F + blur]`, motion blur's neighbours. Clips no job frame reads are left out.
- time-sampled asset attributes (`asset filePath.timeSamples = {1: @vol.0001.vdb@, ...}`):
  held values, so frame F reads the samples whose interval overlaps the same window.
- asset paths with frame tokens (`vol.####.vdb`, `$F4`) become frame patterns, one file
  per job frame; `<UDIM>`/`<UVTILE>` paths become tile patterns whose folder is listed.
A file that a time sample or clip names but some other attribute uses as its default
value is read by every frame.

A layer that cannot be read is reported with the layer that asked for it and left out;
when the root layer cannot be read the whole scene is one error. The reader runs in a
child process (`prewarm.formats.scenes`), which bounds its time and isolates crashes.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prewarm.formats.scenes import plain
from prewarm.plan.pathmap import PathMap
from prewarm.plan.patterns import PathPattern
from prewarm.plan.scenes import (
    SceneDep,
    SceneDeps,
    SceneRequest,
    Unresolved,
    frames_in_steps,
)

LAYER_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
MAX_RETRIES = 8
"""Runs of the dependency walk, each leaving out the unreadable layers the last one met."""
PRIM_CHECK = 1000
"""Prims between two looks at the clock while the stage is traversed."""


class MissingExtra(Exception):
    """usd-core is not installed (the optional extra `scenes`)."""


def one_line(exc: BaseException) -> str:
    """A Tf error's own words, without its C++ location: `Sdf crate file version mismatch ...`."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    quoted = re.search(r" : '(.*)'$", text)
    return plain(quoted.group(1) if quoted else text)


@dataclass
class _Walk:
    """State of one dependency walk: who asked for what, limits, layers found unreadable."""

    path_map: PathMap
    max_deps: int
    deadline: float
    asked: dict[str, str] = field(default_factory=dict)
    """Local anchored path -> local path of the layer that asked for it first."""
    tiles: dict[str, str] = field(default_factory=dict)
    """Local `<UDIM>` path -> the asking layer; the tiles it expanded to are not listed one by one."""
    bad: dict[str, str] = field(default_factory=dict)
    """Local layer path -> why it cannot be read."""
    cut: str | None = None

    def local(self, path: str) -> str:
        return self.path_map.to_local(self.path_map.to_studio(path))


def _is_layer(path: str) -> bool:
    return path.lower().endswith(LAYER_SUFFIXES)


def read_usd(local: str, request: SceneRequest, path_map: PathMap, deadline: float) -> SceneDeps:
    """The closure of the stage at `local` (this machine's path of `request.path`)."""
    try:
        from pxr import Sdf, Tf, UsdUtils  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtra(str(exc)) from exc
    try:
        root = Sdf.Layer.FindOrOpen(local)
    except Tf.ErrorException as exc:
        return SceneDeps(error=one_line(exc))
    if root is None:
        return SceneDeps(error="not a USD layer")
    walk = _Walk(path_map, request.limits.max_deps, deadline)
    found = _compute(walk, local, Sdf, Tf, UsdUtils)
    if isinstance(found, str):
        return SceneDeps(error=found)
    layers, assets, unresolved = found
    per_frame, shared, note = _per_frame(root, request, walk)
    return _result(walk, local, request, layers, assets, unresolved, per_frame, shared,
                   tuple(n for n in (walk.cut, note) if n))


def _compute(walk: _Walk, local: str, Sdf: Any, Tf: Any, UsdUtils: Any) -> tuple[list[Any], list[str], list[str]] | str:
    """ComputeAllDependencies, again without the layers that made the last run fail.

    A Tf error anywhere in the walk (a corrupt referenced layer) fails the whole call
    after it has visited everything else, so each run finds the unreadable layers among
    those it met, and the next leaves them out.
    """
    def visit(layer: Any, info: Any) -> Any:
        raw = info.assetPath
        if not raw or "[" in raw:  # package-relative: inside the .usdz being read
            return info
        if len(walk.asked) >= walk.max_deps or time.monotonic() > walk.deadline:
            walk.cut = walk.cut or (f"more than {walk.max_deps:,} dependencies: the rest are not planned"
                                    if len(walk.asked) >= walk.max_deps else
                                    "out of time reading the scene: the rest of its dependencies are not planned")
            return UsdUtils.DependencyInfo("")
        anchored = posixpath.normpath(layer.ComputeAbsolutePath(raw)) if not raw.startswith("/") else raw
        mapped = walk.local(anchored)
        walk.asked.setdefault(mapped, layer.realPath or layer.identifier)
        if "<UDIM>" in raw:
            walk.tiles.setdefault(mapped, layer.realPath or layer.identifier)
        if mapped in walk.bad:
            return UsdUtils.DependencyInfo("")
        if mapped != anchored:
            return UsdUtils.DependencyInfo(mapped, list(info.dependencies))
        return info

    error: str | None = None
    for _ in range(MAX_RETRIES):
        try:
            return UsdUtils.ComputeAllDependencies(local, visit)  # type: ignore[no-any-return]
        except Tf.ErrorException as exc:
            error = one_line(exc)
        new = _find_bad(walk, Sdf, Tf)
        if not new:
            break
    return f"cannot follow its dependencies: {error}"


def _find_bad(walk: _Walk, Sdf: Any, Tf: Any) -> int:
    """Open each layer met so far; return how many newly failed."""
    new = 0
    for path in list(walk.asked):
        if path in walk.bad or not _is_layer(path) or time.monotonic() > walk.deadline:
            continue
        try:
            if Sdf.Layer.FindOrOpen(path) is None:
                continue  # not there: ComputeAllDependencies reports it unresolved
        except Tf.ErrorException as exc:
            walk.bad[path] = one_line(exc)
            new += 1
    return new


def _per_frame(root: Any, request: SceneRequest, walk: _Walk) -> tuple[dict[str, set[int]], set[str], str | None]:
    """Local path -> the job frames reading it, for clip files and time-sampled assets;
    plus the paths some attribute uses as a default value (read by every frame)."""
    from pxr import Sdf, Tf, Usd

    per_frame: dict[str, set[int]] = defaultdict(set)
    shared: set[str] = set()
    try:
        stage = Usd.Stage.Open(root, load=Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        return per_frame, shared, f"per-frame files not told apart (the stage does not compose: {one_line(exc)})"
    asset_types = (Sdf.ValueTypeNames.Asset, Sdf.ValueTypeNames.AssetArray)
    for n, prim in enumerate(stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate))):
        if n % PRIM_CHECK == 0 and time.monotonic() > walk.deadline:
            return per_frame, shared, "out of time composing the stage: per-frame files not told apart past that"
        if prim.HasAuthoredMetadata("clips"):
            _clips(Usd.ClipsAPI(prim), request, walk, per_frame)
        for attr in prim.GetAuthoredAttributes():
            if attr.GetTypeName() in asset_types:
                _asset_attr(attr, request, walk, per_frame, shared)
    return per_frame, shared, None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if not hasattr(value, "resolvedPath") else [value]


def _key(asset: Any, walk: _Walk) -> str | None:
    if asset.resolvedPath:
        return walk.local(str(asset.resolvedPath))
    return walk.local(asset.path) if asset.path.startswith("/") else None


def _asset_attr(attr: Any, request: SceneRequest, walk: _Walk, per_frame: dict[str, set[int]],
                shared: set[str]) -> None:
    times = attr.GetTimeSamples()
    if not times:
        shared.update(k for a in _values(attr.Get()) if (k := _key(a, walk)))
        return
    for t, frames in zip(times, frames_in_steps(times, request.frames, request.limits.blur), strict=True):
        for a in _values(attr.Get(t)):
            key = _key(a, walk)
            if key:
                per_frame[key].update(frames)


_TEMPLATE_NUMBER = re.compile(r"#+(?:\.#+)?")


def _clips(api: Any, request: SceneRequest, walk: _Walk, per_frame: dict[str, set[int]]) -> None:
    for name in api.GetClips():
        paths = [walk.local(str(a.resolvedPath)) for a in api.ComputeClipAssetPaths(name)]
        template = api.GetClipTemplateAssetPath(name)
        if template:
            schedule = _template_schedule(api, name, template, paths)
        else:
            schedule = sorted((float(t), int(i)) for t, i in api.GetClipActive(name))
        starts = [t for t, _ in schedule]
        for (_, index), frames in zip(schedule, frames_in_steps(starts, request.frames, request.limits.blur),
                                      strict=True):
            if 0 <= index < len(paths) and paths[index]:
                per_frame[paths[index]].update(frames)
        for path in paths:
            per_frame.setdefault(path, set())  # a clip no job frame reads: left out


def _template_schedule(api: Any, name: str, template: str, paths: list[str]) -> list[tuple[float, int]]:
    """Template clips: the number in each file's name is its time; it is active from that
    time plus `templateActiveOffset`."""
    base = posixpath.basename(template)
    m = _TEMPLATE_NUMBER.search(base)
    if m is None:
        return []
    number = re.compile(re.escape(base[:m.start()]) + r"(-?\d+(?:\.\d+)?)" + re.escape(base[m.end():]))
    offset = float(api.GetClipTemplateActiveOffset(name) or 0.0)
    schedule = []
    for i, path in enumerate(paths):
        found = number.fullmatch(posixpath.basename(path))
        if found:
            schedule.append((float(found.group(1)) + offset, i))
    return sorted(schedule)


def _result(walk: _Walk, local: str, request: SceneRequest, layers: list[Any], assets: list[str],
            unresolved: list[str], per_frame: dict[str, set[int]], shared: set[str],
            notes: tuple[str, ...]) -> SceneDeps:
    studio = walk.path_map.to_studio

    def asker(path: str) -> str:
        return studio(walk.asked.get(path, local))

    def frames_of(path: str) -> tuple[int, ...] | None:
        if path in shared or path not in per_frame:
            return None
        return tuple(sorted(per_frame[path]))

    deps: dict[str, SceneDep] = {}
    tile_patterns: dict[str, PathPattern] = {}
    missing: list[Unresolved] = [Unresolved(studio(p), asker(p), f"cannot read the layer: {why}")
                                 for p, why in walk.bad.items()]
    for p in walk.tiles:
        try:
            tile_patterns[p] = PathPattern(p)
        except ValueError as exc:
            missing.append(Unresolved(studio(p), asker(p), str(exc)))

    def add(path: str, pattern: bool = False) -> None:
        frames = None if pattern else frames_of(path)
        if frames == ():
            return  # a clip or sample no job frame reads
        deps.setdefault(studio(path), SceneDep(studio(path), asker(path), frames, pattern))

    for layer in layers:
        path = walk.local(layer.realPath or layer.identifier)
        if path != local:
            add(path)
    for p in tile_patterns:
        add(p, pattern=True)
    for asset in assets:
        path = walk.local(asset)
        if not any(pt.match(path) for pt in tile_patterns.values()):
            add(path)
    for raw in unresolved:
        path = walk.local(raw)
        if path in walk.bad or path in walk.tiles:
            continue
        try:
            tokens = not PathPattern(path).is_literal
        except ValueError:
            tokens = False
        if tokens:
            add(path, pattern=True)
        else:
            missing.append(Unresolved(studio(path), asker(path)))
    return SceneDeps(deps=tuple(deps.values()), unresolved=tuple(missing), notes=notes, layers=len(layers))
