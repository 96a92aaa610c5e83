"""Resolve a manifest's inputs to the files that exist, with their sizes. Pure: the file system is passed in.

Nothing here is fatal. A missing texture, an empty UDIM folder, a permission error,
a symlink leading out of the roots: each becomes a `Missing` finding next to the
files that were found, because a missing input reported before the render is a
failed render saved.

Everything here is a studio path; the `FileSystem` (the site's, `prewarm.site.fs`)
decides where each one is on this machine and whether it may be touched. Every
path is stat-ed at most once and every folder listed at most once per call, however
many inputs and frames reach it: on a gateway mount each of those calls is a WAN
round trip (and warms the gateway's attribute and dentry caches, which is why
`listed_dirs` is kept). So stats are asked for in bulk (`stat_many`, which the site
runs concurrently), and a sequence whose frames share a folder lists it once and
stats only the frames it holds. Folders reached twice (a symlink loop) are walked once.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Protocol

from prewarm.errors import ManifestError
from prewarm.plan.limits import MAX_FILES
from prewarm.plan.manifest import InputSpec, Manifest
from prewarm.plan.patterns import PathPattern
from prewarm.plan.records import NOT_UTF8, FileInfo, path_problem, shown


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Stat:
    """What a stat said about a studio path (symlinks followed, as renderers do)."""

    kind: Kind
    size: int
    mtime: float
    ident: tuple[int, int] = (0, 0)
    """(device, inode): a folder reached twice is walked once."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a path could not be stat-ed or listed, in words for the plan's findings."""

    reason: str


class FileSystem(Protocol):
    """The studio file system as this machine sees it (`prewarm.site.fs.SiteFS`)."""

    def stat_many(self, paths: Sequence[str]) -> list[Stat | Failure]:
        """One answer per path, in order; may run the calls concurrently."""

    def listdir(self, path: str) -> list[str] | Failure:
        """The names in a folder, sorted."""


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
class ResolvedInputs:
    files: tuple[ResolvedFile, ...]
    missing: tuple[Missing, ...]
    listed_dirs: tuple[str, ...]
    """Studio folders listed (tile folders, folder inputs): a warm lists them again to warm READDIR."""


def resolve_inputs(manifest: Manifest, fs: FileSystem) -> ResolvedInputs:
    """Every input of `manifest` as the files that exist now, in manifest then frame order."""
    resolver = _Resolver(fs, manifest.source)
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
    return ResolvedInputs(tuple(resolver.files), tuple(resolver.missing), tuple(resolver.listed))


def _selected(rel: str, name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(rel, g) or fnmatchcase(name, g) for g in globs)


