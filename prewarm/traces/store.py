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

Its parts: filing traces (this module, `import_traces`), what the store holds
(`prewarm.traces.catalogue`: its jobs listed, found for a manifest, pruned) and the traces
read back for planning (`prewarm.traces.loading`). The store is bounded: `prune` removes
whole jobs, oldest first, down to a byte budget (`trace_store_max_bytes`, applied after each
import) or to the newest N jobs per shot.

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
its new offsets (`prewarm.plan.refit`). Frames filed without a reader, or by an older
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
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import IO

from prewarm.errors import ConfigError
from prewarm.plan.structure import Filed, Identity, Structure
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces import cores
from prewarm.traces.catalogue import META, PROFILES, prune, store_guard, store_root
from prewarm.traces.counters import ImportStats, Records
from prewarm.traces.files import TraceFile, collect, read_batches
from prewarm.traces.jsonl import dump_records
from prewarm.traces.profile import (
    FrameProfile,
    ProfileBuilder,
    encode,
)

__all__ = ["PARALLEL_BYTES", "ImportResult", "StructureOf", "by_frame", "describe", "import_traces", "under_roots",
           "write_profile"]

UNKNOWN = "_"
"""Folder of a job whose show or shot nobody said."""

PARALLEL_BYTES = 16 << 20
"""Below this much trace data, an import runs in one process: starting workers costs more."""

StructureOf = Callable[[str], tuple[Identity, Structure] | None]
"""A studio file's identity and structure as it is now, or None (not structured, unreadable, gone)."""


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
    guard = store_guard(settings)
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
                    for f, recs in by_frame(run).items():
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


def by_frame(run: Records) -> dict[int | None, Records]:
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
    write_profile(dfd, name, profile)


def write_profile(dfd: int, raw_name: str, profile: FrameProfile) -> None:
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


def describe(result: ImportResult) -> str:
    """One line for a log or a terminal."""
    frames = sorted(f for f in result.frames if f is not None)
    span = f"frames {frames[0]}-{frames[-1]}" if frames else "no frame"
    s = result.stats
    return (f"{result.show}/{result.shot}/{result.job}: {sum(result.frames.values())} records, {span} "
            f"({len(result.frames)} file(s), {result.bytes / 1e6:.2f} MB); {s.filtered} outside the roots dropped, "
            f"{s.skipped_lines} unreadable lines" + (f" (first at {s.first_skipped})" if s.first_skipped else "")
            + (f"; {result.pruned} old job(s) pruned" if result.pruned else ""))
