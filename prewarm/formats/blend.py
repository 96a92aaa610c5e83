"""Blender scenes: what a `.blend` uses, per frame, read with blender-asset-tracer (BAT).

BAT parses the file's own structure (its SDNA), no Blender needed. It starts from every
datablock of the scene file and follows pointers, and into linked libraries only the
datablocks the scene links (so an asset library's other assets stay out), recursively;
a cycle of libraries is walked once. What it reports: images (a `<UDIM>` set, an image
sequence, single files), Alembic and other caches, volumes, sounds, fonts, libraries.

Per frame: an image sequence is read through its image users (the Image Texture or
Environment node that shows it: start frame, offset, duration, cyclic). Job frame F
reads, for each user, member `image_user_frame(F, ...)`, Blender's own rule
(`BKE_image_user_frame_get`), so only the job frames' members are planned. A sequence
no node shows is read as member F at frame F. A volume sequence (`.vdb` per frame)
becomes a frame pattern: member F at frame F (its start, offset and mode are not read).

Paths: `//` paths are relative to the file that holds them (a library's own folder for
its textures); absolute studio paths are reached through the site's path map, for
libraries too. Compressed `.blend` files (gzip, zstd) are decompressed to a temporary
file first. BAT 1.23 looks for node trees of Blender 5.0 files under the compositor's
new name on every datablock, so a linked material's images were lost: the expander is
corrected here, in the child process that reads the scene.
"""

from __future__ import annotations

import logging
import pathlib
import posixpath
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from blender_asset_tracer import blendfile, bpathlib
from blender_asset_tracer.blendfile import iterators
from blender_asset_tracer.trace import blocks2assets, expanders, file2blocks

from prewarm.formats.scenes import GuardedWalk, plain
from prewarm.plan.scenes import SceneDep, SceneDeps, SceneRequest, Unresolved
from prewarm.site.guard import Guard

IMA_SRC_SEQUENCE = 2
IMA_SRC_TILED = 6
_DIGITS = re.compile(r"\d+")
_TILE = re.compile(r"(?<!\d)1\d{3}(?!\d)")
BLOCK_CHECK = 200
"""Datablocks between two looks at the clock."""


def image_user_frame(frame: int, start: int, offset: int, duration: int, cyclic: bool) -> int:
    """The member of an image sequence an image user shows at scene frame `frame`.

    Blender's `BKE_image_user_frame_get`: frames before `start` show the first member and
    frames after the duration the last, unless cyclic; the offset is added last. A
    duration of 0 shows member 0. Checked against bpy's evaluated `frame_current`
    (tests/data/blend/expected_frames.json).
    """
    if duration == 0:
        return 0
    n = frame - start + 1
    if cyclic:
        n %= duration
        if n == 0:
            n = duration
    n = min(max(n, 0), duration)
    return n + offset


def sequence_member(path: str, number: int) -> str | None:
    """The file of member `number`: the last group of digits of the file name, re-padded."""
    head, _, name = path.rpartition("/")
    matches = list(_DIGITS.finditer(name))
    if not matches:
        return None
    m = matches[-1]
    width = len(m.group())
    digits = f"{number:0{width}d}" if number >= 0 else f"-{-number:0{max(1, width - 1)}d}"
    return f"{head}/{name[:m.start()]}{digits}{name[m.end():]}"


@dataclass(frozen=True, slots=True)
class ImageUser:
    start: int
    offset: int
    duration: int
    cyclic: bool


@dataclass
class _Found(GuardedWalk):
    """Everything one walk collected, by local path."""

    deps: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """local path -> (local path of the .blend asking, is a pattern)"""
    per_frame: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)
    libraries: set[str] = field(default_factory=set)
    """Libraries read (a cycle brings one back: it counts once)."""


def _nodetree_of(block: Any) -> Iterator[Any]:
    """What BAT's `_expand_generic_nodetree_id` should do: `compositing_node_group` is the
    Blender 5.0 name on scenes only; materials, worlds and lights keep `nodetree`."""
    for name in (b"nodetree", b"compositing_node_group"):
        if block.dna_type.has_field(name):
            tree = block.get_pointer(name, None)
            if tree is not None:
                yield from expanders._expand_generic_nodetree(tree)
            return


def _prepare_bat() -> None:
    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)
    expanders._expand_generic_nodetree_id = _nodetree_of


def read_blend(local: str, request: SceneRequest, guard: Guard, deadline: float) -> SceneDeps:
    """What the scene at `local` (this machine's path of `request.path`) uses."""
    _prepare_bat()
    found = _Found(guard)
    users: dict[tuple[str, int], list[ImageUser]] = defaultdict(list)
    sequences: list[tuple[str, str, tuple[str, int]]] = []
    notes: list[str] = []
    iterator = _LibraryWalk(found, deadline)
    try:
        bfile = blendfile.open_cached(pathlib.Path(local))
    except (blendfile.exceptions.BlendFileError, OSError, EOFError, ValueError) as exc:
        return SceneDeps(error=_reason(exc))
    for n, block in enumerate(iterator.iter_blocks(bfile)):
        if n % BLOCK_CHECK == 0 and time.monotonic() > deadline:
            notes.append("out of time reading the scene: the rest of its dependencies are not planned")
            break
        _collect_users(block, users)
        if len(block.code) > 2 or block.code in (b"ID", b"WM", b"SN"):
            continue
        for usage in blocks2assets.iter_assets(block):
            _usage(found, usage, sequences)
        if len(found.deps) >= request.limits.max_deps:
            notes.append(f"more than {request.limits.max_deps:,} dependencies: the rest are not planned")
            break
    for path, asker, key in sequences:
        _sequence(found, path, asker, users.get(key, []), request.frames)
    if found.refused:
        notes.append(f"{len(found.refused)} libraries outside the allowed roots: not opened, not planned")
    return _result(found, local, notes)