class _Resolver:
    """Collects findings while memoising every stat and listing by studio path."""

    def __init__(self, fs: FileSystem, source: str = "<manifest>") -> None:
        self.fs = fs
        self.source = source
        self.stats: dict[str, Stat | Failure] = {}
        self.listings: dict[str, list[str] | Failure] = {}
        self.name_sets: dict[str, frozenset[str]] = {}
        self.files: list[ResolvedFile] = []
        self.missing: list[Missing] = []
        self.listed: dict[str, None] = {}

    def stat(self, path: str) -> Stat | Failure:
        result = self.stats.get(path)
        if result is None:
            result = self.stats[path] = self.fs.stat_many([path])[0]
        return result

    def prefetch(self, paths: Iterable[str]) -> None:
        """Stat many paths in one request: the site runs them concurrently."""
        todo = [p for p in dict.fromkeys(paths) if p not in self.stats]
        if len(todo) > 1:
            self.stats.update(zip(todo, self.fs.stat_many(todo), strict=True))

    def names(self, folder: str) -> list[str] | Failure:
        result = self.listings.get(folder)
        if result is None:
            result = self.listings[folder] = self.fs.listdir(folder or "/")
            if len(self.listings) > MAX_FILES:
                raise ManifestError(self.source, f"inputs: more than {MAX_FILES:,} folders to list: "
                                                 "narrow the folder inputs with include/exclude")
        return result

    def found(self, spec: InputSpec, index: int, file: ResolvedFile) -> None:
        """One more file; the job is refused once its inputs name more than `MAX_FILES`, found or missing."""
        self.files.append(file)
        self.count(spec, index)

    def present(self, folder: str) -> frozenset[str] | None:
        """Names in a folder, or None when it cannot be listed (stat then tells why)."""
        names = self.name_sets.get(folder)
        if names is None:
            listing = self.names(folder)
            if isinstance(listing, Failure):
                return None
            names = self.name_sets[folder] = frozenset(listing)
        return names

    def miss(self, index: int, spec: InputSpec, path: str, reason: str, frame: int | None) -> None:
        """One more finding; a missing file costs a stat like a found one, so it counts against `MAX_FILES` too."""
        self.missing.append(Missing(path, spec.line, reason, index, frame, spec.optional))
        self.count(spec, index)

    def count(self, spec: InputSpec, index: int) -> None:
        if len(self.files) + len(self.missing) > MAX_FILES:
            raise ManifestError(f"{self.source}:{spec.line}", f"inputs[{index}]: the inputs resolve to more than "
                                                               f"{MAX_FILES:,} files, missing ones included: narrow "
                                                               "them with include/exclude")

    def file(self, index: int, spec: InputSpec, path: str, frame: int | None, tile: str | None = None) -> None:
        st = self.stat(path)
        if isinstance(st, Failure):
            self.miss(index, spec, path, st.reason, frame)
        elif st.kind is Kind.DIR:
            self.miss(index, spec, path, "is a folder: end the path with / to warm everything below it", frame)
        elif st.kind is not Kind.FILE:
            self.miss(index, spec, path, "not a regular file", frame)
        else:
            self.found(spec, index, ResolvedFile(path, st.size, st.mtime, index, frame, tile))

    def sequence(self, index: int, spec: InputSpec, frames: tuple[int, ...]) -> None:
        """One file per frame; when one folder holds them all, it is listed once and only
        the frames in it are stat-ed: a missing frame costs no LOOKUP round trip."""
        paths = [(frame, spec.pattern.expand(frame)) for frame in frames]
        present = None if spec.pattern.frame_in_directory else self.present(spec.pattern.directory)
        if present is not None:
            paths_here = [(frame, path) for frame, path in paths if path.rpartition("/")[2] in present]
            for frame, path in paths:
                if path.rpartition("/")[2] not in present:
                    self.miss(index, spec, path, "not found", frame)
            paths = paths_here
        self.prefetch(path for _, path in paths)
        for frame, path in paths:
            self.file(index, spec, path, frame)

    def tiles(self, index: int, spec: InputSpec, pattern: PathPattern, frame: int | None) -> None:
        """The tiles that exist, found as renderers find them: by listing their folder."""
        folder = pattern.directory
        self.listed[folder] = None
        names = self.names(folder)
        if isinstance(names, Failure):
            self.miss(index, spec, pattern.text, f"cannot list {folder}/: {names.reason}", frame)
            return
        matches = [(posixpath.join(folder, name), m.tile) for name in names if (m := pattern.match(name))]
        self.prefetch(path for path, _ in matches)
        for path, tile in matches:
            self.file(index, spec, path, frame, tile)
        if not matches:
            self.miss(index, spec, pattern.text, "no tiles found", frame)

    def walk(self, index: int, spec: InputSpec, root: str, frame: int | None) -> None:
        """Every regular file below `root`, in sorted path order; excluded folders are not listed."""
        st = self.stat(root)
        if isinstance(st, Failure):
            self.miss(index, spec, root + "/", st.reason, frame)
            return
        if st.kind is not Kind.DIR:
            self.miss(index, spec, root + "/", "not a folder", frame)
            return
        before = len(self.files)
        visited = {st.ident}
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
            child = self.stat(path)
            if isinstance(child, Failure):
                self.miss(index, spec, path, child.reason, frame)
            elif child.kind is Kind.DIR:
                if child.ident not in visited:
                    visited.add(child.ident)
                    stack.append(self.entries(index, spec, path, rel + "/", frame))
            elif child.kind is Kind.FILE and (not spec.include or _selected(rel, name, spec.include)):
                self.found(spec, index, ResolvedFile(path, child.size, child.mtime, index, frame))
        if len(self.files) == before:
            reason = "no files match include/exclude" if spec.include or spec.exclude else "no files below"
            self.miss(index, spec, root + "/", reason, frame)

    def entries(self, index: int, spec: InputSpec, folder: str, rel: str, frame: int | None
                ) -> Iterator[tuple[str, str]]:
        """(studio path, path below the input's folder) of each entry, listing the folder once."""
        self.listed[folder] = None
        names = self.names(folder)
        if isinstance(names, Failure):
            self.miss(index, spec, folder + "/", f"cannot list: {names.reason}", frame)
            return
        named = [name for name in names if not name.isascii() and self.unnamed(index, spec, folder, name, frame)]
        if named:
            names = [name for name in names if name not in set(named)]
        self.prefetch(f"{folder}/{name}" for name in names if not _selected(rel + name, name, spec.exclude))
        for name in names:
            yield f"{folder}/{name}", rel + name

    def unnamed(self, index: int, spec: InputSpec, folder: str, name: str, frame: int | None) -> bool:
        """Whether a listed name cannot be planned (not UTF-8): then it is one finding naming the
        folder and the name with its bytes escaped, and the file (or folder) is left out. A plan,
        a Redis key and a report all hold text; a name that is not is never planned."""
        problem = path_problem(f"{folder}/{name}")
        if problem is None:
            return False
        self.miss(index, spec, f"{folder}/{shown(name)}", NOT_UTF8, frame)
        return True
