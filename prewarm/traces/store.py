"""The trace store: traces of earlier renders, kept per show/shot/job so later jobs plan from them.

    ROOT/show/shot/job/frame.1001.jsonl.gz     one file per frame, prewarm JSON Lines, gzip
    ROOT/show/shot/job/.job.json               the names as given (folder names are made safe)
    ROOT/show/shot/job/.profile/frame.1001.jsonl.gz.json   what planning needs of that frame

Files, not Redis: traces are large (megabytes per frame) and append-only, the planner
reads files anyway, and render nodes can write into a shared folder without a client.
Everything is normalised on import (strace or JSON Lines in, JSON Lines out, studio
paths, only reads under the configured roots), so planning from the store needs no path
map and no format sniffing surprises. A file appears under its final name only once it
is complete (written under a hidden temporary name, then renamed), and importing a frame
again replaces it: the newest render of a frame is the truth, and a watch folder that
imports a file twice stores it once.

The store is bounded: `prune` removes whole jobs, oldest first, down to a byte budget
(`trace_store_max_bytes`, applied after each import) or to the newest N jobs per shot.

Profiles (`profile.py`) make planning from the store cost what the shot's files x frames
cost, not what its history of calls costs: each raw frame file gets one, written when the
frame is filed, under a hidden folder that listings of the store do not see. Render
nodes file frames at the same time without a lock: every file (raw and profile) is
written under a temporary name and renamed into place, one frame per file, and a profile
names the raw file it was built from (size and mtime). Reading merges the per-frame
profiles; one that is missing, torn, of another format or of a raw file since replaced
(two nodes filing the same frame at once, a store filed by an older prewarm) is rebuilt
from its raw file and written back, so the raw traces stay the truth.

Structured files (tiled TIFF/.tx, EXR) are filed in their own coordinates too: when the
caller hands `import_traces` a structure reader (`StructureOf`: the store may not read file
formats itself, so `prewarm.flow.filing` makes one through the site's guard), each frame's
profile keeps, per structured file it read, the tiles `(level, x, y)` read and the file's
identity at filing time (size, mtime, inode, a digest of its header and tile tables, its
levels' and tiles' sizes). A plan against a texture re-published since maps those tiles to
its new offsets (`prewarm.plan.predict`). Frames filed without a reader, or by an older
prewarm, have no identity: the planner says so once per file and checks their bytes.

Render nodes may write into the store's folder, so nothing in it is trusted: it is
listed, read, written and pruned through a `Guard` rooted at the store. Only real
folders and regular files count; a symlink (into `/etc`, or dangling), a FIFO or a
device there is passed over, never followed, read or removed through. Files are
created and renamed relative to a checked descriptor of their job's folder (each
importing process opens its own), so a folder swapped for a link mid-import cannot
redirect a write, and a pruned job is removed through its shot folder's descriptor.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import stat as statmod
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from prewarm.errors import ConfigError, TraceError
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.manifest import Manifest
from prewarm.plan.pathmap import PathMap
from prewarm.plan.structure import Filed, Identity, Structure
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces import cores
from prewarm.traces.counters import ImportStats, Records
from prewarm.traces.files import TraceFile, collect, read_batches
from prewarm.traces.jsonl import dump_records
from prewarm.traces.profile import (
    FrameProfile,
    ProfileBuilder,
    ProfileError,
    Source,
    decode,
    encode,
    to_traceset,
)

__all__ = [
    "ImportResult",
    "StructureOf",
    "PruneResult",
    "StoredJob",
    "StoredTraces",
    "describe",
    "find_traces",
    "frame_profiles",
    "import_traces",
    "list_traces",
    "load_profiles",
    "prune",
    "store_root",
    "store_traces",
    "under_roots",
    "version_family",
]

UNKNOWN = "_"
"""Folder of a job whose show or shot nobody said."""

META = ".job.json"

META_MAX = 64 << 10
"""A job's `.job.json` holds three names; anything bigger is not ours and is not read."""

PROFILES = ".profile"
"""Hidden folder of a job's profiles: `trace_files` and `list_traces` skip hidden names."""

PROFILE_MAX = 256 << 20
"""A kept profile bigger than this is not ours (a frame's summary is megabytes at most): it
is not read, and the raw file is read instead."""

