"""Resolve a manifest's inputs to the files that exist, with their sizes: the one IO step of planning.

Nothing here is fatal. A missing texture, an empty UDIM folder, a permission
error: each becomes a `Missing` finding next to the files that were found,
because a missing input reported before the render is a failed render saved.

Plans keep studio paths; only the stat and listing calls use the local paths
that `PathMap.to_local` gives. Every path is stat-ed at most once and every
folder listed at most once per call, however many inputs and frames reach it:
on a gateway mount each of those calls is a WAN round trip (and warms the
gateway's attribute and dentry caches, which is why `listed_dirs` is kept).
So stats run concurrently, and a sequence whose frames share a folder lists it
once and stats only the frames it holds.

`stat` and `scandir` are parameters so tests can produce errors that root cannot
(permission denied) without mocks. `stat` follows symlinks, as renderers do;
folder symlinks are followed once (a loop is walked once, not forever).
"""

from __future__ import annotations

import os
import posixpath
import stat as statmod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase

from prewarm.plan.manifest import InputSpec, Manifest
from prewarm.plan.model import FileInfo
from prewarm.plan.pathmap import PathMap
from prewarm.plan.patterns import PathPattern

StatFn = Callable[[str], os.stat_result]
ScandirFn = Callable[[str], Iterable[os.DirEntry[str]]]

_CHUNK = 256
"""Paths per stat task: the thread hand-off costs about as much as a local stat."""


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


def resolve_inputs(manifest: Manifest, path_map: PathMap, *, stat: StatFn = os.stat,
                   scandir: ScandirFn = os.scandir, workers: int = 16) -> Resolved:
    """Every input of `manifest` as the files that exist now, in manifest then frame order.

    Up to `workers` stat calls are in flight at once: on a gateway mount each one
    waits a WAN round trip, and one at a time would take hours for a big job.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="prewarm-stat") if workers > 1 else None
    resolver = _Resolver(path_map, stat, scandir, pool)
    try:
        for index, spec in enumerate(manifest.inputs):
            pattern = spec.pattern
            frames: tuple[int | None, ...] = manifest.frames if pattern.has_frame else (None,)
            if spec.is_dir:
                for frame in frames:
                    resolver.walk(index, spec, pattern.expand(frame), frame)
            elif pattern.has_tile:
                for frame in frames:
                    resolver.tiles(index, spec, pattern if frame is None else pattern.for_frame(frame), frame)
            elif pattern.has_frame:
                resolver.sequence(index, spec, manifest.frames)
            else:
                resolver.file(index, spec, pattern.expand(), None)
    finally:
        if pool is not None:
            pool.shutdown()
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

    def __init__(self, path_map: PathMap, stat: StatFn, scandir: ScandirFn, pool: Executor | None) -> None:
        self.path_map = path_map
        self._stat = stat
        self._scandir = scandir
        self.pool = pool
        self.stats: dict[str, os.stat_result | OSError] = {}
        self.listings: dict[str, list[str] | OSError] = {}
        self.name_sets: dict[str, frozenset[str]] = {}
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

    def _stat_or_error(self, local: str) -> os.stat_result | OSError:
        try:
            return self._stat(local)
        except OSError as exc:
            return exc

    def _stat_chunk(self, chunk: list[str]) -> list[os.stat_result | OSError]:
        return [self._stat_or_error(local) for local in chunk]

    def stat(self, local: str) -> os.stat_result | OSError:
        result = self.stats.get(local)
        if result is None:
            result = self.stats[local] = self._stat_or_error(local)
        return result

    def prefetch(self, locals_: Iterable[str]) -> None:
        """Stat many paths concurrently, in chunks so thread hand-offs stay cheap next to the calls."""
        todo = [p for p in dict.fromkeys(locals_) if p not in self.stats]
        if self.pool is None or len(todo) < 2:
            return
        chunks = [todo[i:i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
        if len(chunks) < 4:
            chunks = [todo[i::4] for i in range(4) if todo[i::4]]
        for chunk, results in zip(chunks, self.pool.map(self._stat_chunk, chunks), strict=True):
            self.stats.update(zip(chunk, results, strict=True))

    def names(self, local_dir: str) -> list[str] | OSError:
        result = self.listings.get(local_dir)
        if result is None:
            try:
                result = sorted(entry.name for entry in self._scandir(local_dir))
            except OSError as exc:
                result = exc
            self.listings[local_dir] = result
        return result

    def present(self, local_dir: str) -> frozenset[str] | None:
        """Names in a folder, or None when it cannot be listed (stat then tells why)."""
        names = self.name_sets.get(local_dir)
        if names is None:
            listing = self.names(local_dir)
            if isinstance(listing, OSError):
                return None
            names = self.name_sets[local_dir] = frozenset(listing)
        return names

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

    def sequence(self, index: int, spec: InputSpec, frames: tuple[int, ...]) -> None:
        """One file per frame; when one folder holds them all, it is listed once and only
        the frames in it are stat-ed: a missing frame costs no LOOKUP round trip."""
        paths = [(frame, spec.pattern.expand(frame)) for frame in frames]
        present = None if spec.pattern.frame_in_directory else self.present(self.local_dir(spec.pattern.directory))
        if present is not None:
            paths_here = [(frame, path) for frame, path in paths if path.rpartition("/")[2] in present]
            for frame, path in paths:
                if path.rpartition("/")[2] not in present:
                    self.miss(index, spec, path, "not found", frame)
            paths = paths_here
        self.prefetch(self.local(path) for _, path in paths)
        for frame, path in paths:
            self.file(index, spec, path, frame)

    def tiles(self, index: int, spec: InputSpec, pattern: PathPattern, frame: int | None) -> None:
        """The tiles that exist, found as renderers find them: by listing their folder."""
        folder = pattern.directory
        self.listed[folder] = None
        names = self.names(self.local_dir(folder))
        if isinstance(names, OSError):
            self.miss(index, spec, pattern.text, f"cannot list {folder}/: {_reason(names)}", frame)
            return
        matches = [(posixpath.join(folder, name), m.tile) for name in names if (m := pattern.match(name))]
        self.prefetch(self.local(path) for path, _ in matches)
        for path, tile in matches:
            self.file(index, spec, path, frame, tile)
        if not matches:
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
            name = rel.rpartition("/")[2]
            if _selected(rel, name, spec.exclude):
                continue
            child = self.stat(self.local(path))
            if isinstance(child, OSError):
                self.miss(index, spec, path, _reason(child), frame)
            elif statmod.S_ISDIR(child.st_mode):
                if (child.st_dev, child.st_ino) not in visited:
                    visited.add((child.st_dev, child.st_ino))
                    stack.append(self.entries(index, spec, path, rel + "/", frame))
            elif statmod.S_ISREG(child.st_mode) and (not spec.include or _selected(rel, name, spec.include)):
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
        base = self.local_dir(folder).rstrip("/")
        self.prefetch(f"{base}/{name}" for name in names if not _selected(rel + name, name, spec.exclude))
        for name in names:
            yield f"{folder}/{name}", rel + name
