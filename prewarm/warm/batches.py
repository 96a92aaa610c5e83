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

Memory follows the plan's ranges, never its bytes: merging works on typed arrays,
pieces are cut one at a time as batches are taken (`iter_batches`), and a batch
holds at most `MAX_READS` of them. A 16 TiB plan is 16 million 1 MiB reads; none of
them exists before its batch does.
"""

from __future__ import annotations

import posixpath
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo, MetaOp

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
        reads: list[ByteRange] = []
        paths = data.get("paths", [])
        for item in data["reads"]:
            path = paths[item[0]] if isinstance(item[0], int) else item[0]
            if len(item) == 4:
                reads.extend(_cut(path, int(item[1]), int(item[1]) + int(item[2]), int(item[3])))
            else:
                reads.append(ByteRange(path, int(item[1]), int(item[2])))
        return cls(
            index=int(data["index"]),
            reads=tuple(reads),
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


def _merged(spans: Iterable[tuple[str, int, int]]) -> tuple[list[str], array[int], array[int], array[int], array[int]]:
    """Each file's overlapping or touching spans merged: (paths, path ids, starts, ends) as arrays,
    and the order in which the merged spans are first needed (the earliest plan position in each).

    Only typed arrays and one file's spans at a time: spans are bucketed by file (a counting
    sort on the path id), each file's are sorted alone, and the merged spans are put back in
    plan order by their positions, which are distinct plan indexes.
    """
    ids: dict[str, int] = {}
    paths: list[str] = []
    pid, start, end = array("I"), array("q"), array("q")
    for path, off, length in spans:
        if length <= 0:
            continue
        i = ids.get(path)
        if i is None:
            i = ids[path] = len(paths)
            paths.append(path)
        pid.append(i)
        start.append(off)
        end.append(off + length)
    first = array("q", [0]) * (len(paths) + 1)
    for i in pid:
        first[i + 1] += 1
    for i in range(len(paths)):
        first[i + 1] += first[i]
    fill = array("q", first)
    by_file = array("q", [0]) * len(pid)
    for k, i in enumerate(pid):
        by_file[fill[i]] = k
        fill[i] += 1
    del fill
    m_pid, m_start, m_end, m_pos = array("I"), array("q"), array("q"), array("q")
    for i in range(len(paths)):
        for k in sorted(by_file[first[i]:first[i + 1]], key=start.__getitem__):
            if m_pid and m_pid[-1] == i and start[k] <= m_end[-1]:
                m_end[-1] = max(m_end[-1], end[k])
                m_pos[-1] = min(m_pos[-1], k)
            else:
                m_pid.append(i)
                m_start.append(start[k])
                m_end.append(end[k])
                m_pos.append(k)
    del by_file, first
    slot = array("q", [-1]) * len(pid)
    for m, k in enumerate(m_pos):
        slot[k] = m
    order = array("q", (m for m in slot if m >= 0))
    return paths, m_pid, m_start, m_end, order


class Merged(NamedTuple):
    """`_merged`'s columns: paths, path ids, starts, ends, first-need order."""

    paths: list[str]
    pid: array[int]
    start: array[int]
    end: array[int]
    order: array[int]


def merged_size(spans: Iterable[tuple[str, int, int]] | Merged) -> tuple[int, int]:
    """(bytes, files) that spans cover once merged: what a warm of them will read at most."""
    paths, _, start, end, _ = spans if isinstance(spans, Merged) else _merged(spans)
    return sum(end) - sum(start), len(paths)


def merge(spans: Iterable[tuple[str, int, int]]) -> Merged:
    """Spans merged once, for `merged_size` and `iter_pieces` both (the merge is most of a big plan's cost)."""
    return Merged(*_merged(spans))


def iter_pieces(spans: Iterable[tuple[str, int, int]] | Merged, granule: int) -> Iterator[tuple[ByteRange, bool]]:
    """Merge each file's overlapping ranges, keep first-need order, cut at granule boundaries,
    one piece at a time; the flag marks each file's last piece. `spans` are `(path, offset,
    length)` in plan order, or what `merge` made of them."""
    paths, pid, start, end, order = spans if isinstance(spans, Merged) else _merged(spans)
    last = array("q", [0]) * len(paths)
    for k, m in enumerate(order):
        last[pid[m]] = k
    for k, m in enumerate(order):
        path, s, e = paths[pid[m]], start[m], end[m]
        final = last[pid[m]] == k
        for piece in _cut(path, s, e, granule):
            yield piece, final and piece.end == e