MAX_JOBS_FOUND = 5
"""Earlier jobs `find_traces` returns: the newest few describe the shot; more only slow planning."""

PARALLEL_BYTES = 16 << 20
"""Below this much trace data, an import runs in one process: starting workers costs more."""

StructureOf = Callable[[str], tuple[Identity, Structure] | None]
"""A studio file's identity and structure as it is now, or None (not structured, unreadable, gone)."""

_VERSION = re.compile(r"[._-]?v\d+(?=$|[._-])", re.IGNORECASE)


@dataclass
class ImportResult:
    show: str
    shot: str
    job: str
    folder: str
    frames: dict[int | None, int] = field(default_factory=dict)
    """Records stored per frame."""
    bytes: int = 0
    """Compressed bytes written."""
    stats: ImportStats = field(default_factory=ImportStats)
    pruned: int = 0
    """Jobs removed afterwards to keep the store within its budget."""


@dataclass(frozen=True)
class StoredJob:
    show: str
    shot: str
    job: str
    path: str
    frames: int
    bytes: int
    """Raw files and their profiles: what pruning the job frees."""
    mtime: float
    """Newest file of the job: when it was last rendered (or imported)."""


@dataclass
class PruneResult:
    removed: list[StoredJob] = field(default_factory=list)
    bytes_freed: int = 0
    bytes_left: int = 0


def store_root(settings: Settings) -> Path:
    if not settings.trace_store:
        raise ConfigError("trace_store", "no trace store configured: set trace_store in the config "
                                         "or PREWARM_TRACE_STORE")
    return Path(settings.trace_store)


def under_roots(settings: Settings) -> Callable[[str], bool] | None:
    """Keeps studio paths under the configured roots; None (keep all) when no root is configured."""
    roots = tuple(r.rstrip("/") for r in settings.allowed_roots())
    if not roots:
        return None
    if "" in roots:
        return None  # a root of "/"

    def keep(path: str) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)
    return keep


def _component(name: str | None) -> str:
    """A name as one safe folder name: no separators, never `.`, `..` or hidden."""
    if name is None or not name.strip():
        return UNKNOWN
    safe = re.sub(r"[/\\\0]", "_", name.strip())
    return "_" + safe if safe.startswith(".") else safe


def _frame_name(frame: int | None) -> str:
    return "noframe.jsonl.gz" if frame is None else f"frame.{frame:04d}.jsonl.gz"


def _guard(settings: Settings) -> Guard:
    return Guard.local(str(store_root(settings)))


