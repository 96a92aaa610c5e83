"""The IO edge of trace import: finds trace files, opens them, tells formats apart by content.

A studio's traces come from many tools and get renamed, concatenated and compressed
along the way, so nothing here trusts a file's name for its *format*: gzip is told by
its magic bytes and the format by the first non-empty line (`{` is prewarm's JSON
Lines, strace's line shape is strace). The name is only used for the frame number,
and only when neither the record nor the caller says which frame it is.

Files are streamed line by line: memory does not grow with a log's length. The
parsers themselves (`trace_strace`, `trace_jsonl`) do no IO.

Every trace file is found and opened through a `Guard` (`prewarm.site.guard`): the
site's own for studio paths (the service's `traces`), or one rooted at the folder an
operator named. A link in a traces folder that leads out of it, a link that leads
nowhere, a FIFO or a device is a one-line `TraceError` naming the entry, never a read
of something else. Errors name the file as the caller named it (a studio path in the
service) and what is wrong; they never quote the file's content.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import stat as statmod
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, cast

from prewarm.errors import TraceError
from prewarm.plan.access import Access
from prewarm.plan.limits import MAX_TRACE_BYTES, MAX_TRACE_FILES, MAX_TRACE_LINE, MAX_TRACE_LINES
from prewarm.plan.pathmap import PathMap
from prewarm.site.guard import Guard, NotAFile, Refused
from prewarm.traces.counters import ImportStats, Records, Resolve, accesses
from prewarm.traces.jsonl import jsonl_batches
from prewarm.traces.strace import strace_batches

__all__ = ["ImportStats", "TraceFile", "TraceFormat", "frame_from_name", "read_batches", "read_traces", "sniff",
           "trace_files"]

READ_HINT = 1 << 20
"""Bytes read at a time: runs of a few thousand lines, a bounded buffer."""

_GZIP_MAGIC = b"\x1f\x8b"
_NAME_EXTENSIONS = {".gz", ".strace", ".log", ".jsonl", ".ndjson", ".json", ".txt", ".trace"}
_LAST_DIGITS = re.compile(r"(\d+)\D*$")
_STRACE_LINE = re.compile(r"""
    (?:\[pid\s+\d+\]\s*)?                              # [pid N]: strace -f writing to stderr
    (?:\d+\s+)?                                        # the pid column of strace -f -o
    (?:\d+:\d\d:\d\d(?:\.\d+)?\s+|\d+\.\d+\s+)?        # -t / -tt / -ttt
    (?:[A-Za-z_]\w*\(.*(?:\)\s+=\s|<unfinished\s\.\.\.>$)    # a call, finished or not
      |<\.\.\.\s\w+\sresumed>|---\s|\+\+\+\s|strace:\s)
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class TraceFile:
    """One trace file: how errors name it, and where its guard finds it."""

    name: str
    """As the caller named it (a studio path, a folder given on the command line and a name below it)."""
    path: str
    """The path the guard resolves."""
    guard: Guard
    size: int = 0

    @property
    def base(self) -> str:
        return self.name.rpartition("/")[2]


def _why(exc: OSError, entry: bool) -> str:
    """An OSError as words that name no path of this machine."""
    if isinstance(exc, Refused | NotAFile):
        return exc.why
    if isinstance(exc, FileNotFoundError):
        return "not found (a symlink that leads nowhere?)" if entry else "no such trace file or folder"
    return f"cannot read: {exc.strerror or type(exc).__name__}"


def _stat(guard: Guard, path: str, name: str, entry: bool) -> os.stat_result:
    try:
        return guard.stat(path)
    except OSError as exc:
        raise TraceError(name, _why(exc, entry)) from exc


def _listdir(guard: Guard, path: str, name: str) -> list[str]:
    try:
        return guard.listdir(path)
    except OSError as exc:
        raise TraceError(name, _why(exc, True)) from exc


