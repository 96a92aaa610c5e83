"""The job manifest (contract 1): YAML text in, a checked `Manifest` value out.

    job: shot010_lighting_v003        # required: a name
    frames: 1001-1100                 # required: a frame spec (see prewarm.plan.framespec)
    inputs:                           # required: what the frames may read
      - /studio/proj/shot010/shot010_lighting_v003.blend     # a file
      - /studio/proj/shot010/cache/fluid.####.vdb            # one file per frame
      - /studio/proj/assets/hero/tex/diffuse.<UDIM>.tx       # the tiles that exist
      - /studio/proj/assets/lookdev/tex/                     # a folder: every file below it
      - path: /studio/proj/shot010/cache/sim.abc             # the long form, with hints:
        whole: true          # warm the whole file, not only the ranges traces predict
        optional: true       # absence is noted, not reported as a problem
      - path: /studio/proj/assets/lookdev/                   # folders only:
        include: ["*.tx"]    # globs on the path below the folder or on the file name
        exclude: ["old/*"]   # an excluded sub-folder is not even listed
      - path: "/studio/proj/notes #2.txt"
        literal: true        # no tokens: `#`, `@`, `$F` are plain characters here
      - usd: /studio/proj/shot010/stage/shot010.v3     # a scene file whatever its name: `usd:`,
                                                         # `blend:`, or `scene:` (told by content)
      - path: /studio/proj/shot010/layout.usd
        expand: false        # plan the scene file alone, not what it uses

Inputs ending in `.usd`, `.usda`, `.usdc`, `.usdz` or `.blend` are scene files: they bring
in what they use (`prewarm.plan.scenes`).

    # optional keys
    show: proj                # with shot: find the traces of earlier jobs of the shot
    shot: shot010
    start: 2025-03-01T22:00:00Z   # when the first frame starts: ISO 8601 with a zone, or epoch seconds
    priority: 50              # higher is warmed first when jobs compete; default 0
    gateway: gw-a             # gateway node(s) whose cache to warm: a name or a list;
                              # default: the configured queue
    max_bytes: 20GiB          # budget: at most this much is planned (the gateway cache is finite)
    granule: 1MiB             # ranges widened to whole granules; default from the settings
    path_map:                 # trace aliases: paths other hosts recorded traces under
      - {studio: /studio/proj, aliases: [/net/filer01/proj]}
    frame_order: spec         # `spec`: frames render in the spec's order (default);
                              # `sorted`: the farm renders them in ascending order
    predict: {finer: 1, tile_grow: 1}   # prediction knobs (prewarm.plan.knobs.KNOBS); flags win

Sizes are an integer of bytes or a number with a unit: `B`, `KB`/`MB`/`GB`/`TB`
(powers of 1000), `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); bare `G` is refused as
ambiguous. Names (`job`, `show`, `shot`, `gateway`) and paths are taken exactly as
written, so `job: 010` is `"010"`, not 8. Paths are studio paths: absolute, without
`.` or `..` components; a trailing `/` makes a folder input.

Every error is one line, `FILE:LINE: FIELD: what is wrong`, with the line of the
offending node: unknown keys (a typo such as `fames` must not be ignored),
duplicated keys, wrong types, bad frame specs and bad paths.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from prewarm.errors import ConfigError, InputError, ManifestError
from prewarm.plan.framespec import MAX_FRAMES, parse_frames
from prewarm.plan.knobs import check_knob
from prewarm.plan.limits import (
    MAX_FILES,
    MAX_GATEWAYS,
    MAX_NESTING,
    MAX_PRIORITY,
    MAX_YAML_NODES,
    gateway_problem,
    granule_problem,
)
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.patterns import PathPattern
from prewarm.plan.units import parse_size


class FrameOrder(StrEnum):
    """In which order the farm renders the frames of the spec."""

    SPEC = "spec"
    SORTED = "sorted"


@dataclass(frozen=True)
class InputSpec:
    """One entry of `inputs`: a file, a per-frame or tile pattern, or a folder."""

    pattern: PathPattern
    line: int
    is_dir: bool = False
    whole: bool = False
    optional: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    scene: str | None = None
    """`usd`, `blend` or `auto` (told by content) from the long forms `usd:`, `blend:`, `scene:`;
    None: a scene file if its name says so (`prewarm.plan.scenes.scene_kind`)."""
    expand: bool = True
    """False: a scene file planned as a file, without what it uses."""
    frames: tuple[int, ...] | None = None
    """The job frames that read this input, when a scene says so (a value clip, a member of an
    image sequence); None: every frame, or the frame its pattern names."""

    @property
    def path(self) -> str:
        """As the manifest wrote it: folders keep their trailing `/`."""
        return self.pattern.text + "/" if self.is_dir else self.pattern.text


@dataclass(frozen=True)
class Manifest:
    job: str
    frames: tuple[int, ...]
    """In render order: the spec's order, or ascending with `frame_order: sorted`."""
    inputs: tuple[InputSpec, ...]
    source: str = "<manifest>"
    show: str | None = None
    shot: str | None = None
    start: float | None = None
    """Epoch seconds (UTC) when the first frame starts."""
    priority: int = 0
    gateways: tuple[str, ...] = ()
    max_bytes: int | None = None
    granule: int | None = None
    path_map: PathMap = field(default_factory=PathMap)
    frame_order: FrameOrder = FrameOrder.SPEC
    predict: Mapping[str, int | bool] = field(default_factory=dict)
    """Prediction knobs for this job (`spread`, `tile_grow`, `finer`, ...), checked."""


