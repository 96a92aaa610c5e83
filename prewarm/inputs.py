"""Resolve a manifest's inputs to the files that exist, with their sizes: the one IO step of planning.

Nothing here is fatal. A missing texture, an empty UDIM folder, a permission
error: each becomes a `Missing` finding next to the files that were found,
because a missing input reported before the render is a failed render saved.

Plans keep studio paths; only the stat and listing calls use the local paths
that `PathMap.to_local` gives. Every path is stat-ed at most once and every
folder listed at most once per call, however many inputs and frames reach it:
on a gateway mount each of those calls is a WAN round trip (and warms the
gateway's attribute and dentry caches, which is why `listed_dirs` is kept).

`stat` and `scandir` are parameters so tests can produce errors that root cannot
(permission denied) without mocks. `stat` follows symlinks, as renderers do;
folder symlinks are followed once (a loop is walked once, not forever).
"""

from __future__ import annotations

import os
import posixpath
import stat as statmod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from prewarm.manifest import InputSpec, Manifest
from prewarm.pathmap import PathMap
from prewarm.patterns import PathPattern
from prewarm.records import FileInfo

StatFn = Callable[[str], os.stat_result]
ScandirFn = Callable[[str], Iterable[os.DirEntry[str]]]


@dataclass(frozen=True, slots=True)
class ResolvedFile:
    """A file an input resolved to; `frame` is set for per-frame inputs, `tile` for tile patterns."""

    path: str
    size: int
    mtime: float
    input_index: int
    frame: int | None = None
    tile: str | None = None

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.path, self.size, self.mtime)


@dataclass(frozen=True, slots=True)
class Missing:
    """An input, or one frame of it, that cannot be found or read; `path` is a studio path."""

    path: str
    input_line: int
    reason: str
    input_index: int
    frame: int | None = None
    optional: bool = False
    """The manifest said the input may be absent: worth showing, not a problem."""


@dataclass(frozen=True)
class Resolved:
    files: tuple[ResolvedFile, ...]
    missing: tuple[Missing, ...]
    listed_dirs: tuple[str, ...]
    """Studio folders listed (tile folders, folder inputs): a warm lists them again to warm READDIR."""


def resolve_inputs(manifest: Manifest, path_map: PathMap, *,
                   stat: StatFn = os.stat, scandir: ScandirFn = os.scandir) -> Resolved:
    """Every input of `manifest` as the files that exist now, in manifest then frame order."""
    resolver = _Resolver(path_map, stat, scandir)
    for index, spec in enumerate(manifest.inputs):
        frames: tuple[int | None, ...] = manifest.frames if spec.pattern.has_frame else (None,)
        for frame in frames:
            if spec.is_dir:
                resolver.walk(index, spec, spec.pattern.expand(frame), frame)
            elif spec.pattern.has_tile:
                resolver.tiles(index, spec, spec.pattern if frame is None else spec.pattern.for_frame(frame), frame)
            else:
                resolver.file(index, spec, spec.pattern.expand(frame), frame)
    return Resolved(tuple(resolver.files), tuple(resolver.missing), tuple(resolver.listed))


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, NotADirectoryError):
        return "a folder on the way is a file"
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _selected(rel: str, name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(rel, g) or fnmatchcase(name, g) for g in globs)