def trace_files(path: str, guard: Guard | None = None, name: str | None = None) -> list[TraceFile]:
    """A file, or every file below a folder in natural order (frame.2 before frame.10).

    Without `guard`, `path` is a path of this machine and the guard is rooted at it.
    Hidden files and folders (`.DS_Store`, `.git`) are not traces and are left out;
    a folder reached twice (a link loop) is walked once.
    """
    shown = name or path.rstrip("/") or path
    if guard is None:
        guard = Guard.local(path)
        path = guard.roots[0]
    st = _stat(guard, path, shown, False)
    if statmod.S_ISREG(st.st_mode):
        return [TraceFile(shown, path, guard, st.st_size)]
    if not statmod.S_ISDIR(st.st_mode):
        raise TraceError(shown, "not a trace file or folder (a FIFO, device or socket)")
    found: list[TraceFile] = []
    seen = {(st.st_dev, st.st_ino)}
    stack = [(path, shown)]
    while stack:
        folder, label = stack.pop()
        for entry in _listdir(guard, folder, label):
            if entry.startswith("."):
                continue
            child, child_name = f"{folder.rstrip('/')}/{entry}", f"{label}/{entry}"
            cst = _stat(guard, child, child_name, True)
            if statmod.S_ISDIR(cst.st_mode):
                if (cst.st_dev, cst.st_ino) not in seen:
                    seen.add((cst.st_dev, cst.st_ino))
                    stack.append((child, child_name))
            elif statmod.S_ISREG(cst.st_mode):
                found.append(TraceFile(child_name, child, guard, cst.st_size))
                if len(found) > MAX_TRACE_FILES:
                    raise TraceError(shown, f"more than {MAX_TRACE_FILES:,} trace files: name fewer, or a sub-folder")
            else:
                raise TraceError(child_name, "not a trace file (a FIFO, device or socket)")
    if not found:
        raise TraceError(shown, "no trace files in this folder")
    return sorted(found, key=lambda f: _natural_key(f.name))


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_from_name(name: str) -> int | None:
    """The frame a trace file's name gives: its last group of digits once trace and
    compression extensions are stripped (`frame.1001.strace.gz`, `shot010_1001.log`)."""
    stem = name
    while True:
        base, ext = os.path.splitext(stem)
        if not ext or ext.lower() not in _NAME_EXTENSIONS:
            break
        stem = base
    m = _LAST_DIGITS.search(stem)
    return int(m.group(1)) if m else None


class TraceFormat(StrEnum):
    """What a trace file holds, told by its content (a `str` enum: it compares and prints as the word)."""

    JSONL = "jsonl"
    """prewarm's own JSON Lines records, a read or an open a line."""
    STRACE = "strace"


def sniff(line: str) -> TraceFormat | None:
    """The format a trace's first non-empty line belongs to, or None."""
    text = line.lstrip()
    if text.startswith("{"):
        return TraceFormat.JSONL
    if _STRACE_LINE.match(text):
        return TraceFormat.STRACE
    return None


def collect(paths: Sequence[str | TraceFile]) -> list[TraceFile]:
    """Trace files of paths of this machine (each its own guard's root) and files already found."""
    return [f for p in paths for f in ((p,) if isinstance(p, TraceFile) else trace_files(p))]


def read_traces(paths: Sequence[str | TraceFile], path_map: PathMap | None = None, frame: int | None = None,
                keep: Callable[[str], bool] | None = None,
                stats: ImportStats | None = None) -> Iterator[Access]:
    """Stream the accesses of trace files and folders, paths mapped to studio paths.

    A record's frame is its own, else `frame`, else the one its file's name gives.
    `keep` sees studio paths and drops what it refuses (counted in `stats.filtered`).
    Every path is checked before the first record, so a mistyped path fails at once.
    """
    return accesses(read_batches(paths, path_map, frame, keep, stats))


def read_batches(paths: Sequence[str | TraceFile], path_map: PathMap | None = None, frame: int | None = None,
                 keep: Callable[[str], bool] | None = None, stats: ImportStats | None = None) -> Iterator[Records]:
    """`read_traces` as runs of record tuples (`Rec`): what planning and the store read, at a
    fraction of the cost of one `Access` per call."""
    files = collect(paths)
    counters = stats if stats is not None else ImportStats()
    mapping = path_map if path_map is not None else PathMap()

    def resolve(traced: str) -> str | None:
        studio = mapping.to_studio(traced)
        return studio if keep is None or keep(studio) else None

    return _stream(files, frame, resolve, counters)


def _stream(files: list[TraceFile], frame: int | None, resolve: Resolve, stats: ImportStats) -> Iterator[Records]:
    for f in files:
        stats.files += 1
        yield from _read_file(f, frame if frame is not None else frame_from_name(f.base), resolve, stats)


@contextmanager
def opened(tf: TraceFile) -> Iterator[IO[bytes]]:
    """A trace file's bytes, through its guard and uncompressed: gzip told by its first bytes,
    never its name. The one opener of trace files (the import, and the trace drop looking for
    a record's `job`); a truncated gzip raises EOFError or zlib.error as it is read."""
    fd, _ = tf.guard.open(tf.path)
    with os.fdopen(fd, "rb") as raw:
        if not statmod.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise TraceError(tf.name, "not a trace file (a folder)")
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw as fh:
            yield cast(IO[bytes], fh)