def import_traces(settings: Settings, paths: Sequence[str | TraceFile], show: str | None, shot: str | None,
                  job: str, frame: int | None = None, workers: int | None = None,
                  min_parallel_bytes: int = PARALLEL_BYTES, structures: StructureOf | None = None) -> ImportResult:
    """Normalise trace files (strace or JSON Lines, plain or gzip) into the store under show/shot/job.

    `structures`: each structured file read is filed in tiles with its identity (read once per
    file per import, in this process); without it, no identity is filed.

    `frame` is for records that carry none and whose file names hold no number. A file
    that is not a trace fails the whole import (TraceError) and leaves the store as it was.
    Many files (a job's traces at once) are parsed over all cores in contiguous groups;
    the frames they share are joined in file order, so the store holds exactly what a
    single process would have written.
    """
    if not job or not job.strip():
        raise ConfigError("job", "a stored trace needs its job name")
    parts = (_component(show), _component(shot), _component(job))
    folder = store_root(settings).joinpath(*parts)
    result = ImportResult(show or UNKNOWN, shot or UNKNOWN, job, str(folder))
    files = collect(paths)
    guard = _guard(settings)
    workers = cores.workers_for(len(files), sum(f.size for f in files), min_parallel_bytes, workers)
    made: list[_Part] = []
    with _job_folder(guard, parts) as dfd:
        try:
            if workers < 2:
                made.append(_import_part(settings, guard, files, frame, parts))
            else:
                groups = [files[len(files) * i // workers:len(files) * (i + 1) // workers] for i in range(workers)]
                with cores.pool(workers) as pool:
                    futures = [pool.submit(_import_part, settings, guard, g, frame, parts) for g in groups]
                    for fut in futures:  # every worker finishes (or fails) before any temporary file is judged
                        with suppress(Exception):
                            made.append(fut.result())
                    for fut in futures:
                        fut.result()  # the first failure, raised
            for part in made:
                result.stats.add(part.stats)
            _file_parts(dfd, made, result, _Filer(structures))
        finally:
            for part in made:
                for tmp, _ in part.frames.values():
                    _unlink(dfd, tmp)
        _write_meta(dfd, show, shot, job)
    if settings.trace_store_max_bytes is not None:
        result.pruned = len(prune(settings, max_bytes=settings.trace_store_max_bytes, protect=(str(folder),)).removed)
    return result


@contextmanager
def _job_folder(guard: Guard, parts: tuple[str, ...]) -> Iterator[int]:
    """A checked descriptor of the job's folder, made where missing: each folder on the way must be
    a real one (a link planted in the store is refused, not written through)."""
    root = guard.roots[0]
    os.makedirs(root, exist_ok=True)
    fd, _ = guard.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts:
            child = _subfolder(fd, name)
            os.close(fd)
            fd = child
        yield fd
    except OSError as exc:
        raise ConfigError("trace_store", f"cannot write {'/'.join(parts)} in the trace store: "
                                         f"{exc.strerror or type(exc).__name__}{_hint(exc)}") from exc
    finally:
        os.close(fd)


_HINTS = {errno.ENOSPC: "the disk is full: free space, or `prewarm traces prune`, or set trace_store_max_bytes",
          errno.EDQUOT: "the disk quota is used up: raise it, or `prewarm traces prune`",
          errno.ELOOP: "a link or a file where a folder should be",
          errno.ENOTDIR: "a link or a file where a folder should be",
          errno.EACCES: "the store's folders are not writable by this user", errno.EROFS: "a read-only file system"}
"""What to do about a failed write into the store, by errno: a full disk is not a planted link."""


def _hint(exc: OSError) -> str:
    hint = _HINTS.get(exc.errno or 0)
    return f" ({hint})" if hint else ""


def _subfolder(dfd: int, name: str) -> int:
    """A descriptor of the real folder `name` in the folder of `dfd`, made where missing."""
    with suppress(FileExistsError):
        os.mkdir(name, dir_fd=dfd)
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)


def _create(dfd: int, name: str) -> IO[bytes]:
    """A new file in the folder of `dfd` (never an existing one, never through a link)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    return os.fdopen(fd, "wb")


def _reopen(dfd: int, name: str) -> IO[bytes]:
    """A file of the folder of `dfd` that this import made, for appending (never through a link)."""
    return os.fdopen(os.open(name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd), "ab")


def _unlink(dfd: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dfd)


def _write_meta(dfd: int, show: str | None, shot: str | None, job: str) -> None:
    tmp = f".tmp-{uuid.uuid4().hex}.json"
    with _create(dfd, tmp) as fh:
        fh.write(json.dumps({"show": show, "shot": shot, "job": job}).encode())
    os.replace(tmp, META, src_dir_fd=dfd, dst_dir_fd=dfd)


@dataclass
class _Part:
    """What one importer (a process) made of a group of files: per frame, the name of its
    temporary raw file in the job's folder and its profile (without a source yet), in the
    order frames first appeared."""

    frames: dict[int | None, tuple[str, FrameProfile]] = field(default_factory=dict)
    stats: ImportStats = field(default_factory=ImportStats)


OPEN_FRAMES = 16
"""Frames whose raw files an import keeps open at once. Each open gzip stream holds about 300 KB
of compressor state: a job of 2,500 traced frames held them all (940 MB); beyond this many
the least recent frame's stream is finished, and reopened as a further gzip member (a valid
gzip file still) if the frame comes back."""


class _FrameFiles:
    """The temporary raw files of the frames an import is filing, a gzip stream each."""

    def __init__(self, dfd: int) -> None:
        self.dfd = dfd
        self.temps: dict[int | None, str] = {}
        self._open: dict[int | None, tuple[IO[bytes], gzip.GzipFile]] = {}  # least recently written first

    def write(self, frame: int | None, data: bytes) -> None:
        stream = self._open.pop(frame, None)
        if stream is None:
            if len(self._open) >= OPEN_FRAMES:
                self._finish(next(iter(self._open)))
            name = self.temps.get(frame)
            if name is None:
                name = self.temps[frame] = f".tmp-{uuid.uuid4().hex}-{_frame_name(frame)}"
                raw = _create(self.dfd, name)
            else:
                raw = _reopen(self.dfd, name)
            stream = (raw, gzip.GzipFile(fileobj=raw, mode="wb"))
        self._open[frame] = stream
        stream[1].write(data)

    def _finish(self, frame: int | None) -> None:
        raw, gz = self._open.pop(frame)
        try:
            gz.close()
        finally:
            raw.close()

    def close(self) -> None:
        while self._open:
            self._finish(next(iter(self._open)))


def _import_part(settings: Settings, guard: Guard, files: list[TraceFile], frame: int | None,
                 parts: tuple[str, ...]) -> _Part:
    part = _Part()
    builders: dict[int | None, ProfileBuilder] = {}
    runs = read_batches(files, settings.path_map, frame=frame, keep=under_roots(settings), stats=part.stats)
    with _job_folder(guard, parts) as dfd:
        out = _FrameFiles(dfd)
        try:
            try:
                for run in runs:
                    for f, recs in _by_frame(run).items():
                        out.write(f, dump_records(recs))
                        builder = builders.get(f)
                        if builder is None:
                            builder = builders[f] = ProfileBuilder(f)
                        builder.add_records(recs)
            finally:
                out.close()
        except BaseException:
            for tmp in out.temps.values():
                _unlink(dfd, tmp)
            raise
    part.frames = {f: (out.temps[f], builders[f].build((0, 0))) for f in out.temps}
    return part


def _by_frame(run: Records) -> dict[int | None, Records]:
    first, last = run[0][4], run[-1][4]
    if first == last and all(r[4] == first for r in run):
        return {first: run}  # strace logs, and JSON Lines written a frame at a time
    out: dict[int | None, Records] = {}
    for r in run:
        out.setdefault(r[4], []).append(r)
    return out


class _Filer:
    """Each structured file's identity and structure, read once per import; a frame's reads in tiles."""

    def __init__(self, structures: StructureOf | None) -> None:
        self._read = structures
        self._seen: dict[str, tuple[Identity, Structure] | None] = {}

    def filed(self, profile: FrameProfile) -> FrameProfile:
        if self._read is None:
            return profile
        out: dict[str, Filed] = {}
        for path, spans in profile.reads.items():
            if path not in self._seen:
                self._seen[path] = self._read(path)
            got = self._seen[path]
            if got is not None:
                identity, st = got
                out[path] = Filed(identity, tuple(sorted(st.tiles_read(spans)[0])))
        return replace(profile, filed=out) if out else profile


def _file_parts(dfd: int, parts: list[_Part], result: ImportResult, filer: _Filer) -> None:
    """Join the parts' pieces of each frame (gzip members concatenate into one valid gzip
    file, in file order), then put each frame's raw file and profile in place."""
    order: dict[int | None, list[tuple[str, FrameProfile]]] = {}
    for part in parts:
        for f, piece in part.frames.items():
            order.setdefault(f, []).append(piece)
    for f, pieces in order.items():
        tmp = pieces[0][0]
        builder = ProfileBuilder(f)
        for extra, profile in pieces:
            builder.merge(profile)
            if extra != tmp:
                _append(dfd, tmp, extra)
        result.frames[f] = builder.records
        st = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
        result.bytes += st.st_size
        _file_frame(dfd, tmp, _frame_name(f), filer.filed(builder.build((st.st_size, st.st_mtime_ns))))