class _Resolver:
    """Collects findings while memoising every stat and listing by local path."""

    def __init__(self, path_map: PathMap, stat: StatFn, scandir: ScandirFn) -> None:
        self.path_map = path_map
        self._stat = stat
        self._scandir = scandir
        self.stats: dict[str, os.stat_result | OSError] = {}
        self.listings: dict[str, list[str] | OSError] = {}
        self.local_dirs: dict[str, str] = {}
        self.files: list[ResolvedFile] = []
        self.missing: list[Missing] = []
        self.listed: dict[str, None] = {}

    def local_dir(self, folder: str) -> str:
        """Cached per folder: path-map prefixes are folders (mount points), so files follow theirs."""
        base = self.local_dirs.get(folder)
        if base is None:
            base = self.local_dirs[folder] = self.path_map.to_local(folder or "/")
        return base

    def local(self, path: str) -> str:
        head, _, name = path.rpartition("/")
        return f"{self.local_dir(head).rstrip('/')}/{name}"

    def stat(self, local: str) -> os.stat_result | OSError:
        result = self.stats.get(local)
        if result is None:
            try:
                result = self._stat(local)
            except OSError as exc:
                result = exc
            self.stats[local] = result
        return result

    def names(self, local_dir: str) -> list[str] | OSError:
        result = self.listings.get(local_dir)
        if result is None:
            try:
                result = sorted(entry.name for entry in self._scandir(local_dir))
            except OSError as exc:
                result = exc
            self.listings[local_dir] = result
        return result

    def miss(self, index: int, spec: InputSpec, path: str, reason: str, frame: int | None) -> None:
        self.missing.append(Missing(path, spec.line, reason, index, frame, spec.optional))

    def file(self, index: int, spec: InputSpec, path: str, frame: int | None, tile: str | None = None) -> None:
        st = self.stat(self.local(path))
        if isinstance(st, OSError):
            self.miss(index, spec, path, _reason(st), frame)
        elif statmod.S_ISDIR(st.st_mode):
            self.miss(index, spec, path, "is a folder: end the path with / to warm everything below it", frame)
        elif not statmod.S_ISREG(st.st_mode):
            self.miss(index, spec, path, "not a regular file", frame)
        else:
            self.files.append(ResolvedFile(path, st.st_size, st.st_mtime, index, frame, tile))

    def tiles(self, index: int, spec: InputSpec, pattern: PathPattern, frame: int | None) -> None:
        """The tiles that exist, found as renderers find them: by listing their folder."""
        folder = pattern.directory
        self.listed[folder] = None
        names = self.names(self.local_dir(folder))
        if isinstance(names, OSError):
            self.miss(index, spec, pattern.text, f"cannot list {folder}/: {_reason(names)}", frame)
            return
        found = 0
        for name in names:
            match = pattern.match(name)
            if match is not None:
                found += 1
                self.file(index, spec, posixpath.join(folder, name), frame, match.tile)
        if not found:
            self.miss(index, spec, pattern.text, "no tiles found", frame)

    def walk(self, index: int, spec: InputSpec, root: str, frame: int | None) -> None:
        """Every regular file below `root`, in sorted path order; excluded folders are not listed."""
        st = self.stat(self.local(root))
        if isinstance(st, OSError):
            self.miss(index, spec, root + "/", _reason(st), frame)
            return
        if not statmod.S_ISDIR(st.st_mode):
            self.miss(index, spec, root + "/", "not a folder", frame)
            return
        before = len(self.files)
        visited = {(st.st_dev, st.st_ino)}
        stack: list[Iterator[tuple[str, str]]] = [self.entries(index, spec, root, "", frame)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            path, rel = item
            child = self.stat(self.local(path))
            name = rel.rpartition("/")[2]
            if isinstance(child, OSError):
                self.miss(index, spec, path, _reason(child), frame)
            elif statmod.S_ISDIR(child.st_mode):
                key = (child.st_dev, child.st_ino)
                if key not in visited and not _selected(rel, name, spec.exclude):
                    visited.add(key)
                    stack.append(self.entries(index, spec, path, rel + "/", frame))
            elif statmod.S_ISREG(child.st_mode) and (not spec.include or _selected(rel, name, spec.include)) \
                    and not _selected(rel, name, spec.exclude):
                self.files.append(ResolvedFile(path, child.st_size, child.st_mtime, index, frame))
        if len(self.files) == before:
            reason = "no files match include/exclude" if spec.include or spec.exclude else "no files below"
            self.miss(index, spec, root + "/", reason, frame)

    def entries(self, index: int, spec: InputSpec, folder: str, rel: str, frame: int | None
                ) -> Iterator[tuple[str, str]]:
        """(studio path, path below the input's folder) of each entry, listing the folder once."""
        self.listed[folder] = None
        names = self.names(self.local_dir(folder))
        if isinstance(names, OSError):
            self.miss(index, spec, folder + "/", f"cannot list: {_reason(names)}", frame)
            return
        for name in names:
            yield f"{folder}/{name}", rel + name
