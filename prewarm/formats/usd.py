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

from prewarm.formats.scenes import GuardedWalk, plain
from prewarm.plan.patterns import PathPattern
from prewarm.plan.scenes import (
    SceneDep,
    SceneDeps,
    SceneRequest,
    Unresolved,
    frames_in_steps,
)
from prewarm.site.guard import Guard

LAYER_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
PRIM_CHECK = 1000
"""Prims between two looks at the clock while the stage is traversed."""


class MissingExtra(Exception):
    """usd-core is not installed (the optional extra `scenes`)."""


_LOCAL = re.compile(r"/[^\s:@'\"<>]+")
_FROM_FILE = re.compile(r"<[^>]*>")
"""A prim or property path (`</X>`): text of the file, never repeated."""


def one_line(exc: BaseException, guard: Guard) -> str:
    """A Tf error's own words, without its C++ location, the text it quotes from the file, or a
    path of this machine: `/studio/proj/bad.usda:2:11: Expected } at ...`. A path is shown as its
    studio path when it is inside the roots, else as `...`."""
    first = str(exc).strip().split("\n\tError in ")[0]
    said = re.search(r" : '(.*)'\s*$", first, re.DOTALL)
    text = _FROM_FILE.sub("...", plain(said.group(1) if said else first))

    def studio(m: re.Match[str]) -> str:
        path = guard.path_map.to_studio(m.group())
        return path if guard.allows(path) else "..."

    return _LOCAL.sub(studio, text) or type(exc).__name__


@dataclass
class _Walk(GuardedWalk):
    """State of one dependency walk: who asked for what, limits, layers found unreadable."""

    max_deps: int
    deadline: float
    asked: dict[str, str] = field(default_factory=dict)
    """Local anchored path -> local path of the layer that asked for it first."""
    tiles: dict[str, str] = field(default_factory=dict)
    """Local `<UDIM>` path -> the asking layer; the tiles it expanded to are not listed one by one."""
    bad: dict[str, str] = field(default_factory=dict)
    """Local layer path -> why it cannot be read (found by `_walk_layers`)."""
    cut: str | None = None

    clips: dict[str, None] = field(default_factory=dict)
    """Clip layers (local), found by composing the stage: planned for the frames that read them."""

    def over(self) -> bool:
        """Past a limit: the walk stops following dependencies, and says why once."""
        if len(self.asked) >= self.max_deps:
            self.cut = self.cut or f"more than {self.max_deps:,} dependencies: the rest are not planned"
        elif time.monotonic() > self.deadline:
            self.cut = self.cut or "out of time reading the scene: the rest of its dependencies are not planned"
        else:
            return False
        return True

    def record(self, layer: Any, raw: str) -> str:
        """Where `raw`, written in `layer`, is on this machine; remembers who asked for it."""
        anchored = raw if raw.startswith("/") else posixpath.normpath(layer.ComputeAbsolutePath(raw))
        mapped = self.local(anchored)
        asker = str(layer.realPath or layer.identifier)
        self.asked.setdefault(mapped, asker)
        if "<UDIM>" in raw:
            self.tiles.setdefault(mapped, asker)
        return mapped


def _is_layer(path: str) -> bool:
    return path.lower().endswith(LAYER_SUFFIXES)


def load_usd() -> None:
    """Import usd-core and load the plugins a stage open needs (file formats, the resolver), so
    that nothing is looked up in the program's folders once the child is confined; `MissingExtra`
    without usd-core."""
    try:
        from pxr import Ar, Sdf, Usd
    except ImportError as exc:
        raise MissingExtra(str(exc)) from exc
    Ar.GetResolver()
    for fmt in ("usda", "usdc", "usdz"):
        Sdf.FileFormat.FindByExtension(fmt)
    Usd.Stage.CreateInMemory()


def read_usd(local: str, request: SceneRequest, guard: Guard, deadline: float) -> SceneDeps:
    """The closure of the stage at `local` (this machine's path of `request.path`)."""
    load_usd()
    from pxr import Sdf, Tf, UsdUtils
    try:
        root = Sdf.Layer.FindOrOpen(local)
    except Tf.ErrorException as exc:
        return SceneDeps(error=one_line(exc, guard))
    if root is None:
        return SceneDeps(error="not a USD layer")
    walk = _Walk(guard, request.limits.max_deps, deadline)
    layers, assets, unresolved = _walk_layers(walk, local, Sdf, Tf, UsdUtils)
    per_frame, shared, note = _per_frame(root, request, walk)
    refused = f"{len(walk.refused)} dependencies outside the allowed roots: not opened, not planned" \
        if walk.refused else None
    return _result(walk, local, layers, assets, unresolved, per_frame, shared,
                   tuple(n for n in (walk.cut, refused, note) if n))


