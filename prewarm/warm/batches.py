"""Cut a plan into batches of reads, in plan order. Pure: a plan in, JSON-able values out.

A batch is the unit a Celery task warms. Broker overhead is about 3 ms a task, so a
batch must carry enough transfer to make that negligible (`TARGET_SECONDS` of
transfer at the configured rate keeps it well under 5%), yet stay small enough that
a redelivered batch repeats little work and that priorities between jobs still bite.
A bound on the number of reads keeps a plan of many tiny files from producing one
enormous batch whose file opens alone take seconds.

Reads never straddle a granule boundary: the gateway fetches whole granules, and the
dedupe index records per granule, so a piece of a read maps to exactly one granule.
Overlapping or touching ranges of one file are merged first, so a plan naming the
same bytes twice (or a hostile plan of a hundred thousand adjacent one-byte ranges)
costs one read, placed where the plan first needed it.

Memory follows the plan's ranges, never its bytes: merging works on numpy columns
(`columns.py`), reads are cut a block at a time as batches are taken (`iter_batches`),
and a batch holds at most `MAX_READS` of them, as columns (`Reads`), not objects. A
16 TiB plan is 16 million 1 MiB reads; none of them exists before its batch does.
"""

from __future__ import annotations

import posixpath
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, overload

import numpy as np

from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import FileInfo, MetaOp
from prewarm.warm.columns import Block, Cutter, Merged, ended_within, merge_spans, merge_table

TARGET_SECONDS = 0.5
"""Transfer time a batch should take at the configured rate: 3 ms overhead is then 0.6%."""

UNTHROTTLED_BPS = 100_000_000
"""Rate assumed for sizing when warming is unthrottled (a typical burst uplink)."""

MAX_READS = 512
"""Reads per batch at most: 512 file opens at 30 ms and 16 in flight take about a second."""

MAX_META = 1024
"""Metadata operations per batch at most."""

LIST_DIR_MIN = 16
"""A batch opening this many files of one directory lists the directory first.

One READDIRPLUS fills the gateway's attribute cache for every entry, so the file
opens that follow cost no WAN round trip each; Linux also serialises the lookups of
one directory on some mounts (FUSE without parallel dirops), which would otherwise
turn N opens into N sequential round trips.
"""


