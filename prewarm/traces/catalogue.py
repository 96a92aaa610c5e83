"""What the trace store holds: its jobs listed, found for a manifest, pruned, and their files.

The store's layout and the rules for reading it are `prewarm.traces.store`'s docstring: every
folder and file is reached through a `Guard` rooted at the store, only real folders and
regular files count, and what a render node left there otherwise is passed over. Filing
traces is `prewarm.traces.store`; reading them back for planning, `prewarm.traces.loading`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat as statmod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prewarm.errors import ConfigError
from prewarm.plan.manifest import Manifest
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces.files import TraceFile

__all__ = ["META", "PROFILES", "PruneResult", "StoredJob", "find_traces", "list_traces", "prune", "store_guard",
           "store_root", "store_traces", "version_family"]

META = ".job.json"

META_MAX = 64 << 10
"""A job's `.job.json` holds three names; anything bigger is not ours and is not read."""

PROFILES = ".profile"
"""Hidden folder of a job's profiles: `trace_files` and `list_traces` skip hidden names."""

MAX_JOBS_FOUND = 5
"""Earlier jobs `find_traces` returns: the newest few describe the shot; more only slow planning."""

_VERSION = re.compile(r"[._-]?v\d+(?=$|[._-])", re.IGNORECASE)


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


def store_guard(settings: Settings) -> Guard:
    """The store's one guard: everything in it is listed, read, written and removed through it."""
    return Guard.local(str(store_root(settings)))


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


def real_files(guard: Guard, folder: str) -> list[tuple[str, os.stat_result]]:
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
    stats = [st for _, st in real_files(guard, folder)]
    if not stats:
        return None
    meta = _read_meta(guard, folder)
    kept = sum(st.st_size for _, st in real_files(guard, f"{folder}/{PROFILES}"))

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
    guard = store_guard(settings)
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
    guard = store_guard(settings)
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
    guard = store_guard(settings)
    root = guard.roots[0]
    out: list[TraceFile] = []
    for folder in folders:
        rel = os.path.relpath(folder, root)
        out.extend(TraceFile(f"trace store:{rel}/{path.rpartition('/')[2]}", path, guard, st.st_size)
                   for path, st in real_files(guard, folder))
    return out
