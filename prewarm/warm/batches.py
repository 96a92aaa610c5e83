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
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prewarm.plan import ranges
from prewarm.plan.access import Op
from prewarm.plan.model import FileInfo, MetaOp, Plan
from prewarm.plan.ranges import ByteRange

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


@dataclass(frozen=True, slots=True)
class Batch:
    """Reads (and metadata operations) warmed by one task, with the identity of each file read."""

    index: int
    reads: tuple[ByteRange, ...] = ()
    meta: tuple[MetaOp, ...] = ()
    files: Mapping[str, FileInfo] = field(default_factory=dict)
    closes: frozenset[str] = frozenset()
    """Files whose last planned read is in this batch: their outcome is counted here, once."""

    @property
    def bytes(self) -> int:
        return sum(r.length for r in self.reads)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "reads": [[r.path, r.offset, r.length] for r in self.reads],
            "meta": [[m.op.value, m.path] for m in self.meta],
            "files": {p: [f.size, f.mtime] for p, f in self.files.items()},
            "closes": sorted(self.closes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batch:
        """Load a batch this module wrote (it is stored by prewarm itself, not user input)."""
        return cls(
            index=int(data["index"]),
            reads=tuple(ByteRange(p, int(o), int(n)) for p, o, n in data["reads"]),
            meta=tuple(MetaOp(Op(op), p) for op, p in data["meta"]),
            files={p: FileInfo(p, int(s), float(m)) for p, (s, m) in data["files"].items()},
            closes=frozenset(data["closes"]),
        )


def batch_bytes(rate_bps: int | None, granule: int) -> int:
    """Bytes a batch should carry: `TARGET_SECONDS` of transfer, at least one granule."""
    rate = rate_bps or UNTHROTTLED_BPS
    return max(granule, int(rate * TARGET_SECONDS))


def pieces(spans: Iterable[tuple[str, int, int]], granule: int) -> list[ByteRange]:
    """Merge each file's overlapping ranges, keep first-need order, cut at granule boundaries.

    `spans` are `(path, offset, length)` in plan order.
    """
    by_file: dict[str, list[tuple[int, int, int]]] = {}
    for pos, (path, off, length) in enumerate(spans):
        if length > 0:
            by_file.setdefault(path, []).append((off, off + length, pos))
    merged: list[tuple[int, str, int, int]] = []
    for path, items in by_file.items():
        items.sort()
        cur_s, cur_e, cur_p = items[0]
        for s, e, p in items[1:]:
            if s <= cur_e:
                cur_e = max(cur_e, e)
                cur_p = min(cur_p, p)
            else:
                merged.append((cur_p, path, cur_s, cur_e))
                cur_s, cur_e, cur_p = s, e, p
        merged.append((cur_p, path, cur_s, cur_e))
    merged.sort()
    out: list[ByteRange] = []
    for _, path, s, e in merged:
        head = min(e, -(-s // granule) * granule) if s % granule else s
        cut = ([(s, head)] if head > s else []) + ranges.split([(head, e)], granule)
        out.extend(ByteRange(path, a, b - a) for a, b in cut)
    return out


def dir_listings(paths: Iterable[str], have: Iterable[MetaOp] = ()) -> tuple[MetaOp, ...]:
    """READDIR of each directory holding at least `LIST_DIR_MIN` of `paths`, unless already in `have`."""
    listed = {m.path for m in have if m.op is Op.READDIR}
    per_dir = Counter(posixpath.dirname(p) for p in set(paths))
    return tuple(MetaOp(Op.READDIR, d) for d, n in sorted(per_dir.items()) if n >= LIST_DIR_MIN and d not in listed)


def whole_batch(plan: Plan, granule: int) -> Batch:
    """The entire plan as one batch: the embedded mode's reader pool then never drains between batches."""
    reads = pieces([(r.path, r.offset, r.length) for r in plan.ranges], granule)
    paths = {r.path for r in reads}
    return Batch(0, reads=tuple(reads), meta=plan.metadata + dir_listings(paths, plan.metadata),
                 files=dict(plan.files), closes=frozenset(paths))


def make_batches(plan: Plan, granule: int, rate_bps: int | None,
                 max_reads: int = MAX_READS, max_meta: int = MAX_META) -> list[Batch]:
    """The plan's metadata operations first (renderers list and stat before they read), then its reads."""
    return _assemble(plan.metadata, [(r.path, r.offset, r.length) for r in plan.ranges], plan.files,
                     granule, batch_bytes(rate_bps, granule), max_reads, max_meta)


def make_retry_batches(failed: Sequence[ByteRange], files: Mapping[str, FileInfo], granule: int,
                       rate_bps: int | None, max_reads: int = MAX_READS) -> list[Batch]:
    """Batches for re-running only what a partial warm failed to read."""
    return _assemble((), [(r.path, r.offset, r.length) for r in failed], files,
                     granule, batch_bytes(rate_bps, granule), max_reads, MAX_META)


def _assemble(meta: Sequence[MetaOp], spans: list[tuple[str, int, int]], files: Mapping[str, FileInfo],
              granule: int, target: int, max_reads: int, max_meta: int) -> list[Batch]:
    reads = pieces(spans, granule)
    last: dict[str, int] = {}
    for i, r in enumerate(reads):
        last[r.path] = i
    out: list[Batch] = []
    for i in range(0, len(meta), max_meta):
        out.append(Batch(len(out), meta=tuple(meta[i:i + max_meta])))
    start = 0
    while start < len(reads):
        size = 0
        end = start
        while end < len(reads) and end - start < max_reads and size < target:
            size += reads[end].length
            end += 1
        chunk = reads[start:end]
        paths = {r.path for r in chunk}
        out.append(Batch(len(out), reads=tuple(chunk), meta=dir_listings(paths),
                         files={p: files[p] for p in sorted(paths) if p in files},
                         closes=frozenset(p for p in paths if start <= last[p] < end)))
        start = end
    return out