class Reads(Sequence[ByteRange]):
    """A batch's reads as columns: each file's path once (`paths`), and per read the index of its
    path, its offset and its length, in typed arrays (20 bytes a read).

    The loop reads the columns and cuts them into each reader thread's work without making an
    object per read: at a few microseconds of system call per page-cached 4 KiB read, a
    `ByteRange` per piece, a tuple per heap entry and a future per read cost more than the
    reads (60-85 us of CPU per read against fio's 2-3). Iterating gives `ByteRange`s, for
    the report, the Redis form and tests.
    """

    __slots__ = ("paths", "pid", "offset", "length", "_ids")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.pid: array[int] = array("I")
        self.offset: array[int] = array("q")
        self.length: array[int] = array("q")
        self._ids: dict[str, int] = {}

    @classmethod
    def from_columns(cls, paths: list[str], pid: bytes, offset: bytes, length: bytes) -> Reads:
        """Reads from raw columns: `paths` distinct, `pid` unsigned 32-bit indexes into them, `offset`
        and `length` signed 64-bit, in native byte order."""
        out = cls()
        out.paths = paths
        out._ids = {p: i for i, p in enumerate(paths)}
        out.pid.frombytes(pid)
        out.offset.frombytes(offset)
        out.length.frombytes(length)
        return out

    @classmethod
    def of(cls, reads: Iterable[ByteRange]) -> Reads:
        out = cls()
        for r in reads:
            out.add(out.path_id(r.path), r.offset, r.length)
        return out

    def path_id(self, path: str) -> int:
        """The index of `path` in `paths`, added if new."""
        i = self._ids.get(path)
        if i is None:
            i = self._ids[path] = len(self.paths)
            self.paths.append(path)
        return i

    def add(self, i: int, offset: int, length: int) -> None:
        self.pid.append(i)
        self.offset.append(offset)
        self.length.append(length)

    def add_cut(self, i: int, s: int, e: int, granule: int) -> int:
        """`[s, e)` of path `i` as reads that never straddle a granule boundary; how many."""
        n = 0
        while s < e:
            b = min(e, (s // granule + 1) * granule)
            self.add(i, s, b - s)
            s = b
            n += 1
        return n

    def by_file(self) -> list[array[int]]:
        """For each path (by index), the positions of its reads, in order."""
        out = [array("q") for _ in self.paths]
        for k, i in enumerate(self.pid):
            out[i].append(k)
        return out

    def starting_before(self, positions: array[int], size: int) -> array[int] | None:
        """Of the reads at `positions`, those that start before `size`; None when all of them do."""
        offset = self.offset
        for p in positions:
            if offset[p] >= size:
                return array("q", [q for q in positions if offset[q] < size])
        return None

    def file_bytes(self) -> dict[str, int]:
        """Bytes read per file."""
        per = [0] * len(self.paths)
        for i, n in zip(self.pid, self.length, strict=True):
            per[i] += n
        return dict(zip(self.paths, per, strict=True))

    def __len__(self) -> int:
        return len(self.pid)

    @overload
    def __getitem__(self, k: int) -> ByteRange: ...

    @overload
    def __getitem__(self, k: slice) -> Sequence[ByteRange]: ...

    def __getitem__(self, k: int | slice) -> ByteRange | Sequence[ByteRange]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self.pid)))]
        return ByteRange(self.paths[self.pid[k]], self.offset[k], self.length[k])

    def __iter__(self) -> Iterator[ByteRange]:
        paths = self.paths
        for i, off, n in zip(self.pid, self.offset, self.length, strict=True):
            yield ByteRange(paths[i], off, n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Reads({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Batch:
    """Reads (and metadata operations) warmed by one task, with the identity of each file read."""

    index: int
    reads: Reads = field(default_factory=lambda: Reads())
    meta: tuple[MetaOp, ...] = ()
    files: Mapping[str, FileInfo] = field(default_factory=dict)
    closes: frozenset[str] = frozenset()
    """Files whose last planned read is in this batch: their outcome is counted here, once."""

    @property
    def bytes(self) -> int:
        return sum(self.reads.length)

    def to_json(self) -> dict[str, Any]:
        """Each path once (`paths`), reads by its index; runs of contiguous reads of one file as one
        `[path, offset, length, cut]` (`cut`: the read size they were cut at), a lone read as
        `[path, offset, length]`: a batch's size in Redis follows its files, not its reads."""
        paths: dict[str, int] = {}
        for r in self.reads:
            paths.setdefault(r.path, len(paths))
        return {
            "index": self.index,
            "paths": list(paths),
            "reads": [[paths[run[0]], *run[1:]] for run in _runs(self.reads)],
            "meta": [[m.op.value, m.path] for m in self.meta],
            "files": {p: [f.size, f.mtime] for p, f in self.files.items()},
            "closes": sorted(self.closes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batch:
        """Load a batch this module wrote (it is stored by prewarm itself, not user input)."""
        reads = Reads()
        paths = data.get("paths", [])
        for item in data["reads"]:
            path = paths[item[0]] if isinstance(item[0], int) else item[0]
            i = reads.path_id(path)
            if len(item) == 4:
                reads.add_cut(i, int(item[1]), int(item[1]) + int(item[2]), int(item[3]))
            else:
                reads.add(i, int(item[1]), int(item[2]))
        return cls(
            index=int(data["index"]),
            reads=reads,
            meta=tuple(MetaOp(Op(op), p) for op, p in data["meta"]),
            files={p: FileInfo(p, int(s), float(m)) for p, (s, m) in data["files"].items()},
            closes=frozenset(data["closes"]),
        )


def _cut(path: str, s: int, e: int, granule: int) -> Iterator[ByteRange]:
    """`[s, e)` of `path` as reads that never straddle a granule boundary."""
    head = min(e, -(-s // granule) * granule) if s % granule else s
    if head > s:
        yield ByteRange(path, s, head - s)
    a = head
    while a < e:
        b = min(e, a + granule)
        yield ByteRange(path, a, b - a)
        a = b


def _runs(reads: Sequence[ByteRange]) -> list[list[Any]]:
    """Reads as runs: contiguous reads of one file that `_cut` at one size gives back exactly
    (checked, so a run that would not come back the same is stored read by read)."""
    out: list[list[Any]] = []
    i = 0
    while i < len(reads):
        first = reads[i]
        j = i + 1
        while j < len(reads) and reads[j].path == first.path and reads[j].offset == reads[j - 1].end:
            j += 1
        run = reads[i:j]
        cut = max(r.length for r in run)
        if len(run) > 1 and list(_cut(first.path, first.offset, run[-1].end, cut)) == list(run):
            out.append([first.path, first.offset, run[-1].end - first.offset, cut])
        else:
            out.extend([r.path, r.offset, r.length] for r in run)
        i = j
    return out


def batch_bytes(rate_bps: int | None, granule: int) -> int:
    """Bytes a batch should carry: `TARGET_SECONDS` of transfer, at least one granule."""
    rate = rate_bps or UNTHROTTLED_BPS
    return max(granule, int(rate * TARGET_SECONDS))


Spans = Iterable[tuple[str, int, int]] | RangeTable | Merged
"""A plan's spans: `(path, offset, length)` in plan order, its range table, or what `merge` made of them."""


def merge(spans: Spans) -> Merged:
    """Spans merged once, for `merged_size` and `iter_batches` both (the merge is most of a big plan's cost)."""
    if isinstance(spans, Merged):
        return spans
    return merge_table(spans) if isinstance(spans, RangeTable) else merge_spans(spans)


def merged_size(spans: Spans) -> tuple[int, int]:
    """(bytes, files) that spans cover once merged: what a warm of them will read at most."""
    m = merge(spans)
    return m.nbytes, m.nfiles


def iter_pieces(spans: Spans, granule: int) -> Iterator[tuple[ByteRange, bool]]:
    """Merge each file's overlapping ranges, keep first-need order, cut at granule boundaries,
    one piece at a time; the flag marks each file's last piece."""
    m = merge(spans)
    cut = Cutter(m, granule)
    while cut.at < cut.total:
        block = cut.take(EMBEDDED_READS)
        cut.advance(len(block.pid))
        for i, off, n, final in zip(block.pid.tolist(), block.offset.tolist(), block.length.tolist(),
                                    block.final.tolist(), strict=True):
            yield ByteRange(m.paths[i], off, n), final


def pieces(spans: Spans, granule: int) -> list[ByteRange]:
    """All of `iter_pieces` at once (small plans and tests)."""
    return [p for p, _ in iter_pieces(spans, granule)]


def dir_listings(paths: Iterable[str], have: Iterable[MetaOp] = ()) -> tuple[MetaOp, ...]:
    """READDIR of each directory holding at least `LIST_DIR_MIN` of `paths`, unless already in `have`."""
    listed = {m.path for m in have if m.op is Op.READDIR}
    per_dir = Counter(posixpath.dirname(p) for p in set(paths))
    return tuple(MetaOp(Op.READDIR, d) for d, n in sorted(per_dir.items()) if n >= LIST_DIR_MIN and d not in listed)


EMBEDDED_READS = 8192
"""Reads per batch of an embedded warm: the reader threads drain once per 8 GiB at 1 MiB (nothing),
and memory stays a few MB whatever the plan's size."""


FIRST_READS = 256
"""Reads of an embedded warm's first batch: the first read waits for its batch to be cut, and 8,192
pieces take tens of milliseconds to cut; 256 take well under a round trip."""


def embedded_head(plan: Plan, granule: int) -> tuple[list[Batch], frozenset[str]]:
    """The first batches of an embedded warm, cut before the whole plan is merged: the files whose
    every range is among the plan's first `FIRST_READS` (in plan order; else its first
    `EMBEDDED_READS`, for plans of files of many ranges), with the plan's first metadata
    operations; and those files, which `embedded_batches` then leaves out.

    Merging a plan of a million ranges takes over a second, and the first read used to wait for
    it: files that end within the head are merged alone (their merge is the same as in the whole
    plan, nothing after them overlaps), so the first read leaves at once. Empty when no file ends
    within the head (then the first read waits for the merge, as before).
    """
    k, ended = ended_within(plan.table, (FIRST_READS, EMBEDDED_READS))
    done = frozenset(ended)
    if not done:
        return [], done
    head = [s for s in islice(plan.table.spans(), k) if s[0] in done]
    return list(iter_batches(plan.metadata[:MAX_META], head, plan.files, granule, 1 << 62, EMBEDDED_READS,
                             MAX_META, first_reads=FIRST_READS)), done


def embedded_batches(plan: Plan, granule: int, merged: Merged | None = None, head: int = 0) -> Iterator[Batch]:
    """The plan as the batches of an embedded warm, made as they are taken (from `merged`, the plan's
    spans already merged, when given); the first one small, so the first read goes out at once.
    After `head` batches of `embedded_head`, `merged` must leave out its files, and the batches go on
    from its index and its metadata."""
    meta = plan.metadata[MAX_META:] if head else plan.metadata
    return iter_batches(meta, merged or plan.table, plan.files, granule, 1 << 62, EMBEDDED_READS,
                        MAX_META, first_reads=None if head else FIRST_READS, index=head)


def whole_batch(plan: Plan, granule: int) -> Batch:
    """The entire plan as one batch (small plans and tests: memory grows with the plan's reads)."""
    reads = Reads.of(pieces(plan.table, granule))
    paths = reads.paths
    return Batch(0, reads=reads, meta=plan.metadata + dir_listings(paths, plan.metadata),
                 files=dict(plan.files), closes=frozenset(paths))


def make_batches(plan: Plan, granule: int, rate_bps: int | None,
                 max_reads: int = MAX_READS, max_meta: int = MAX_META) -> list[Batch]:
    """The plan's reads, the first batches carrying its metadata operations too (see `iter_batches`)."""
    return list(iter_batches(plan.metadata, plan.table, plan.files, granule, batch_bytes(rate_bps, granule),
                             max_reads, max_meta))


def make_retry_batches(failed: Sequence[ByteRange], files: Mapping[str, FileInfo], granule: int,
                       rate_bps: int | None, max_reads: int = MAX_READS) -> list[Batch]:
    """Batches for re-running only what a partial warm failed to read."""
    return list(iter_batches((), ((r.path, r.offset, r.length) for r in failed), files,
                             granule, batch_bytes(rate_bps, granule), max_reads, MAX_META))


def iter_batches(meta: Sequence[MetaOp], spans: Spans, files: Mapping[str, FileInfo], granule: int, target: int,
                 max_reads: int, max_meta: int, first_reads: int | None = None, index: int = 0) -> Iterator[Batch]:
    """Read batches of at most `max_reads` reads or `target` bytes, lazily; the plan's metadata
    operations ride with the first of them, `max_meta` a batch (what is left over goes in
    batches of its own at the end).

    Metadata used to go in batches of its own first, and every read waited for them: the
    first read of shot200 reached the gateway 0.54 s after the start (`dd`: 0.13 s). In
    a batch, the loop runs them in slots no read or open needs, so they overlap the reads.

    Each batch is cut from a block of reads as columns (`columns.Cutter`): no object per read.
    """
    chunks = deque(tuple(meta[i:i + max_meta]) for i in range(0, len(meta), max_meta))
    m = merge(spans)
    cut = Cutter(m, granule)
    limit = min(max_reads, first_reads or max_reads)
    while cut.at < cut.total:
        block = cut.take(limit)
        n = min(len(block.length), int(np.searchsorted(np.cumsum(block.length), target)) + 1)
        cut.advance(n)
        yield _batch(index, m.paths, block, n, files, chunks.popleft() if chunks else ())
        index += 1
        limit = max_reads
    for rest in chunks:
        yield Batch(index, meta=rest)
        index += 1


def _batch(index: int, paths: list[str], block: Block, n: int, files: Mapping[str, FileInfo],
           meta: tuple[MetaOp, ...]) -> Batch:
    """The first `n` reads of `block` as a batch, its paths numbered by first appearance (the loop
    opens its files in that order)."""
    pid = block.pid[:n]
    ids, first, inverse = np.unique(pid, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    reads = Reads.from_columns([paths[i] for i in ids[order].tolist()], rank[inverse].astype(np.uint32).tobytes(),
                               block.offset[:n].tobytes(), block.length[:n].tobytes())
    closes = frozenset(paths[i] for i in pid[block.final[:n]].tolist())
    return Batch(index, reads=reads, meta=meta + dir_listings(reads.paths, meta),
                 files={p: files[p] for p in sorted(reads.paths) if p in files}, closes=closes)