class _LibraryWalk(file2blocks.BlockIterator):
    """BAT's block iterator, reaching libraries through the path map; an unreadable one is a finding."""

    def __init__(self, found: _Found, deadline: float) -> None:
        super().__init__()
        self.found = found
        self.deadline = deadline

    def _visit_linked_blocks(self, blocks_per_lib: dict[Any, set[Any]]) -> Iterator[Any]:
        for lib_bpath, idblocks in blocks_per_lib.items():
            lib = self.found.opened_as(str(bpathlib.make_absolute(lib_bpath.to_path())))
            if time.monotonic() > self.deadline:
                return
            if lib is None or not pathlib.Path(lib).is_file():
                continue  # it is also a dependency of the file linking it: resolution reports it
            try:
                libfile = self.open_blendfile(pathlib.Path(lib))
            except Exception as exc:  # whatever a corrupt library raises, it is a finding
                self.found.unresolved.append((lib, lib, f"cannot read the library: {_reason(exc)}"))
                continue
            self.found.libraries.add(lib)
            yield from self.iter_blocks(libfile, idblocks)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, blendfile.exceptions.BlendFileError):
        return f"not a .blend file, or a corrupt one ({plain(str(exc.args[0]) if exc.args else '')})"
    return plain(f"{type(exc).__name__}: {exc}")


def _usage(found: _Found, usage: Any, sequences: list[tuple[str, str, tuple[str, int]]]) -> None:
    block = usage.block
    holder = str(block.bfile.filepath)
    raw = bytes(block.bfile.abspath(usage.asset_path)).decode("utf-8", "surrogateescape")
    path = found.local(posixpath.normpath(raw))
    if block.code == b"IM" and usage.is_sequence:
        source = block.get(b"source", default=0)
        if "<UDIM>" in path or source == IMA_SRC_TILED:
            found.deps.setdefault(_udim(path), (holder, True))
        elif source == IMA_SRC_SEQUENCE:
            sequences.append((path, holder, (holder, block.addr_old)))
        return
    if block.code == b"VO" and usage.is_sequence:
        pattern = _frame_pattern(path)
        found.deps.setdefault(pattern or path, (holder, pattern is not None))
        return
    found.deps.setdefault(path, (holder, False))


def _udim(path: str) -> str:
    """Older files name a tile (`diff.1001.png`) rather than the `<UDIM>` token."""
    if "<UDIM>" in path:
        return path
    head, _, name = path.rpartition("/")
    tiles = list(_TILE.finditer(name))
    return f"{head}/{name[:tiles[-1].start()]}<UDIM>{name[tiles[-1].end():]}" if tiles else path


def _frame_pattern(path: str) -> str | None:
    head, _, name = path.rpartition("/")
    matches = list(_DIGITS.finditer(name))
    if not matches or "#" in name:
        return None
    m = matches[-1]
    return f"{head}/{name[:m.start()]}{'#' * len(m.group())}{name[m.end():]}"


def _collect_users(block: Any, users: dict[tuple[str, int], list[ImageUser]]) -> None:
    """Image users of node trees (materials, worlds, lights, node groups) and textures."""
    holder = str(block.bfile.filepath)
    if block.code == b"TE" and block.dna_type.has_field(b"iuser"):
        image = block.get_pointer(b"ima", None)
        if image is not None:
            users[(holder, image.addr_old)].append(_image_user(block, (b"iuser",)))
    tree = block if block.code == b"NT" else None
    for name in (b"nodetree", b"compositing_node_group"):
        if tree is None and len(block.code) == 2 and block.dna_type.has_field(name):
            tree = block.get_pointer(name, None)
    if tree is None or not tree.dna_type.has_field(b"nodes"):
        return
    for node in iterators.listbase(tree.get_pointer((b"nodes", b"first"))):
        image = node.get_pointer(b"id", None)
        storage = node.get_pointer(b"storage", None)
        if image is None or image.code != b"IM" or storage is None:
            continue
        if storage.dna_type.has_field(b"iuser"):
            users[(holder, image.addr_old)].append(_image_user(storage, (b"iuser",)))
        elif storage.dna_type_name == "ImageUser":
            users[(holder, image.addr_old)].append(_image_user(storage, ()))


def _image_user(block: Any, prefix: tuple[bytes, ...]) -> ImageUser:
    return ImageUser(int(block[(*prefix, b"sfra")]), int(block[(*prefix, b"offset")]),
                     int(block[(*prefix, b"frames")]), bool(block[(*prefix, b"cycl")]))


def _sequence(found: _Found, path: str, asker: str, users: list[ImageUser], frames: tuple[int, ...]) -> None:
    for frame in frames:
        numbers = {image_user_frame(frame, u.start, u.offset, u.duration, u.cyclic) for u in users} or {frame}
        for number in numbers:
            member = sequence_member(path, number)
            if member is not None:
                found.deps.setdefault(member, (asker, False))
                found.per_frame[member].add(frame)


def _result(found: _Found, local: str, notes: list[str]) -> SceneDeps:
    studio = found.path_map.to_studio
    deps = tuple(SceneDep(studio(p), studio(asker), tuple(sorted(found.per_frame[p])) if p in found.per_frame else None,
                          pattern) for p, (asker, pattern) in found.deps.items() if p != local)
    unresolved = tuple(Unresolved(studio(p), studio(asker), why) for p, asker, why in found.unresolved)
    return SceneDeps(deps=deps, unresolved=unresolved, notes=tuple(notes), layers=1 + len(found.libraries))
