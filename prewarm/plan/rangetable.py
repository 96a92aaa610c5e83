"""Planned ranges as columns: a `PlannedRange` object costs about 120 bytes, its ints
and its slot in a tuple more; a million-range plan held as objects took several
hundred MB before any work, and 10 million took 4.7 GB. `RangeTable` keeps one typed
array per field (about 40 bytes a range) and each distinct path once, and still reads
as a `Sequence[PlannedRange]`: indexing or iterating builds the objects one at a
time, so callers keep writing `for r in plan.ranges`. Code that only needs
`(path, offset, length)` uses `spans()`, which builds no objects at all.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from prewarm.plan.records import PlannedRange, Reason

NO_FRAME = -(1 << 63)
"""The `frame` column's value for a range no particular frame needs first."""

_REASONS = tuple(Reason)
_REASON_CODE = {r: i for i, r in enumerate(_REASONS)}


class RangeTable(Sequence[PlannedRange]):
    """An append-only column store of planned ranges, in plan order."""

    __slots__ = ("_paths", "_ids", "_path", "_offset", "_length", "_frame", "_frames", "_reason")

    def __init__(self, ranges: Iterable[PlannedRange] = ()) -> None:
        self._paths: list[str] = []
        self._ids: dict[str, int] = {}
        self._path = array("I")
        self._offset = array("q")
        self._length = array("q")
        self._frame = array("q")
        self._frames = array("q")
        self._reason = array("B")
        for r in ranges:
            self.add(r.path, r.offset, r.length, r.frame, r.frames, r.reason)

    @classmethod
    def from_columns(cls, paths: list[str], path: array[int], offset: array[int], length: array[int],
                     frame: array[int], frames: array[int], reasons: list[Reason]) -> RangeTable:
        """A table of columns built elsewhere (the ordering, a million ranges at a time): `path`
        holds indexes into `paths`, numbered by first appearance; the arrays are taken, not copied."""
        table = cls()
        table._paths = paths
        table._ids = {p: i for i, p in enumerate(paths)}
        table._path, table._offset, table._length, table._frame, table._frames = path, offset, length, frame, frames
        table._reason = array("B", [_REASON_CODE[r] for r in reasons])
        return table

    @classmethod
    def of(cls, ranges: Iterable[PlannedRange]) -> RangeTable:
        """`ranges` itself when it is a table already, else a table of them."""
        return ranges if isinstance(ranges, RangeTable) else cls(ranges)

    def add(self, path: str, offset: int, length: int, frame: int | None = None, frames: int = 1,
            reason: Reason = Reason.TRACE) -> None:
        pid = self._ids.get(path)
        if pid is None:
            pid = self._ids[path] = len(self._paths)
            self._paths.append(path)
        self._path.append(pid)
        self._offset.append(offset)
        self._length.append(length)
        self._frame.append(NO_FRAME if frame is None else frame)
        self._frames.append(frames)
        self._reason.append(_REASON_CODE[reason])

    def __len__(self) -> int:
        return len(self._path)

    def _row(self, i: int) -> PlannedRange:
        frame = self._frame[i]
        return PlannedRange(self._paths[self._path[i]], self._offset[i], self._length[i],
                            None if frame == NO_FRAME else frame, self._frames[i], _REASONS[self._reason[i]])

    @overload
    def __getitem__(self, i: int) -> PlannedRange: ...

    @overload
    def __getitem__(self, i: slice) -> RangeTable: ...

    def __getitem__(self, i: int | slice) -> PlannedRange | RangeTable:
        if isinstance(i, slice):
            return RangeTable(self._row(j) for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("range index out of range")
        return self._row(i)

    def __iter__(self) -> Iterator[PlannedRange]:
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable while a plan is loaded

    def __repr__(self) -> str:
        return f"RangeTable({len(self)} ranges of {len(self._paths)} files)"

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """`(path, offset, length)` of each range in order, without building range objects."""
        paths = self._paths
        return ((paths[p], o, n) for p, o, n in zip(self._path, self._offset, self._length, strict=True))

    def json_rows(self) -> Iterator[str]:
        """Each range as the text `json.dumps(range.to_json())` makes, from the columns: each path
        is encoded once rather than once a range (a plan's write was a third of a store plan)."""
        paths = [json.dumps(p) for p in self._paths]
        reasons = [json.dumps(r.value) for r in _REASONS]
        for p, o, n, f, k, c in zip(self._path, self._offset, self._length, self._frame, self._frames,
                                    self._reason, strict=True):
            frame = "null" if f == NO_FRAME else f
            yield (f'{{"path": {paths[p]}, "offset": {o}, "length": {n}, "frame": {frame}, '
                   f'"frames": {k}, "reason": {reasons[c]}}}')

    def columns(self) -> tuple[list[str], array[int], array[int], array[int]]:
        """The distinct paths and the path index, offset and length columns, as held (not copies)."""
        return self._paths, self._path, self._offset, self._length

    def paths(self) -> list[str]:
        """The distinct paths, in order of first appearance."""
        return list(self._paths)

    def canonical(self, path: str) -> str:
        """The table's own copy of `path` when it holds it (so a plan keeps each path once)."""
        pid = self._ids.get(path)
        return path if pid is None else self._paths[pid]

    @property
    def bytes(self) -> int:
        return sum(self._length)

    def bytes_by_reason(self) -> dict[str, int]:
        out = [0] * len(_REASONS)
        for code, n in zip(self._reason, self._length, strict=True):
            out[code] += n
        return {r.value: out[i] for i, r in enumerate(_REASONS) if out[i]}

    def nbytes(self) -> int:
        """Memory held by the columns (the paths' strings aside)."""
        return sum(a.itemsize * len(a) for a in (self._path, self._offset, self._length, self._frame,
                                                  self._frames, self._reason))