def pieces(spans: Iterable[tuple[str, int, int]], granule: int) -> list[ByteRange]:
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
    for k in (FIRST_READS, EMBEDDED_READS):
        done = frozenset(plan.table.ended_within(k))
        if done:
            break
    else:
        return [], done
    head = [s for s in islice(_spans(plan), k) if s[0] in done]
    return list(iter_batches(plan.metadata[:MAX_META], head, plan.files, granule, 1 << 62, EMBEDDED_READS,
                             MAX_META, first_reads=FIRST_READS)), done


def embedded_batches(plan: Plan, granule: int, merged: Merged | None = None, head: int = 0) -> Iterator[Batch]:
    """The plan as the batches of an embedded warm, made as they are taken (from `merged`, the plan's
    spans already merged, when given); the first one small, so the first read goes out at once.
    After `head` batches of `embedded_head`, `merged` must leave out its files, and the batches go on
    from its index and its metadata."""
    meta = plan.metadata[MAX_META:] if head else plan.metadata
    return iter_batches(meta, merged or _spans(plan), plan.files, granule, 1 << 62, EMBEDDED_READS,
                        MAX_META, first_reads=None if head else FIRST_READS, index=head)


def whole_batch(plan: Plan, granule: int) -> Batch:
    """The entire plan as one batch (small plans and tests: memory grows with the plan's reads)."""
    reads = pieces(_spans(plan), granule)
    paths = {r.path for r in reads}
    return Batch(0, reads=tuple(reads), meta=plan.metadata + dir_listings(paths, plan.metadata),
                 files=dict(plan.files), closes=frozenset(paths))


def _spans(plan: Plan) -> Iterator[tuple[str, int, int]]:
    return plan.table.spans()


def make_batches(plan: Plan, granule: int, rate_bps: int | None,
                 max_reads: int = MAX_READS, max_meta: int = MAX_META) -> list[Batch]:
    """The plan's reads, the first batches carrying its metadata operations too (see `iter_batches`)."""
    return list(iter_batches(plan.metadata, _spans(plan), plan.files, granule, batch_bytes(rate_bps, granule),
                             max_reads, max_meta))


def make_retry_batches(failed: Sequence[ByteRange], files: Mapping[str, FileInfo], granule: int,
                       rate_bps: int | None, max_reads: int = MAX_READS) -> list[Batch]:
    """Batches for re-running only what a partial warm failed to read."""
    return list(iter_batches((), ((r.path, r.offset, r.length) for r in failed), files,
                             granule, batch_bytes(rate_bps, granule), max_reads, MAX_META))


def iter_batches(meta: Sequence[MetaOp], spans: Iterable[tuple[str, int, int]] | Merged,
                 files: Mapping[str, FileInfo], granule: int, target: int, max_reads: int, max_meta: int,
                 first_reads: int | None = None, index: int = 0) -> Iterator[Batch]:
    """Read batches of at most `max_reads` reads or `target` bytes, lazily; the plan's metadata
    operations ride with the first of them, `max_meta` a batch (what is left over goes in
    batches of its own at the end).

    Metadata used to go in batches of its own first, and every read waited for them: the
    first read of shot200 reached the gateway 0.54 s after the start (`dd`: 0.13 s). In
    a batch, the loop runs them in slots no read or open needs, so they overlap the reads.
    """
    chunks = deque(tuple(meta[i:i + max_meta]) for i in range(0, len(meta), max_meta))
    chunk: list[ByteRange] = []
    closes: set[str] = set()
    size = 0
    limit = min(max_reads, first_reads or max_reads)
    for piece, final in iter_pieces(spans, granule):
        chunk.append(piece)
        size += piece.length
        if final:
            closes.add(piece.path)
        if len(chunk) >= limit or size >= target:
            yield _batch(index, chunk, closes, files, chunks.popleft() if chunks else ())
            index += 1
            chunk, closes, size, limit = [], set(), 0, max_reads
    if chunk:
        yield _batch(index, chunk, closes, files, chunks.popleft() if chunks else ())
        index += 1
    for rest in chunks:
        yield Batch(index, meta=rest)
        index += 1


def _batch(index: int, chunk: list[ByteRange], closes: set[str], files: Mapping[str, FileInfo],
           meta: tuple[MetaOp, ...]) -> Batch:
    paths = {r.path for r in chunk}
    return Batch(index, reads=tuple(chunk), meta=meta + dir_listings(paths, meta),
                 files={p: files[p] for p in sorted(paths) if p in files}, closes=frozenset(closes))