def _append(dfd: int, target: str, source: str) -> None:
    with _reopen(dfd, target) as out, \
            os.fdopen(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd), "rb") as src:
        shutil.copyfileobj(src, out)


def _file_frame(dfd: int, tmp: str, name: str, profile: FrameProfile) -> None:
    """Put a frame's finished raw file in place, then its profile. The profile names the raw
    file's size and mtime (a rename keeps both): if another node files the same frame at the
    same moment and the two renames interleave, the reader sees a mismatch and rebuilds."""
    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    _write_profile(dfd, name, profile)


def _write_profile(dfd: int, raw_name: str, profile: FrameProfile) -> None:
    """Atomically, like the raw files: a reader sees the old profile or the new one, never half."""
    pfd = _subfolder(dfd, PROFILES)
    tmp = f".tmp-{uuid.uuid4().hex}"
    try:
        with _create(pfd, tmp) as fh:
            fh.write(encode(profile))
        os.replace(tmp, raw_name + ".json", src_dir_fd=pfd, dst_dir_fd=pfd)
    finally:
        _unlink(pfd, tmp)
        os.close(pfd)


def _entries(guard: Guard, folder: str) -> list[tuple[str, os.stat_result]]:
    """The real, visible entries of a store folder with their attributes; links and the rest passed over."""
    try:
        names = guard.listdir(folder)
    except OSError:
        return []
    out = []
    for name in names:
        path = f"{folder}/{name}"
        if name.startswith(".") or not guard.is_real(path):
            continue
        try:
            out.append((path, guard.stat(path)))
        except OSError:
            continue
    return out


