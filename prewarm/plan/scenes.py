"""Scene files as job inputs: what a USD stage or a Blender scene uses, per frame. Pure.

A farm job often names one scene file and little else (Deadline's `SceneFile`, the
`.blend` of a Deadline Cloud bundle, the stage a USD pipeline hands the renderer), and
the first job of a shot has no traces to fall back on. The scene says what it uses.

An input is a scene file when its name ends in `.usd`, `.usda`, `.usdc`, `.usdz` or
`.blend`, or when the manifest's long form says so (`usd:`, `blend:`, `scene:`);
`expand: false` plans it as a plain file. Patterns and folders are never expanded.
`expand_scenes` asks a reader, passed in (`prewarm.formats.scenes.SceneReader` reads the
files in a child process), for each scene's dependencies and appends them to the
manifest as inputs, which are then resolved and planned like any other: traces decide
the ranges, tile patterns list their folders, missing files are findings.

A reader reports (`SceneDeps`):
- dependencies (`SceneDep`): files, tile patterns (`<UDIM>`: the tiles that exist) and
  frame patterns, each with the layer that asked for it (the scene itself, a USD sublayer,
  reference or payload, a linked `.blend` library) and, for per-frame files (a value clip,
  a time sample of an asset attribute, a member of an image sequence), the job frames that
  read them;
- paths it could not resolve, with the layer that asked: findings in the plan's `missing`;
- why the scene could not be read at all (corrupt, too slow): one finding; the scene file
  itself is still planned.

What comes of it in the plan (`Expansion.annotate`): each file a scene brought in has
`scene` and `layer` in its `files` entry (`Plan.origins`), and a missing one names the
layer that asked for it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from prewarm.errors import InputError, ManifestError
from prewarm.plan.manifest import InputSpec, Manifest
from prewarm.plan.model import Plan
from prewarm.plan.patterns import PathPattern
from prewarm.plan.records import NOT_UTF8, Finding, Origin, shown
from prewarm.plan.stats import SceneStats


class SceneKind(StrEnum):
    USD = "usd"
    BLEND = "blend"
    AUTO = "auto"
    """`scene: PATH`: the reader tells USD from Blender by the file's first bytes."""


SUFFIXES: Mapping[str, SceneKind] = {".usd": SceneKind.USD, ".usda": SceneKind.USD, ".usdc": SceneKind.USD,
                                     ".usdz": SceneKind.USD, ".blend": SceneKind.BLEND}


@dataclass(frozen=True)
class SceneLimits:
    """What one job's scene files may cost. Documented in the README (manifest section)."""

    max_deps: int = 20_000
    """Dependencies taken from one scene file; a scene naming more is cut there, with a finding."""
    max_findings: int = 100
    """Unresolved paths of one scene listed one by one; the rest are counted in one finding."""
    seconds: float = 120.0
    """Reading all scene files of a job: a reader still busy then is stopped (a finding)."""
    blur: float = 1.0
    """Frames either side of a frame whose value clips and time samples it may read (motion blur)."""


@dataclass(frozen=True, slots=True)
class SceneRequest:
    """What to read: the scene's studio path, for which job frames."""

    path: str
    kind: SceneKind
    frames: tuple[int, ...]
    limits: SceneLimits


@dataclass(frozen=True, slots=True)
class SceneDep:
    """A file a scene uses, by studio path. `pattern`: the path holds tile or frame tokens,
    to be expanded as manifest patterns are (the tiles that exist; one file per frame)."""

    path: str
    layer: str
    """The scene file or layer (sublayer, reference, library) that asked for it, by studio path."""
    frames: tuple[int, ...] | None = None
    """The job frames that read it (clips, time samples, sequence members); None: every frame."""
    pattern: bool = False


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An asset path a layer asked for that names no file."""

    path: str
    layer: str
    reason: str = "not found"


@dataclass(frozen=True)
class SceneDeps:
    """What a reader found in one scene file (and everything it pulls in)."""

    deps: tuple[SceneDep, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()
    error: str | None = None
    """Why the scene could not be read at all; its file is still planned."""
    notes: tuple[str, ...] = ()
    """Limits that cut the reading short (too many dependencies, out of time)."""
    absent: bool = False
    """The scene file is not there: the input's own resolution reports it, once."""
    layers: int = 0
    """Scene files read: the scene, its layers or libraries."""


ReadScene = Callable[[SceneRequest], SceneDeps]


