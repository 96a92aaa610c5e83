"""What the trace importers share: the counters a user sees and the path resolver type.

Kept apart from both parsers and from the IO layer so that the pure parsers do not
import the module that opens files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Resolve = Callable[[str], "str | None"]
"""Turns a traced absolute path into the path to record (path mapping), or None to drop it
(a `keep` filter). Parsers call it once per distinct path and cache the answer."""


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

    def skip(self, where: str, line: int) -> None:
        self.skipped_lines += 1
        if self.first_skipped is None:
            self.first_skipped = f"{where}:{line}"
