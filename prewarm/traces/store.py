"""The trace store: traces of earlier renders, kept per show/shot/job so later jobs plan from them.

    ROOT/show/shot/job/frame.1001.jsonl.gz     one file per frame, prewarm JSON Lines, gzip
    ROOT/show/shot/job/.job.json               the names as given (folder names are made safe)

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

Render nodes may write into the store's folder, so nothing in it is trusted: it is
listed, read, written and pruned through a `Guard` rooted at the store. Only real
folders and regular files count; a symlink (into `/etc`, or dangling), a FIFO or a
device there is passed over, never followed, read or removed through. Files are
created and renamed relative to a checked descriptor of their job's folder, so a
folder swapped for a link mid-import cannot redirect a write, and a pruned job is
removed through its shot folder's descriptor.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat as statmod
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from prewarm.errors import ConfigError
from prewarm.plan.manifest import Manifest
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import TraceFile, read_traces
from prewarm.traces.jsonl import write_jsonl

__all__ = [
    "ImportResult",
    "PruneResult",
    "StoredJob",
    "describe",
    "find_traces",
    "import_traces",
    "list_traces",
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

MAX_JOBS_FOUND = 5
"""Earlier jobs `find_traces` returns: the newest few describe the shot; more only slow planning."""

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


def import_traces(settings: Settings, paths: Sequence[str | TraceFile], show: str | None, shot: str | None,
                  job: str, frame: int | None = None) -> ImportResult:
    """Normalise trace files (strace or JSON Lines, plain or gzip) into the store under show/shot/job.

    `frame` is for records that carry none and whose file names hold no number. A file
    that is not a trace fails the whole import (TraceError) and leaves the store as it was.
    """
    if not job or not job.strip():
        raise ConfigError("job", "a stored trace needs its job name")
    root = store_root(settings)
    parts = (_component(show), _component(shot), _component(job))
    folder = root.joinpath(*parts)
    result = ImportResult(show or UNKNOWN, shot or UNKNOWN, job, str(folder))
    records = read_traces(paths, settings.path_map, frame=frame, keep=under_roots(settings), stats=result.stats)
    guard = _guard(settings)
    temps: dict[int | None, str] = {}
    with _job_folder(guard, parts) as dfd:
        try:
            with ExitStack() as files:
                writers: dict[int | None, gzip.GzipFile] = {}
                for access in records:
                    fh = writers.get(access.frame)
                    if fh is None:
                        temps[access.frame] = f".tmp-{uuid.uuid4().hex}-{_frame_name(access.frame)}"
                        raw = files.enter_context(_create(dfd, temps[access.frame]))
                        fh = writers[access.frame] = files.enter_context(gzip.GzipFile(fileobj=raw, mode="wb"))
                        result.frames[access.frame] = 0
                    write_jsonl((access,), cast(IO[bytes], fh))  # GzipFile is a binary stream
                    result.frames[access.frame] += 1
            for f, tmp in temps.items():
                result.bytes += os.stat(tmp, dir_fd=dfd, follow_symlinks=False).st_size
                os.replace(tmp, _frame_name(f), src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            for tmp in temps.values():
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except FileNotFoundError:
                    pass
        _write_meta(dfd, show, shot, job)
    if settings.trace_store_max_bytes is not None:
        result.pruned = len(prune(settings, max_bytes=settings.trace_store_max_bytes, protect=(str(folder),)).removed)
    return result


def _guard(settings: Settings) -> Guard:
    return Guard.local(str(store_root(settings)))


@contextmanager
def _job_folder(guard: Guard, parts: tuple[str, ...]) -> Iterator[int]:
    """A checked descriptor of the job's folder, made where missing: each folder on the way must be
    a real one (a link planted in the store is refused, not written through)."""
    root = guard.roots[0]
    os.makedirs(root, exist_ok=True)
    fd, _ = guard.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts:
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    except OSError as exc:
        raise ConfigError("trace_store", f"cannot write {'/'.join(parts)} in the trace store: "
                                         f"{exc.strerror or type(exc).__name__} (a link or a file where a "
                                         "folder should be?)") from exc
    finally:
        os.close(fd)


def _create(dfd: int, name: str) -> IO[bytes]:
    """A new file in the folder of `dfd` (never an existing one, never through a link)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    return os.fdopen(fd, "wb")


def _write_meta(dfd: int, show: str | None, shot: str | None, job: str) -> None:
    tmp = f".tmp-{uuid.uuid4().hex}.json"
    with _create(dfd, tmp) as fh:
        fh.write(json.dumps({"show": show, "shot": shot, "job": job}).encode())
    os.replace(tmp, META, src_dir_fd=dfd, dst_dir_fd=dfd)


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
    stats = [st for _, st in _entries(guard, folder) if statmod.S_ISREG(st.st_mode)]
    if not stats:
        return None
    meta = _read_meta(guard, folder)

    def name(key: str, default: str) -> str:
        value = meta.get(key)
        return value if isinstance(value, str) and value else default

    return StoredJob(show=name("show", show_dir), shot=name("shot", shot_dir),
                     job=name("job", folder.rpartition("/")[2]), path=folder, frames=len(stats),
                     bytes=sum(s.st_size for s in stats), mtime=max(s.st_mtime for s in stats))


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
        _remove(guard, j.path)
        result.removed.append(j)
        result.bytes_freed += j.bytes
    for shot_dir in sorted({j.path.rpartition("/")[0] for j in doomed}):
        for empty in (shot_dir, shot_dir.rpartition("/")[0]):
            parent, _, name = empty.rpartition("/")
            try:
                fd, _ = guard.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
            finally:
                os.close(fd)
    result.bytes_left = total
    return result


def _remove(guard: Guard, job_dir: str) -> None:
    """Remove a job folder through its shot folder's checked descriptor: never through a link."""
    parent, _, name = job_dir.rpartition("/")
    try:
        fd, _ = guard.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        shutil.rmtree(name, dir_fd=fd, ignore_errors=True)
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
                   for path, st in _entries(guard, folder) if statmod.S_ISREG(st.st_mode))
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