class _Resolved(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def input_index(self) -> int: ...


class _Missed(_Resolved, Protocol):
    @property
    def input_line(self) -> int: ...


def scene_kind(spec: InputSpec) -> SceneKind | None:
    """The kind of scene an input is, or None when it is planned as it is."""
    if not spec.expand or spec.is_dir or not spec.pattern.is_literal and spec.scene is None:
        return None
    if spec.scene is not None:
        return SceneKind(spec.scene)
    name = spec.pattern.text.rpartition("/")[2].lower()
    dot = name.rfind(".")
    return SUFFIXES.get(name[dot:]) if dot > 0 else None


def frames_in_steps(starts: Sequence[float], frames: Iterable[int], blur: float) -> list[tuple[int, ...]]:
    """For a value that changes at `starts` (ascending; the first value also holds before its
    start, the last one forever), the job frames that may see each value: those whose motion
    blur window `[F - blur, F + blur]` overlaps its interval. Value clips and time samples of
    asset attributes are both such step functions of the time."""
    out: list[list[int]] = [[] for _ in starts]
    if not starts:
        return []
    for f in frames:
        first = max(0, bisect_right(starts, f - blur) - 1)
        last = max(0, bisect_right(starts, f + blur) - 1)
        for i in range(first, last + 1):
            out[i].append(f)
    return [tuple(fs) for fs in out]


@dataclass(frozen=True)
class Expansion:
    """A manifest with its scenes' dependencies appended as inputs, and what to tell the plan."""

    manifest: Manifest
    origins: Mapping[int, Origin] = field(default_factory=dict)
    """Index of each appended input -> the scene input that brought it and the layer that asked."""
    findings: tuple[Finding, ...] = ()
    stats: SceneStats | None = None
    """None: the manifest has no scene input."""

    def annotate(self, plan: Plan, files: Iterable[_Resolved], missing: Iterable[_Missed]) -> Plan:
        """The plan with each scene-borne file's origin, missing ones naming the layer that asked
        for them, and the scenes' own findings. `files`/`missing` are the resolved inputs, in
        input order: a file the manifest names itself is not the scene's."""
        if not self.origins and not self.findings and self.stats is None:
            return plan
        first: dict[str, int] = {}
        for f in files:
            first.setdefault(f.path, f.input_index)
        origins = {p: self.origins[i] for p, i in first.items() if i in self.origins and p in plan.files}
        asked: dict[tuple[str, int | None], str] = {
            (m.path, m.input_line): self.origins[m.input_index].layer for m in missing if m.input_index in self.origins}
        found = tuple(replace(m, reason=f"{m.reason} (asked for by {asked[(m.path, m.line)]})")
                      if (m.path, m.line) in asked else m for m in plan.missing)
        stats = plan.stats
        if stats is not None and self.stats is not None:
            stats = replace(stats, scenes=replace(self.stats, scene_files_planned=len(origins)))
        return replace(plan, origins={**plan.origins, **origins}, missing=found + self.findings, stats=stats)


def expand_scenes(manifest: Manifest, read: ReadScene, *, frames: Sequence[int] | None = None,
                  limits: SceneLimits = SceneLimits(),
                  allowed: Callable[[str], bool] = lambda path: True) -> Expansion:
    """Read each scene input of `manifest` and append what it uses as inputs.

    `frames` are the job frames to plan (default the manifest's); `allowed` keeps the
    dependencies a plan may hold (the service's roots): the others are only counted, as
    a renderer's own libraries in raw traces are.
    """
    job_frames = tuple(frames if frames is not None else manifest.frames)
    inputs = list(manifest.inputs)
    known = {spec.path for spec in inputs}
    origins: dict[int, Origin] = {}
    findings: list[Finding] = []
    stats = SceneStats()
    for spec in manifest.inputs:
        kind = scene_kind(spec)
        if kind is None:
            continue
        try:
            found = read(SceneRequest(spec.path, kind, job_frames, limits))
        except InputError as exc:
            raise ManifestError(f"{manifest.source}:{spec.line}", str(exc)) from exc
        if found.absent:
            continue
        stats.scenes += 1
        stats.scene_layers += found.layers
        findings.extend(_scene_findings(spec, found, limits))
        stats.scene_unresolved += len(found.unresolved)
        for dep in found.deps:
            if dep.path in known:
                continue
            known.add(dep.path)
            if shown(dep.path) != dep.path:
                findings.append(Finding(shown(dep.path), f"{NOT_UTF8} (asked for by {shown(dep.layer)})", spec.line))
                continue
            if not allowed(dep.path):
                stats.scene_outside_roots += 1
                continue
            try:
                pattern = PathPattern(dep.path) if dep.pattern else PathPattern.literal(dep.path)
            except ValueError as exc:
                findings.append(Finding(dep.path, f"cannot plan it: {exc} (asked for by {dep.layer})", spec.line))
                continue
            origins[len(inputs)] = Origin(spec.path, dep.layer)
            inputs.append(InputSpec(pattern, spec.line, optional=spec.optional, expand=False, frames=dep.frames))
            stats.scene_inputs += 1
    if not stats.scenes:
        return Expansion(manifest)
    return Expansion(replace(manifest, inputs=tuple(inputs)), origins, tuple(findings), stats)


def _scene_findings(spec: InputSpec, found: SceneDeps, limits: SceneLimits) -> Iterable[Finding]:
    if found.error is not None:
        yield Finding(spec.path, f"cannot read the scene: {found.error}", spec.line)
    for note in found.notes:
        yield Finding(spec.path, note, spec.line)
    for u in found.unresolved[:limits.max_findings]:
        yield Finding(u.path, f"{u.reason} (asked for by {u.layer})", spec.line)
    more = len(found.unresolved) - limits.max_findings
    if more > 0:
        yield Finding(spec.path, f"{more:,} more unresolved paths in the scene (the first "
                                 f"{limits.max_findings} are listed)", spec.line)