LAST_START = 253_402_300_799
"""9999-12-31T23:59:59Z: a later `start` (or an infinite one) is a mistake, not a date."""

REQUIRED = ("job", "frames", "inputs")
OPTIONAL = ("show", "shot", "start", "priority", "gateway", "max_bytes", "granule", "path_map", "frame_order",
            "predict")
SCENE_KEYS = ("usd", "blend", "scene")
"""Long forms naming a scene file by kind; `scene` is told by the file's content."""
INPUT_KEYS = ("path", *SCENE_KEYS, "whole", "optional", "include", "exclude", "literal", "expand")

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"


def parse_manifest(text: str, source: str) -> Manifest:
    """The manifest in `text`; `source` (the file name) leads every error message."""
    return _Parser(source).manifest(_compose(text, source))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit: its composer recurses once per level, so a
    document nested a few hundred deep would end in a RecursionError (a traceback, an HTTP 500).
    And a size limit (`MAX_YAML_NODES`): composing stops, and the document is refused, there."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > MAX_NESTING or self.nodes > MAX_YAML_NODES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                what = (f"nested deeper than {MAX_NESTING} levels" if self.depth > MAX_NESTING
                        else f"more than {MAX_YAML_NODES:,} values (prewarm.plan.limits)")
                raise yaml.composer.ComposerError(None, None, what, mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def safe_load(text: str, name: str, what: str = "not valid YAML",
              error: type[InputError] = ManifestError) -> Any:
    """`yaml.safe_load` with the nesting limit, its errors as one line naming the line (never the
    line's text, which PyYAML's own message quotes)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise error(f"{name}:{mark.line + 1}" if mark else name, f"{what}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise error(name, f"{what}: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise error(name, f"{what}: nested too deeply") from exc
    finally:
        loader.dispose()


def _compose(text: str, source: str) -> MappingNode:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except RecursionError as exc:
        raise ManifestError(f"{source}:1", "not valid YAML: nested too deeply") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc.context or "syntax error")
        if exc.context and what.startswith("but "):
            what = f"{exc.context}, {what}"
        what = " ".join(what.split())
        raise ManifestError(f"{source}:{mark.line + 1 if mark else 1}", f"not valid YAML: {what}") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise ManifestError(f"{source}:{line}", f"not valid YAML: {exc.reason} ({char})") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}:1", f"not valid YAML: {' '.join(str(exc).split())}") from exc
    if root is None:
        raise ManifestError(f"{source}:1", "empty manifest: expected a mapping with job, frames and inputs")
    if not isinstance(root, MappingNode):
        raise ManifestError(f"{source}:{_line(root)}",
                            f"expected a mapping with job, frames and inputs, got {_kind(root)}")
    return root


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "nothing"
    return {"tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:int": "a number",
            "tag:yaml.org,2002:float": "a number"}.get(node.tag, "a string")


class _Parser:
    """Walks the composed YAML nodes: every value keeps its line for the error message."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.constructor = SafeConstructor()

    def error(self, node: Node, message: str) -> ManifestError:
        return ManifestError(f"{self.source}:{_line(node)}", message)

    def mapping(self, node: MappingNode, known: tuple[str, ...], prefix: str) -> dict[str, Node]:
        """Keys to value nodes; unknown and duplicated keys are errors at their line."""
        out: dict[str, Node] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(key_node, f"{prefix}keys must be plain names, got {_kind(key_node)}")
            key = str(key_node.value)
            if key in out:
                raise self.error(key_node, f"{prefix}{key}: duplicate key (first on line {lines[key]})")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise self.error(key_node, f"{prefix}{key}: unknown key ({hint})")
            out[key], lines[key] = value_node, _line(key_node)
        return out

    def scalar(self, node: Node, name: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{name}: expected a single value, got {_kind(node)}")
        return self.constructor.construct_object(node)

    def text(self, node: Node, name: str) -> str:
        """A name or path exactly as written (no YAML typing: `010` stays `010`)."""
        if not isinstance(node, ScalarNode) or (node.tag == _NULL_TAG and node.style is None):
            raise self.error(node, f"{name}: expected a string, got {_kind(node)}")
        value = str(node.value)
        if not value.strip():
            raise self.error(node, f"{name}: must not be empty")
        return value

    def boolean(self, node: Node, name: str) -> bool:
        value = self.scalar(node, name)
        if not isinstance(value, bool):
            raise self.error(node, f"{name}: expected true or false, got {node.value!r}")
        return value

    def manifest(self, root: MappingNode) -> Manifest:
        keys = self.mapping(root, REQUIRED + OPTIONAL, "")
        for key in REQUIRED:
            if key not in keys:
                raise self.error(root, f"{key}: missing (required: job, frames and inputs)")
        order = FrameOrder(self.choice(keys["frame_order"], "frame_order", [o.value for o in FrameOrder])
                           ) if "frame_order" in keys else FrameOrder.SPEC
        frames = self.frames(keys["frames"])
        return Manifest(
            job=self.text(keys["job"], "job"),
            frames=tuple(sorted(frames)) if order is FrameOrder.SORTED else frames,
            inputs=self.inputs(keys["inputs"]),
            source=self.source,
            show=self.text(keys["show"], "show") if "show" in keys else None,
            shot=self.text(keys["shot"], "shot") if "shot" in keys else None,
            start=self.start(keys["start"]) if "start" in keys else None,
            priority=self.priority(keys["priority"]) if "priority" in keys else 0,
            gateways=self.gateways(keys["gateway"]) if "gateway" in keys else (),
            max_bytes=self.size(keys["max_bytes"], "max_bytes") if "max_bytes" in keys else None,
            granule=self.granule(keys["granule"]) if "granule" in keys else None,
            path_map=self.path_map(keys["path_map"]) if "path_map" in keys else PathMap(),
            frame_order=order,
            predict=self.knobs(keys["predict"]) if "predict" in keys else {},
        )

    def knobs(self, node: Node) -> dict[str, int | bool]:
        """`predict:`, a mapping of prediction knobs, each checked where it is written."""
        if not isinstance(node, MappingNode):
            raise self.error(node, "predict: expected a mapping of prediction knobs")
        out: dict[str, int | bool] = {}
        for key, value in node.value:
            name = f"predict.{key.value}"
            if str(key.value) in out:
                raise self.error(key, f"{name}: duplicate key")
            try:
                out[str(key.value)] = check_knob(str(key.value), self.scalar(value, name),
                                                 self.sizer(f"{self.source}:{_line(value)}", name))
            except ValueError as exc:
                raise self.error(value, f"predict: {exc}") from exc
        return out

    @staticmethod
    def sizer(where: str, name: str) -> Callable[[object], int]:
        return lambda value: parse_size(value, where, name)

    def frames(self, node: Node) -> tuple[int, ...]:
        """Parsed from the text as written: YAML would read `0x10` as 16 and `010` as 8."""
        if isinstance(node, ScalarNode):
            return parse_frames(self.text(node, "frames"), f"{self.source}:{_line(node)}")
        if not isinstance(node, SequenceNode) or not node.value:
            raise self.error(node, "frames: expected a frame spec such as 1001-1100 or a list of them")
        frames: dict[int, None] = {}
        for i, item in enumerate(node.value):
            name = f"frames[{i}]"
            spec = self.text(item, name)
            frames.update(dict.fromkeys(parse_frames(spec, f"{self.source}:{_line(item)}", name)))
            if len(frames) > MAX_FRAMES:
                raise self.error(item, f"frames: more than {MAX_FRAMES:,} frames")
        return tuple(frames)

    def inputs(self, node: Node) -> tuple[InputSpec, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            raise self.error(node, "inputs: expected a non-empty list of files, patterns and folders")
        if len(node.value) > MAX_FILES:
            raise self.error(node, f"inputs: {len(node.value):,} inputs, more than the {MAX_FILES:,} files a job may "
                                   "name (prewarm.plan.limits): list folders or patterns")
        specs: list[InputSpec] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(node.value):
            spec = self.input(item, f"inputs[{i}]")
            if spec.path in seen:
                raise self.error(item, f"inputs[{i}]: {spec.path!r} is already listed on line {seen[spec.path]}")
            seen[spec.path] = spec.line
            specs.append(spec)
        return tuple(specs)

    def input(self, node: Node, name: str) -> InputSpec:
        if not isinstance(node, MappingNode):
            path_node, keys = node, {}
        else:
            keys = self.mapping(node, INPUT_KEYS, f"{name}.")
            given = [k for k in ("path", *SCENE_KEYS) if k in keys]
            if not given:
                raise self.error(node, f"{name}: missing 'path'")
            if len(given) > 1:
                raise self.error(keys[given[1]], f"{name}.{given[1]}: give one of path, {', '.join(SCENE_KEYS)}")
            path_node = keys[given[0]]
        raw = self.text(path_node, name)
        flags = {k: self.boolean(keys[k], f"{name}.{k}")
                 for k in ("whole", "optional", "literal", "expand") if k in keys}
        scene = next((k for k in SCENE_KEYS if k in keys), None)
        if scene is not None and raw.endswith("/"):
            raise self.error(path_node, f"{name}.{scene}: a scene is a file, not a folder")
        is_dir = raw.endswith("/")
        path = self.clean_path(raw, path_node, name)
        try:
            pattern = PathPattern.literal(path) if flags.get("literal") else PathPattern(path)
        except ValueError as exc:
            raise self.error(path_node, f"{name}: {exc}") from exc
        if is_dir and pattern.has_tile:
            raise self.error(path_node, f"{name}: a folder input cannot have tile tokens")
        if scene is not None and not pattern.is_literal:
            raise self.error(path_node, f"{name}.{scene}: a scene is one file: no frame or tile tokens "
                                        f"(add literal: true if they are part of its name)")
        globs = {k: self.globs(keys[k], f"{name}.{k}") for k in ("include", "exclude") if k in keys}
        if globs and not is_dir:
            first = keys["include" if "include" in globs else "exclude"]
            raise self.error(first, f"{name}.{next(iter(globs))}: only for folders (paths ending in /)")
        return InputSpec(pattern, _line(node), is_dir=is_dir, whole=flags.get("whole", False),
                         optional=flags.get("optional", False),
                         include=globs.get("include", ()), exclude=globs.get("exclude", ()),
                         scene={"scene": "auto"}.get(scene, scene) if scene else None,
                         expand=flags.get("expand", True))

    def clean_path(self, raw: str, node: Node, name: str) -> str:
        """An absolute studio path, `//` collapsed, trailing `/` dropped; `.`/`..` refused."""
        if not raw.startswith("/"):
            raise self.error(node, f"{name}: {raw!r} is not an absolute path")
        if "\0" in raw:
            raise self.error(node, f"{name}: {raw!r} contains a NUL byte")
        parts = [p for p in raw.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise self.error(node, f"{name}: {raw!r} has . or .. components: write the path out")
        if not parts:
            raise self.error(node, f"{name}: refusing to warm the whole file system ('/')")
        return posixpath.join("/", *parts)

    def globs(self, node: Node, name: str) -> tuple[str, ...]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        return tuple(self.text(item, name) for item in items)

    def choice(self, node: Node, name: str, allowed: list[str]) -> str:
        value = self.text(node, name)
        if value not in allowed:
            raise self.error(node, f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def start(self, node: Node) -> float:
        value = self.scalar(node, "start")
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError as exc:
                raise self.error(node, f"start: expected ISO 8601 (2025-03-01T22:00:00Z) or epoch seconds, "
                                       f"got {value!r}") from exc
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise self.error(node, f"start: {node.value!r} has no time zone: add Z or an offset such as +01:00")
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= LAST_START:
            return float(value)
        raise self.error(node, f"start: expected ISO 8601 (2025-03-01T22:00:00Z) or epoch seconds, "
                               f"got {node.value!r}")

    def priority(self, node: Node) -> int:
        value = self.scalar(node, "priority")
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_PRIORITY:
            raise self.error(node, f"priority: expected an integer between -{MAX_PRIORITY:,} and "
                                   f"{MAX_PRIORITY:,}, got {str(node.value)[:20]!r}")
        return value

    def granule(self, node: Node) -> int:
        value = self.size(node, "granule")
        problem = granule_problem(value)
        if problem:
            raise self.error(node, f"granule: {problem}")
        return value

    def gateways(self, node: Node) -> tuple[str, ...]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self.error(node, "gateway: expected a gateway name or a list of them")
        if len(items) > MAX_GATEWAYS:
            raise self.error(node, f"gateway: {len(items):,} gateways, at most {MAX_GATEWAYS} "
                                   "(each is a whole warm over the WAN link)")
        names = [self.text(item, "gateway") for item in items]
        seen: set[str] = set()
        for name, item in zip(names, items, strict=True):
            problem = gateway_problem(name)
            if problem:
                raise self.error(item, f"gateway: {problem}")
            if name in seen:
                raise self.error(item, f"gateway: {name!r} is listed twice")
            seen.add(name)
        return tuple(names)

    def size(self, node: Node, name: str) -> int:
        value = self.scalar(node, name)
        return parse_size(value, f"{self.source}:{_line(node)}", name)

    def path_map(self, node: Node) -> PathMap:
        """Trace aliases only, checked item by item so that an error points at the item's line.

        Where studio paths live on this machine (`local`) is the site's to say, never a
        job's: a manifest that could remap `/studio/proj` to `/etc` would read `/etc`.
        """
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"path_map: expected a list of {{studio, aliases}} mappings, "
                                   f"got {_kind(node)}")
        entries: list[Prefix] = []
        for i, item in enumerate(node.value):
            name = f"path_map[{i}]"
            data = self.plain(item, name, depth=0)
            if isinstance(data, dict) and "local" in data:
                raise self.error(item, f"{name}.local: a job cannot say where studio paths are on this machine; "
                                       "that is the site's `path_map` setting (or `--local` on the command line)")
            try:
                entries.extend(PathMap.parse([data], name).entries)
            except ConfigError as exc:
                raise self.error(item, f"{exc.where.replace(f'{name}[0]', name)}: {exc.message}") from exc
        return PathMap(tuple(entries))

    def plain(self, node: Node, name: str, depth: int) -> object:
        """Python data from a small node tree (path_map items), refusing deep or aliased bombs."""
        if depth > 3:
            raise self.error(node, f"{name}: nested too deeply")
        if isinstance(node, MappingNode):
            out: dict[str, object] = {}
            for key, value in node.value:
                if str(key.value) in out:
                    raise self.error(key, f"{name}.{key.value}: duplicate key")
                out[str(key.value)] = self.plain(value, f"{name}.{key.value}", depth + 1)
            return out
        if isinstance(node, SequenceNode):
            return [self.plain(v, name, depth + 1) for v in node.value]
        return self.text(node, name) if node.tag == _STR_TAG else self.scalar(node, name)