def _files(guard: Guard, folder: str) -> list[tuple[str, os.stat_result]]:
    return [(p, st) for p, st in _entries(guard, folder) if statmod.S_ISREG(st.st_mode)]


def _read_meta(guard: Guard, folder: str) -> dict[str, object]:
    try:
        fd, _ = guard.open(f"{folder}/{META}")
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        try:
            meta = json.loads(fh.read(META_MAX + 1)[:META_MAX])
        except ValueError:
            return {}
    return meta if isinstance(meta, dict) else {}


def _job_of(guard: Guard, folder: str, show_dir: str, shot_dir: str) -> StoredJob | None:
    stats = [st for _, st in _files(guard, folder)]
    if not stats:
        return None
    meta = _read_meta(guard, folder)
    kept = sum(st.st_size for _, st in _files(guard, f"{folder}/{PROFILES}"))

    def name(key: str, default: str) -> str:
        value = meta.get(key)
        return value if isinstance(value, str) and value else default

    return StoredJob(show=name("show", show_dir), shot=name("shot", shot_dir),
                     job=name("job", folder.rpartition("/")[2]), path=folder, frames=len(stats),
                     bytes=sum(s.st_size for s in stats) + kept, mtime=max(s.st_mtime for s in stats))


def _subdirs(guard: Guard, folder: str) -> list[str]:
    return sorted(p for p, st in _entries(guard, folder) if statmod.S_ISDIR(st.st_mode))


def list_traces(settings: Settings, show: str | None = None, shot: str | None = None) -> list[StoredJob]:
    """Stored jobs, newest first; `show` and `shot` narrow the listing."""
    guard = _guard(settings)
    jobs: list[StoredJob] = []
    for show_dir in _subdirs(guard, guard.roots[0]):
        for shot_dir in _subdirs(guard, show_dir):
            for job_dir in _subdirs(guard, shot_dir):
                job = _job_of(guard, job_dir, show_dir.rpartition("/")[2], shot_dir.rpartition("/")[2])
                if job and (show is None or job.show == show) and (shot is None or job.shot == shot):
                    jobs.append(job)
    return sorted(jobs, key=lambda j: j.mtime, reverse=True)


def prune(settings: Settings, max_bytes: int | None = None, keep_jobs: int | None = None,
          protect: Sequence[str] = ()) -> PruneResult:
    """Remove whole jobs: beyond the newest `keep_jobs` of each shot, then oldest first
    until the store holds at most `max_bytes`. Jobs in `protect` (folders) stay."""
    jobs = list_traces(settings)
    result = PruneResult()
    doomed: list[StoredJob] = []
    if keep_jobs is not None:
        per_shot: dict[tuple[str, str], int] = {}
        for j in jobs:
            n = per_shot[(j.show, j.shot)] = per_shot.get((j.show, j.shot), 0) + 1
            if n > keep_jobs and j.path not in protect:
                doomed.append(j)
    left = [j for j in jobs if j not in doomed]
    total = sum(j.bytes for j in left)
    if max_bytes is not None:
        for j in reversed(left):  # oldest first
            if total <= max_bytes:
                break
            if j.path not in protect:
                doomed.append(j)
                total -= j.bytes
    guard = _guard(settings)
    for j in doomed:
        _remove(guard, j.path, shutil.rmtree)
        result.removed.append(j)
        result.bytes_freed += j.bytes
    for shot_dir in sorted({j.path.rpartition("/")[0] for j in doomed}):
        for empty in (shot_dir, shot_dir.rpartition("/")[0]):
            _remove(guard, empty, os.rmdir)
    result.bytes_left = total
    return result


