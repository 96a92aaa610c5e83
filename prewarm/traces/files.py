"""The IO edge of trace import: finds trace files, opens them, tells formats apart by content.

A studio's traces come from many tools and get renamed, concatenated and compressed
along the way, so nothing here trusts a file's name for its *format*: gzip is told by
its magic bytes and the format by the first non-empty line (`{` is prewarm's JSON
Lines, strace's line shape is strace). The name is only used for the frame number,
and only when neither the record nor the caller says which frame it is.

Files are streamed line by line: memory does not grow with a log's length. The
parsers themselves (`trace_strace`, `trace_jsonl`) do no IO.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prewarm.errors import TraceError
from prewarm.plan.access import Access
from prewarm.plan.pathmap import PathMap
from prewarm.traces.counters import Batch, ImportStats, Resolve, accesses
from prewarm.traces.jsonl import jsonl_batches
from prewarm.traces.strace import strace_batches

__all__ = ["ImportStats", "frame_from_name", "read_batches", "read_traces", "sniff", "trace_files"]

READ_HINT = 1 << 20
"""Bytes of lines read at a time: runs of a few thousand lines, a bounded buffer."""

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


def trace_files(path: str) -> list[Path]:
    """A file, or every file below a folder in natural order (frame.2 before frame.10).

    Hidden files and folders (`.DS_Store`, `.git`) are not traces and are left out.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise TraceError(path, "no such trace file or folder")
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, f) for f in files if not f.startswith("."))
    if not found:
        raise TraceError(path, "no trace files in this folder")
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


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


def sniff(line: str) -> str | None:
    """The format a trace's first non-empty line belongs to: "jsonl", "strace" or None."""
    text = line.lstrip()
    if text.startswith("{"):
        return "jsonl"
    if _STRACE_LINE.match(text):
        return "strace"
    return None


def read_traces(paths: Sequence[str], path_map: PathMap | None = None, frame: int | None = None,
                keep: Callable[[str], bool] | None = None,
                stats: ImportStats | None = None) -> Iterator[Access]:
    """Stream the accesses of trace files and folders, paths mapped to studio paths.

    A record's frame is its own, else `frame`, else the one its file's name gives.
    `keep` sees studio paths and drops what it refuses (counted in `stats.filtered`).
    Every path is checked before the first record, so a mistyped path fails at once.
    """
    return accesses(read_batches(paths, path_map, frame, keep, stats))


def read_batches(paths: Sequence[str], path_map: PathMap | None = None, frame: int | None = None,
                 keep: Callable[[str], bool] | None = None, stats: ImportStats | None = None) -> Iterator[Batch]:
    """`read_traces` as runs of record tuples (`Rec`): what planning and the store read, at a
    fraction of the cost of one `Access` per call."""
    files = [f for p in paths for f in trace_files(p)]
    counters = stats if stats is not None else ImportStats()
    mapping = path_map if path_map is not None else PathMap()

    mapping = path_map or PathMap()

    def resolve(traced: str) -> str | None:
        studio = mapping.to_studio(traced)
        return studio if keep is None or keep(studio) else None

    return _stream(files, frame, resolve, counters)


def _stream(files: list[Path], frame: int | None, resolve: Resolve, stats: ImportStats) -> Iterator[Batch]:
    for f in files:
        stats.files += 1
        yield from _read_file(f, frame if frame is not None else frame_from_name(f.name), resolve, stats)


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    return gzip.GzipFile(path, "rb") if compressed else open(path, "rb")


def _read_file(path: Path, frame: int | None, resolve: Resolve, stats: ImportStats) -> Iterator[Batch]:
    """Bad lines are counted, but a file in which *no* line is a record is not a trace
    (a `sizes.json` in the traces folder, a log of something else): that is an error."""
    where = str(path)
    records, skipped, filtered = stats.records, stats.skipped_lines, stats.filtered
    try:
        with _open(path) as fh:
            blank = 0
            for raw in fh:
                if raw.strip():
                    break
                blank += 1
            else:
                return  # empty: a frame that read nothing traced
            first = raw.decode("utf-8", "surrogateescape")
            kind = sniff(first)
            # Leading blank lines go to the parser too, so its line numbers are the file's.
            if kind == "jsonl":
                head: list[bytes] = [b""] * blank + [raw]
                runs = itertools.chain((head,), iter(lambda: fh.readlines(READ_HINT), []))
                yield from jsonl_batches(runs, stats, frame, resolve, where)
            elif kind == "strace":
                text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape")
                runs_s = itertools.chain(([""] * blank + [first],), iter(lambda: text.readlines(READ_HINT), []))
                yield from strace_batches(runs_s, stats, frame, resolve, where)
            else:
                raise TraceError(where, "neither an strace log nor prewarm JSON Lines (told by its first line)")
    except (OSError, EOFError, zlib.error) as exc:
        raise TraceError(where, f"cannot read: {exc}") from exc
    if stats.records == records and stats.filtered == filtered and stats.skipped_lines > skipped:
        raise TraceError(where, f"not a trace: no line is an access record "
                                f"({stats.skipped_lines - skipped} unreadable lines)")