def _read_file(tf: TraceFile, frame: int | None, resolve: Resolve, stats: ImportStats) -> Iterator[Records]:
    """Bad lines are counted, but a file in which *no* line is a record is not a trace
    (a `sizes.json` in the traces folder, a log of something else): that is an error."""
    where = tf.name
    records, skipped, filtered = stats.records, stats.skipped_lines, stats.filtered
    try:
        with opened(tf) as fh:
            yield from _parse(fh, where, frame, resolve, stats)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise TraceError(where, "cannot read: not valid gzip data (truncated or corrupt)") from exc
    except OSError as exc:
        raise TraceError(where, _why(exc, False)) from exc
    if stats.records == records and stats.filtered == filtered and stats.skipped_lines > skipped:
        raise TraceError(where, f"not a trace: no line is an access record "
                                f"({stats.skipped_lines - skipped} unreadable lines)")


def _parse(fh: IO[bytes], where: str, frame: int | None, resolve: Resolve,
           stats: ImportStats) -> Iterator[Records]:
    """The file's format told by its first line that is not blank, then its records.

    Leading blank lines are counted, not kept (a 48 KB gzip of them is a billion lines),
    and handed to the parser as a count so that its line numbers are the file's.
    """
    blocks = _bounded(fh, where)
    blank = 0
    for block in blocks:
        text = block.lstrip()
        if text:
            start = block.rfind(b"\n", 0, len(block) - len(text)) + 1
            blank += block.count(b"\n", 0, start)
            first_block = block[start:]
            break
        blank += block.count(b"\n") + 1
    else:
        return  # empty: a frame that read nothing traced
    kind = sniff(first_block.split(b"\n", 1)[0].decode("utf-8", "surrogateescape"))
    if kind is TraceFormat.JSONL:
        runs_b = itertools.chain((first_block,), blocks)
        yield from jsonl_batches((run.split(b"\n") for run in runs_b), stats, frame, resolve, where, blank)
    elif kind is TraceFormat.STRACE:
        runs_s = (run.decode("utf-8", "surrogateescape").split("\n")
                  for run in itertools.chain((first_block,), blocks))
        yield from strace_batches(runs_s, stats, frame, resolve, where, skip=blank)
    else:
        raise TraceError(where, "neither an strace log nor prewarm JSON Lines (told by its first line)")


def _bounded(fh: IO[bytes], where: str) -> Iterator[bytes]:
    """`_blocks`, refused with one line past `MAX_TRACE_BYTES` read (decompressed) or
    `MAX_TRACE_LINES` lines: a trace's cost is bounded like any input's."""
    lines = 0
    for block in _blocks(fh, where):
        lines += block.count(b"\n") + 1
        if lines > MAX_TRACE_LINES:
            raise TraceError(where, f"more than {MAX_TRACE_LINES:,} lines (prewarm.plan.limits): not one frame's "
                                    "trace")
        yield block


def _blocks(fh: IO[bytes], where: str = "<trace>") -> Iterator[bytes]:
    """The file as blocks of whole lines (no final newline), `READ_HINT` bytes at a time.

    Memory stays bounded whatever the file holds: a line longer than `MAX_TRACE_LINE` (a
    hostile or garbled trace, a file with no newline at all) is cut there, and the parser
    then counts it as unreadable; past `MAX_TRACE_BYTES` read, `TraceError`.
    """
    tail = b""
    skipping = False
    read = 0
    while chunk := fh.read(READ_HINT):
        read += len(chunk)
        if read > MAX_TRACE_BYTES:
            raise TraceError(where, f"more than {MAX_TRACE_BYTES:,} bytes decompressed (prewarm.plan.limits): "
                                    "not one frame's trace")
        cut = chunk.rfind(b"\n")
        if cut < 0:
            if not skipping:
                tail += chunk
                if len(tail) > MAX_TRACE_LINE:
                    yield tail[:MAX_TRACE_LINE]
                    tail, skipping = b"", True
            continue
        if skipping:
            start = chunk.find(b"\n") + 1
            skipping, whole = False, chunk[start:cut]
            if whole or cut >= start:
                yield whole
        else:
            yield tail + chunk[:cut]
        tail = chunk[cut + 1:]
    if tail and not skipping:
        yield tail
