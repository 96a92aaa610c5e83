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
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from prewarm.errors import ConfigError
from prewarm.plan.manifest import Manifest
from prewarm.site.settings import Settings
from prewarm.traces.counters import ImportStats
from prewarm.traces.files import read_traces
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
    "under_roots",
    "version_family",
]

UNKNOWN = "_"
"""Folder of a job whose show or shot nobody said."""

META = ".job.json"

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


def import_traces(settings: Settings, paths: Sequence[str], show: str | None, shot: str | None, job: str,
                  frame: int | None = None) -> ImportResult:
    """Normalise trace files (strace or JSON Lines, plain or gzip) into the store under show/shot/job.

    `frame` is for records that carry none and whose file names hold no number. A file
    that is not a trace fails the whole import (TraceError) and leaves the store as it was.
    """
    if not job or not job.strip():
        raise ConfigError("job", "a stored trace needs its job name")
    folder = store_root(settings) / _component(show) / _component(shot) / _component(job)
    result = ImportResult(show or UNKNOWN, shot or UNKNOWN, job, str(folder))
    records = read_traces(paths, settings.path_map, frame=frame, keep=under_roots(settings), stats=result.stats)
    folder.mkdir(parents=True, exist_ok=True)
    temps: dict[int | None, Path] = {}
    try:
        with ExitStack() as files:
            writers: dict[int | None, gzip.GzipFile] = {}
            for access in records:
                fh = writers.get(access.frame)
                if fh is None:
                    temps[access.frame] = folder / f".tmp-{uuid.uuid4().hex}-{_frame_name(access.frame)}"
                    fh = writers[access.frame] = files.enter_context(gzip.open(temps[access.frame], "wb"))
                    result.frames[access.frame] = 0
                write_jsonl((access,), cast(IO[bytes], fh))  # GzipFile is a binary stream
                result.frames[access.frame] += 1
        for f, tmp in temps.items():
            result.bytes += tmp.stat().st_size
            os.replace(tmp, folder / _frame_name(f))
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    _write_meta(folder, show, shot, job)
    if settings.trace_store_max_bytes is not None:
        result.pruned = len(prune(settings, max_bytes=settings.trace_store_max_bytes, protect=(str(folder),)).removed)
    return result


def _write_meta(folder: Path, show: str | None, shot: str | None, job: str) -> None:
    tmp = folder / f".tmp-{uuid.uuid4().hex}.json"
    tmp.write_text(json.dumps({"show": show, "shot": shot, "job": job}))
    os.replace(tmp, folder / META)


def _job_of(folder: Path, show_dir: str, shot_dir: str) -> StoredJob | None:
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    if not files:
        return None
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        meta = {}
    stats = [f.stat() for f in files]
    return StoredJob(show=meta.get("show") or show_dir, shot=meta.get("shot") or shot_dir,
                     job=meta.get("job") or folder.name, path=str(folder), frames=len(files),
                     bytes=sum(s.st_size for s in stats), mtime=max(s.st_mtime for s in stats))


def _subdirs(path: Path) -> Iterable[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def list_traces(settings: Settings, show: str | None = None, shot: str | None = None) -> list[StoredJob]:
    """Stored jobs, newest first; `show` and `shot` narrow the listing."""
    root = store_root(settings)
    jobs: list[StoredJob] = []
    for show_dir in _subdirs(root):
        for shot_dir in _subdirs(show_dir):
            for job_dir in _subdirs(shot_dir):
                job = _job_of(job_dir, show_dir.name, shot_dir.name)
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
    for j in doomed:
        shutil.rmtree(j.path, ignore_errors=True)
        result.removed.append(j)
        result.bytes_freed += j.bytes
    for folder in (Path(j.path).parent for j in doomed):
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()
            except OSError:
                pass
    result.bytes_left = total
    return result


def version_family(job: str) -> str | None:
    """A job name without its version number (`shot010_lighting_v003` -> `shot010_lighting`), or None."""
    stripped = _VERSION.sub("", job)
    return stripped if stripped != job and stripped else None


def find_traces(settings: Settings, manifest: Manifest, limit: int = MAX_JOBS_FOUND) -> list[str]:
    """Folders of earlier jobs of the same shot, newest first, found without being told:
    the manifest's show/shot; else jobs named the same but for the version number (or the
    same name: a job submitted again); else the configured `trace_rules`. [] without a store."""
    if not settings.trace_store or not Path(settings.trace_store).is_dir():
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


def describe(result: ImportResult) -> str:
    """One line for a log or a terminal."""
    frames = sorted(f for f in result.frames if f is not None)
    span = f"frames {frames[0]}-{frames[-1]}" if frames else "no frame"
    s = result.stats
    return (f"{result.show}/{result.shot}/{result.job}: {sum(result.frames.values())} records, {span} "
            f"({len(result.frames)} file(s), {result.bytes / 1e6:.2f} MB); {s.filtered} outside the roots dropped, "
            f"{s.skipped_lines} unreadable lines" + (f" (first at {s.first_skipped})" if s.first_skipped else "")
            + (f"; {result.pruned} old job(s) pruned" if result.pruned else ""))