def _walk_layers(walk: _Walk, local: str, Sdf: Any, Tf: Any, UsdUtils: Any) -> tuple[list[str], list[str], list[str]]:
    """Layers, assets and unresolved paths (local) of the closure of `local`, one layer at a time.

    Each layer is opened on its own, and only once the guard has allowed it: usd-core's
    `ComputeAllDependencies` opens every sublayer whatever its callback says (seen under
    strace), so a stage naming `/etc/...` would have it read. A layer that cannot be
    read is reported and left out; the rest of the closure is still walked.
    """
    from pxr import Ar

    resolver = Ar.GetResolver()
    layers: list[str] = []
    assets: list[str] = []
    unresolved: list[str] = []
    queue = [local]
    seen = {local}
    while queue and not walk.over():
        path = queue.pop(0)
        try:
            layer = Sdf.Layer.FindOrOpen(path)
            subs, refs, payloads = UsdUtils.ExtractExternalReferences(path)
        except Tf.ErrorException as exc:
            walk.bad[path] = one_line(exc, walk.guard)
            continue
        layers.append(path)
        for raw in (*subs, *refs, *payloads):
            if not raw or "[" in raw:
                continue
            if walk.over():
                break
            mapped = walk.record(layer, raw)
            if mapped in seen or mapped in walk.tiles:
                continue
            seen.add(mapped)
            target = walk.opened_as(mapped)
            if target is None:
                continue
            mapped = target
            seen.add(mapped)
            if not resolver.Resolve(mapped):
                unresolved.append(mapped)
            elif _is_layer(mapped):
                queue.append(mapped)
            else:
                assets.append(mapped)
    return layers, assets, unresolved


def _per_frame(root: Any, request: SceneRequest, walk: _Walk) -> tuple[dict[str, set[int]], set[str], str | None]:
    """Local path -> the job frames reading it, for clip files and time-sampled assets;
    plus the paths some attribute uses as a default value (read by every frame)."""
    from pxr import Sdf, Tf, Usd

    per_frame: dict[str, set[int]] = defaultdict(set)
    shared: set[str] = set()
    if walk.refused:  # composing would open what the guard refused
        return per_frame, shared, "per-frame files not told apart: the stage refers to files outside the roots"
    try:
        stage = Usd.Stage.Open(root, load=Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        why = one_line(exc, walk.guard)
        return per_frame, shared, f"per-frame files not told apart (the stage does not compose: {why})"
    asset_types = (Sdf.ValueTypeNames.Asset, Sdf.ValueTypeNames.AssetArray)
    prims = []
    for n, prim in enumerate(stage.Traverse(Usd.TraverseInstanceProxies(Usd.PrimAllPrimsPredicate))):
        if n % PRIM_CHECK == 0 and time.monotonic() > walk.deadline:
            return per_frame, shared, "out of time composing the stage: per-frame files not told apart past that"
        if prim.HasAuthoredMetadata("clips"):
            _clips(Usd.ClipsAPI(prim), request, walk, per_frame)
        prims.append(prim)
    if walk.refused:  # reading values would open clip layers the guard refused
        return per_frame, shared, "per-frame files not told apart: the stage's clips are outside the roots"
    for n, prim in enumerate(prims):
        if n % PRIM_CHECK == 0 and time.monotonic() > walk.deadline:
            return per_frame, shared, "out of time composing the stage: per-frame files not told apart past that"
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
        for path in paths:
            walk.opened_as(path)  # checked now: reading a clipped value opens its clip layer
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
            walk.clips.setdefault(path, None)


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


@dataclass
class _Result:
    """What the walk and the stage said, turned into studio-path dependencies and findings."""

    walk: _Walk
    local: str
    per_frame: dict[str, set[int]]
    shared: set[str]
    deps: dict[str, SceneDep] = field(default_factory=dict)
    missing: list[Unresolved] = field(default_factory=list)

    def asker(self, path: str) -> str:
        return self.walk.path_map.to_studio(self.walk.asked.get(path, self.local))

    def add(self, path: str, pattern: bool = False) -> None:
        frames = None
        if not pattern and path not in self.shared and path in self.per_frame:
            frames = tuple(sorted(self.per_frame[path]))
            if not frames:
                return  # a clip or time sample no job frame reads
        studio = self.walk.path_map.to_studio(path)
        self.deps.setdefault(studio, SceneDep(studio, self.asker(path), frames, pattern))

    def miss(self, path: str, reason: str = "not found") -> None:
        self.missing.append(Unresolved(self.walk.path_map.to_studio(path), self.asker(path), reason))

    def unresolved(self, path: str) -> None:
        """Frame or tile tokens are for the planner to expand (`vol.####.vdb`, `<UVTILE>`)."""
        try:
            tokens = not PathPattern(path).is_literal
        except ValueError:
            tokens = False
        if tokens:
            self.add(path, pattern=True)
        else:
            self.miss(path)


def _result(walk: _Walk, local: str, layers: list[str], assets: list[str],
            unresolved: list[str], per_frame: dict[str, set[int]], shared: set[str],
            notes: tuple[str, ...]) -> SceneDeps:
    out = _Result(walk, local, per_frame, shared)
    for path, why in walk.bad.items():
        out.miss(path, f"cannot read the layer: {why}")
    tiles: list[PathPattern] = []
    for path in walk.tiles:
        try:
            tiles.append(PathPattern(path))
        except ValueError as exc:
            out.miss(path, str(exc))
            continue
        out.add(path, pattern=True)
    for layer in layers:
        if walk.local(layer) != local:
            out.add(walk.local(layer))
    for asset in map(walk.local, assets):
        if not any(t.match(asset) for t in tiles):
            out.add(asset)
    for path in map(walk.local, unresolved):
        if path not in walk.bad and path not in walk.tiles:
            out.unresolved(path)
    for path in out.walk.clips:
        if path not in walk.bad:
            out.add(path)
    return SceneDeps(deps=tuple(out.deps.values()), unresolved=tuple(out.missing), notes=notes, layers=len(layers))