def _remove(guard: Guard, folder: str, how: Callable[..., None]) -> None:
    """Remove a folder (`shutil.rmtree`, or `os.rmdir` when empty) through its parent's checked
    descriptor: never through a link. One that is gone or not empty stays as it is."""
    parent, _, name = folder.rpartition("/")
    try:
        fd, _ = guard.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        how(name, dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def version_family(job: str) -> str | None:
    """A job name without its version number (`shot010_lighting_v003` -> `shot010_lighting`), or None."""
    stripped = _VERSION.sub("", job)
    return stripped if stripped != job and stripped else None


def find_traces(settings: Settings, manifest: Manifest, limit: int = MAX_JOBS_FOUND) -> list[str]:
    """Folders of earlier jobs of the same shot, newest first, found without being told:
    the manifest's show/shot; else jobs named the same but for the version number (or the
    same name: a job submitted again); else the configured `trace_rules`. [] without a store."""
    if not settings.trace_store or not os.path.isdir(settings.trace_store):
        return []
    jobs = list_traces(settings)
    found: list[StoredJob] = []
    if manifest.shot:
        found = [j for j in jobs if j.shot == manifest.shot and (manifest.show is None or j.show == manifest.show)]
    if not found:
        family = version_family(manifest.job)
        found = [j for j in jobs if j.job == manifest.job or (family is not None and version_family(j.job) == family)]
    for rule in settings.trace_rules:
        if found:
            break
        m = re.search(rule, manifest.job)
        if m:
            found = [j for j in jobs if (n := re.search(rule, j.job)) and n.group(1) == m.group(1)]
    return [j.path for j in found[:limit]]


def store_traces(settings: Settings, folders: Sequence[str]) -> list[TraceFile]:
    """The trace files of stored jobs (`find_traces`' folders), read through the store's guard and
    named by their place in the store, never by this machine's path of it. Only real files count:
    whatever else a render node left there is passed over, not followed."""
    if not folders:
        return []
    guard = _guard(settings)
    root = guard.roots[0]
    out: list[TraceFile] = []
    for folder in folders:
        rel = os.path.relpath(folder, root)
        out.extend(TraceFile(f"trace store:{rel}/{path.rpartition('/')[2]}", path, guard, st.st_size)
                   for path, st in _files(guard, folder))
    return out


@dataclass
class StoredTraces:
    """What `load_profiles` found: the merged traces, and where they came from."""

    traces: TraceSet
    folders: list[str]
    """The jobs' folders, newest first (`find_traces`)."""
    profiles: int = 0
    rebuilt: int = 0
    """Profiles that were missing, stale or of another format, rebuilt from their raw files."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Jobs left out, and why: pruned while being read, or a raw file that cannot be read."""


def _source(raw: TraceFile) -> Source:
    st = raw.guard.stat(raw.path)
    return st.st_size, st.st_mtime_ns


def _kept(raw: TraceFile) -> FrameProfile | None:
    """The profile kept beside a raw file, if it is current (names this very raw file)."""
    folder, _, name = raw.path.rpartition("/")
    try:
        source = _source(raw)
        fd, _ = raw.guard.open(f"{folder}/{PROFILES}/{name}.json")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(PROFILE_MAX + 1)
        kept = decode(data) if len(data) <= PROFILE_MAX else None
    except (OSError, ProfileError):
        return None
    return kept if kept is not None and kept.source == source else None


ProfileCache = dict[str, tuple[Source, FrameProfile]]
"""Profiles a caller keeps decoded between loads of the same store (a live job's re-plans), by raw
file: a raw file of the same size and mtime is not read again. Decoding is most of a load (1,000
frames x 2,000 inputs: 0.96 of 1.1 s)."""


def _kept_cached(raw: TraceFile, cache: ProfileCache | None) -> FrameProfile | None:
    if cache is None:
        return _kept(raw)
    try:
        source = _source(raw)
    except OSError:
        return None
    hit = cache.get(raw.path)
    if hit is not None and hit[0] == source:
        return hit[1]
    kept = _kept(raw)
    if kept is not None:
        cache[raw.path] = (source, kept)
    return kept


def _rebuild(raw: TraceFile) -> list[FrameProfile]:
    """A raw file's profile built from its records, and written back for the next reader when
    the store is writable (a planner with read-only access still plans, only slower)."""
    source = _source(raw)
    builders: dict[int | None, ProfileBuilder] = {}
    for run in read_batches([raw]):
        for f, recs in _by_frame(run).items():
            b = builders.get(f)
            if b is None:
                b = builders[f] = ProfileBuilder(f)
            b.add_records(recs)
    built = [b.build(source) for b in builders.values()] or [FrameProfile(None, source, 0)]
    if len(built) == 1:  # the store writes one frame per file; anything else is not cached
        folder, _, name = raw.path.rpartition("/")
        with suppress(OSError):
            dfd, _ = raw.guard.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _write_profile(dfd, name, built[0])
            finally:
                os.close(dfd)
    return built


def frame_profiles(raw: TraceFile) -> tuple[list[FrameProfile], bool]:
    """The profile of one stored raw file, and whether it had to be rebuilt from the raw file."""
    kept = _kept(raw)
    return ([kept], False) if kept is not None else (_rebuild(raw), True)


def _rebuild_or_why(raw: TraceFile) -> list[FrameProfile] | str:
    try:
        return _rebuild(raw)
    except (TraceError, OSError) as exc:
        return str(exc)


def _rebuild_all(raws: list[TraceFile]) -> list[list[FrameProfile] | str]:
    """Rebuild profiles over all cores when there is enough to read (a store filed by an older
    prewarm, or after a profile format change: once, then the profiles are kept)."""
    workers = cores.workers_for(len(raws), sum(r.size for r in raws), PARALLEL_BYTES)
    if workers < 2:
        return [_rebuild_or_why(r) for r in raws]
    with cores.pool(workers) as pool:
        return list(pool.map(_rebuild_or_why, raws, chunksize=max(1, len(raws) // (4 * workers))))


def load_profiles(settings: Settings, manifest: Manifest, path_map: PathMap | None = None,
                  frame: int | None = None, cache: ProfileCache | None = None) -> StoredTraces:
    """The traces of the earlier jobs `find_traces` picks, merged from their profiles: the same
    TraceSet as aggregating those jobs' raw files (`--traces FOLDER...`), at the cost of their
    files x frames. `path_map` and `frame` mean what they mean to `read_traces`.

    A job pruned while it is being read, or holding a raw file that cannot be read, is left
    out (`skipped` says why) rather than failing the plan: the other jobs still describe
    the shot. The work is bounded by the `find_traces` limit on jobs and by their files.
    `cache`: profiles decoded by an earlier load, kept by the caller (then updated).
    """
    out = StoredTraces(TraceSet(), find_traces(settings, manifest))
    slots = [(folder, raw, _kept_cached(raw, cache)) for folder in out.folders
             for raw in store_traces(settings, [folder])]
    if cache is not None:
        for gone in cache.keys() - {raw.path for _, raw, _ in slots}:
            del cache[gone]
    stale = [raw for _, raw, kept in slots if kept is None]
    built = dict(zip((r.path for r in stale), _rebuild_all(stale), strict=True))
    out.rebuilt = len(stale)
    for folder, raw, _ in slots:
        why = built.get(raw.path)
        if isinstance(why, str):
            out.skipped.setdefault(folder, why)
    profiles: list[FrameProfile] = []
    for folder, raw, kept in slots:
        if folder not in out.skipped:
            got = built.get(raw.path)
            profiles.extend([kept] if kept is not None else got if isinstance(got, list) else [])
    out.profiles = len(profiles)
    rename = None
    if path_map is not None:
        seen = {p for fp in profiles for group in (fp.reads, fp.stats, fp.listed) for p in group}
        rename = {p: m for p in seen if (m := path_map.to_studio(p)) != p}
    out.traces = to_traceset(profiles, frame, rename or None)
    return out


def describe(result: ImportResult) -> str:
    """One line for a log or a terminal."""
    frames = sorted(f for f in result.frames if f is not None)
    span = f"frames {frames[0]}-{frames[-1]}" if frames else "no frame"
    s = result.stats
    return (f"{result.show}/{result.shot}/{result.job}: {sum(result.frames.values())} records, {span} "
            f"({len(result.frames)} file(s), {result.bytes / 1e6:.2f} MB); {s.filtered} outside the roots dropped, "
            f"{s.skipped_lines} unreadable lines" + (f" (first at {s.first_skipped})" if s.first_skipped else "")
            + (f"; {result.pruned} old job(s) pruned" if result.pruned else ""))
