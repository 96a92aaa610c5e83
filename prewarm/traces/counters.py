"""What the trace importers share: the counters a user sees and the path resolver type.

Kept apart from both parsers and from the IO layer so that the pure parsers do not
import the module that opens files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prewarm.errors import TraceError
from prewarm.plan.access import Access, Op
from prewarm.plan.limits import MAX_TRACE_PATHS

Resolve = Callable[[str], "str | None"]
"""Turns a traced absolute path into the path to record (path mapping), or None to drop it
(a `keep` filter). Parsers call it once per distinct path and cache the answer."""


Rec = tuple[str, Op, int, int, "int | None", "float | str | None", "str | None", "str | None", "int | str | None"]
"""An access as the importers pass it on: `Access`'s fields in `Access`'s order, as a plain
tuple. Building an `Access` costs more than parsing the strace line it comes from, and
neither planning nor filing needs one. strace leaves `t` as its time stamp text and `tid`
as the pid text (converting them is a third of the parse, and only some readers want
them): `seconds`, `to_access` and `access_to_json` convert."""

Records = list[Rec]
"""Records of a run of lines: importers hand records on a few thousand at a time."""


def seconds(stamp: float | str | None) -> float | None:
    """`-t`/`-tt` stamps as seconds since midnight, `-ttt` as epoch seconds; numbers as they are."""
    if not isinstance(stamp, str):
        return stamp
    if stamp[2:3] == ":":
        return int(stamp[0:2]) * 3600 + int(stamp[3:5]) * 60 + float(stamp[6:])
    return float(stamp)


def to_access(r: Rec) -> Access:
    tid = r[8]
    return Access(r[0], r[1], r[2], r[3], r[4], seconds(r[5]), r[6], r[7], int(tid) if isinstance(tid, str) else tid)


def accesses(batches: Iterable[Records]) -> Iterator[Access]:
    for batch in batches:
        for r in batch:
            yield to_access(r)


@dataclass
class ImportStats:
    """Counters a user reads to trust an import ("3 unreadable lines, first at f.log:17").

    Bad lines are never fatal: a trace is evidence, and one torn line at the end of a
    killed render must not throw away the frame's other million reads.
    """

    files: int = 0
    lines: int = 0
    records: int = 0
    skipped_lines: int = 0
    """Lines that could not be understood (torn, garbled, invalid JSON or fields)."""
    failed_calls: int = 0
    """Traced calls that failed (`= -1 ENOENT ...`, `= ?`): they read nothing."""
    unmatched_resumed: int = 0
    """`<... X resumed>` lines whose start is not in the file (traces cut at their start)."""
    filtered: int = 0
    """Accesses dropped by the path filter (outside the configured roots)."""
    first_skipped: str | None = None
    """`file:line` of the first skipped line, so the user knows where to look."""
    paths: int = field(default=0, compare=False)
    """Distinct paths (and descriptors) the parsers held, summed over the files read (`MAX_TRACE_PATHS` at
    most): a bound on the work, not a result (the fast and general strace parsers hold different caches)."""

    def check_paths(self, where: str, held: int) -> None:
        """`TraceError` once the files read before and this one (`held` paths so far) name more
        distinct paths than `MAX_TRACE_PATHS`: a parser calls it for each new path it keeps."""
        if self.paths + held > MAX_TRACE_PATHS:
            raise TraceError(where, f"the traces name more than {MAX_TRACE_PATHS:,} distinct paths "
                                    "(prewarm.plan.limits): not a render's trace, or too many traces at once")

    def add(self, other: ImportStats) -> None:
        """Count in what another importer (a worker process) counted."""
        for name in ("files", "lines", "records", "skipped_lines", "failed_calls", "unmatched_resumed", "filtered",
                     "paths"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_skipped = self.first_skipped or other.first_skipped

    def skip(self, where: str, line: int) -> None:
        self.skipped_lines += 1
        if self.first_skipped is None:
            self.first_skipped = f"{where}:{line}"
