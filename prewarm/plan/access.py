"""Small immutable values that travel between the planner, the workers and reports.

These are plain data: no IO, no Redis. They survive JSON unchanged (`str` enums,
ints, strings), so a plan written by one host is read back identically by a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Op(StrEnum):
    """What a trace record or a planned metadata operation does to a path."""

    READ = "read"
    STAT = "stat"
    READDIR = "readdir"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Access:
    """One file access seen in a trace, after path mapping.

    `offset`/`length` mean something for `Op.READ`: `length` is what the call
    returned (bytes really read), not what it asked for, because that is what the
    gateway had to serve. For `Op.STAT`, `length` is the size the call returned for a
    regular file, 0 when the trace does not show it (a plan from raw traces tells from
    it that the file changed since).
    """

    path: str
    op: Op = Op.READ
    offset: int = 0
    length: int = 0
    frame: int | None = None
    t: float | None = None
    host: str | None = None
    job: str | None = None
    tid: int | None = None
    """Thread that made the call: replay keeps each thread's reads in order and threads concurrent."""




