"""Batching and throttling: pure, parametrised, no IO."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.errors import ConfigError
from prewarm.plan.access import Op
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.ranges import ByteRange
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import FileInfo, MetaOp, PlannedRange
from prewarm.plan.units import parse_rate
from prewarm.site.settings import Settings
from prewarm.testkit.readers import FirstRead
from prewarm.warm.batches import (
    FIRST_READS,
    MAX_META,
    MAX_READS,
    Batch,
    Reads,
    batch_bytes,
    embedded_batches,
    embedded_head,
    iter_batches,
    make_batches,
    merge,
    pieces,
    whole_batch,
)
from prewarm.warm.embedded import warm_embedded
from prewarm.warm.job import JobState
from prewarm.warm.reader import site_reader
from prewarm.warm.throttle import TokenBucket

MiB = 1 << 20


def plan_of(*ranges: tuple[str, int, int], meta: tuple[MetaOp, ...] = ()) -> Plan:
    return Plan(job="j", frames=(1,), ranges=tuple(PlannedRange(*r) for r in ranges), metadata=meta,
                files={p: FileInfo(p, 1 << 40, 1.0) for p, _, _ in ranges})


@pytest.mark.parametrize(("spans", "expected"), [
    ([("/a", 0, 3 * MiB)], [("/a", 0, MiB), ("/a", MiB, MiB), ("/a", 2 * MiB, MiB)]),
    ([("/a", 100, MiB)], [("/a", 100, MiB - 100), ("/a", MiB, 100)]),
    ([("/a", 0, 10), ("/a", 5, 10), ("/a", 15, 5)], [("/a", 0, 20)]),
    ([("/b", 0, 10), ("/a", 0, 10), ("/b", 100, 10)], [("/b", 0, 10), ("/a", 0, 10), ("/b", 100, 10)]),
    ([("/a", 50, 10), ("/b", 0, 1), ("/a", 0, 10)], [("/a", 50, 10), ("/b", 0, 1), ("/a", 0, 10)]),
    ([("/a", 0, 0)], []),
])
def test_pieces_merge_dedupe_and_cut_at_granules(spans: list[tuple[str, int, int]],
                                                 expected: list[tuple[str, int, int]]) -> None:
    assert pieces(spans, MiB) == [ByteRange(*e) for e in expected]


def test_batches_keep_plan_order_and_are_sized_for_the_rate() -> None:
    plan = plan_of(*[(f"/f{i:03d}", 0, 4 * MiB) for i in range(100)])
    batches = make_batches(plan, MiB, rate_bps=50_000_000)
    flat = [r for b in batches for r in b.reads]
    assert flat == pieces([(r.path, r.offset, r.length) for r in plan.ranges], MiB)
    assert [b.index for b in batches] == list(range(len(batches)))
    target = batch_bytes(50_000_000, MiB)
    assert all(b.bytes >= target for b in batches[:-1])
    assert all(b.bytes < target + MiB for b in batches)
    # 3 ms of broker overhead per batch stays under 5% of its transfer time at the rate
    assert all(0.003 / (b.bytes / 50_000_000) < 0.05 for b in batches[:-1])


def test_each_file_is_counted_in_the_batch_of_its_last_read() -> None:
    plan = plan_of(*[(f"/f{i}", 0, 3 * MiB) for i in range(10)])
    batches = make_batches(plan, MiB, rate_bps=4 * MiB)
    closes = [p for b in batches for p in b.closes]
    assert sorted(closes) == sorted({r.path for r in plan.ranges})
    for b in batches:
        for p in b.closes:
            later = [r for later_b in batches[b.index + 1:] for r in later_b.reads if r.path == p]
            assert not later


def test_many_tiny_ranges_are_bounded_per_batch() -> None:
    plan = plan_of(*[(f"/f{i}", 0, 64) for i in range(5000)])
    batches = make_batches(plan, MiB, rate_bps=None)
    assert max(len(b.reads) for b in batches) == MAX_READS
    assert sum(len(b.reads) for b in batches) == 5000


def test_metadata_rides_with_the_first_reads_and_batches_round_trip_as_json() -> None:
    """No batch of metadata alone that every read would wait for: the first batch carries both."""
    plan = plan_of(("/a", 0, 10), meta=(MetaOp(Op.READDIR, "/d"), MetaOp(Op.STAT, "/a")))
    batches = make_batches(plan, MiB, rate_bps=None)
    assert len(batches) == 1 and batches[0].meta == plan.metadata and batches[0].reads
    for b in batches:
        assert Batch.from_json(b.to_json()) == b


def test_metadata_beyond_the_read_batches_gets_batches_of_its_own() -> None:
    meta = tuple(MetaOp(Op.STAT, f"/s{i}") for i in range(5))
    batches = make_batches(plan_of(("/a", 0, 10), meta=meta), MiB, rate_bps=None, max_meta=2)
    assert [len(b.meta) for b in batches] == [2, 2, 1] and [len(b.reads) for b in batches] == [1, 0, 0]
    assert [b.index for b in batches] == [0, 1, 2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.mark.parametrize("size", [1, 4096, MiB, 8 * MiB])
def test_token_bucket_holds_its_rate(size: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(10 * MiB, clock, clock.sleep, burst_s=0.05)
    total = 0
    while total < min(100 * MiB, 5000 * size):
        bucket.acquire(size)
        total += size
    # what was let through never exceeds rate x time + one burst
    assert total <= 10 * MiB * clock.now + 10 * MiB * 0.05 + size
    assert total >= 10 * MiB * clock.now * 0.99


def test_token_bucket_does_not_bank_idle_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(MiB, clock, clock.sleep, burst_s=0.1)
    clock.now = 1000.0
    start = clock.now
    for _ in range(10):
        bucket.acquire(MiB)
    assert clock.now - start >= 9.8


@pytest.mark.parametrize(("text", "bps"), [
    ("50MB/s", 50_000_000), ("400MiB/s", 400 << 20), ("1e6", 1_000_000), ("2.5 GB/s", 2_500_000_000),
    ("100KB", 100_000), ("off", None), ("0", None),
])
def test_parse_rate(text: str, bps: int | None) -> None:
    assert parse_rate(text, "command line", "--rate", ConfigError) == bps


@pytest.mark.parametrize("text", ["fast", "-5MB/s", "10XB/s", "MB/s", "", "100k", "20G"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="--rate"):
        parse_rate(text, "command line", "--rate", ConfigError)


def test_the_head_and_the_merged_rest_are_the_whole_plan_each_file_closed_once() -> None:
    """Files that end within the plan's first reads are cut alone; with the rest merged without them,
    the batches read exactly what the whole plan's merge reads, and count each file once."""
    recurring = [("/r", 0, 10)]
    head = [(f"/h{i}", k * 10, 10) for i in range(50) for k in range(3)]
    later = [(f"/t{i}", 0, 10) for i in range(FIRST_READS)] + [("/r", 5, 10), ("/h0", 0, 5)]
    meta = tuple(MetaOp(Op.STAT, f"/m{i}") for i in range(MAX_META + 3))
    plan = plan_of(*recurring, *head, *later, meta=meta)
    first, ended = embedded_head(plan, MiB)
    assert "/r" not in ended and "/h0" not in ended and "/h1" in ended and "/t0" in ended
    assert f"/t{FIRST_READS - 1}" not in ended  # past the head
    rest = merge(s for s in plan.table.spans() if s[0] not in ended)
    batches = [*first, *embedded_batches(plan, MiB, rest, head=len(first))]
    assert [b.index for b in batches] == list(range(len(batches)))
    whole = whole_batch(plan, MiB)
    assert sorted(r for b in batches for r in b.reads) == sorted(whole.reads)
    closes = [p for b in batches for p in b.closes]
    assert sorted(closes) == sorted(whole.closes)
    assert [m for b in batches for m in b.meta if m.op is Op.STAT] == list(meta)
    assert first[0].reads[0].path == "/h1"  # the first file that ends in the head is read first


class GatedTable(RangeTable):
    """A plan's ranges whose spans past the head, or whose columns once the head is found from them
    (the whole plan's merge), are handed out only after the first read (or 10 s): a warm that merged
    the whole plan before reading would hold them up and be seen doing so."""

    gate: threading.Event
    waited: list[bool]
    looked: int = 0

    def spans(self) -> Iterator[tuple[str, int, int]]:
        for k, span in enumerate(super().spans()):
            if k == FIRST_READS:
                self.waited.append(not self.gate.wait(10))
            yield span

    def columns(self) -> tuple[list[str], array[int], array[int], array[int]]:
        self.looked += 1
        if self.looked > 1:
            self.waited.append(not self.gate.wait(10))
        return super().columns()


def test_an_embedded_warm_reads_before_it_has_merged_the_whole_plan(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    ranges = []
    for i in range(2 * FIRST_READS):
        (tmp_path / "f" / str(i)).write_bytes(b"x" * 4096)
        ranges += [PlannedRange(f"/studio/f/{i}", 0, 2048), PlannedRange(f"/studio/f/{i}", 2048, 2048)]
    files = {r.path: FileInfo(r.path, 4096, (tmp_path / "f" / r.path.rsplit("/", 1)[1]).stat().st_mtime)
             for r in ranges}
    settings = Settings(path_map=PathMap.parse([{"studio": "/studio", "local": str(tmp_path)}], "test"),
                        granule=MiB, in_flight=4)
    reader = FirstRead(site_reader(settings))
    table = GatedTable(ranges)
    table.gate, table.waited = reader.read, []
    plan = Plan(job="j", frames=(1,), ranges=table, files=files)
    info = warm_embedded(plan, settings, reader=reader).info
    assert table.waited == [False]  # the rest's merge waited for the first read, not the other way round
    assert info.state is JobState.DONE
    assert info.counters["files_done"] == info.files_planned == 2 * FIRST_READS
    assert info.bytes_planned == info.counters["bytes_done"] == 2 * FIRST_READS * 4096


def test_files_of_many_ranges_still_make_a_head() -> None:
    plan = plan_of(*[(f"/f{i}", k * 20, 10) for i in range(4) for k in range(FIRST_READS + 50)])
    first, ended = embedded_head(plan, MiB)
    assert sorted(ended) == ["/f0", "/f1", "/f2", "/f3"]
    assert sorted(r for b in first for r in b.reads) == sorted(whole_batch(plan, MiB).reads)
    assert len(first[0].reads) == FIRST_READS  # the first batch stays small


def _naive_pieces(spans: list[tuple[str, int, int]], granule: int) -> list[ByteRange]:
    """The merge and cut written the plain way: each file's spans sorted and merged, the merged spans in
    the order of their earliest plan position, cut at granule boundaries."""
    per: dict[str, list[tuple[int, int, int]]] = {}
    for k, (path, off, n) in enumerate(spans):
        if n > 0:
            per.setdefault(path, []).append((off, off + n, k))
    merged = []
    for path, items in per.items():
        items.sort(key=lambda t: t[0])
        s, e, k = items[0]
        for s2, e2, k2 in items[1:]:
            if s2 <= e:
                e, k = max(e, e2), min(k, k2)
            else:
                merged.append((k, path, s, e))
                s, e, k = s2, e2, k2
        merged.append((k, path, s, e))
    out = []
    for _, path, s, e in sorted(merged):
        while s < e:
            b = min(e, (s // granule + 1) * granule)
            out.append(ByteRange(path, s, b - s))
            s = b
    return out


@pytest.mark.parametrize("seed", range(20))
def test_the_columnar_merge_and_cut_match_the_plain_one(seed: int) -> None:
    import random

    rng = random.Random(seed)
    huge = 1 << 62 if seed % 5 == 0 else 0  # offsets past what laying files end to end can hold
    spans = [(f"/f{rng.randrange(6)}", huge + rng.randrange(0, 5000), rng.randrange(-1, 900))
             for _ in range(rng.randrange(1, 300))]
    assert pieces(spans, 1024) == _naive_pieces(spans, 1024)
    table = RangeTable()
    for s in spans:
        table.add(*s)
    assert pieces(table, 1024) == _naive_pieces(spans, 1024)
    batches = list(iter_batches((), table, {}, 1024, 3000, 7, 10))
    assert [r for b in batches for r in b.reads] == _naive_pieces(spans, 1024)
    assert all(len(b.reads) <= 7 and (b.bytes < 3000 + 1024) for b in batches)
    assert sorted(p for b in batches for p in b.closes) == sorted({r.path for r in _naive_pieces(spans, 1024)})


def test_reads_are_columns_that_read_as_byte_ranges() -> None:
    rs = [ByteRange("/a", 0, 10), ByteRange("/b", 5, 5), ByteRange("/a", 20, 1)]
    reads = Reads.of(rs)
    assert reads.paths == ["/a", "/b"] and list(reads.pid) == [0, 1, 0]
    assert list(reads) == rs and reads == rs and reads[1] == rs[1] and reads[1:] == rs[1:]
    assert [list(p) for p in reads.by_file()] == [[0, 2], [1]]
    assert reads.file_bytes() == {"/a": 11, "/b": 5}
    batch = Batch(3, reads=reads)
    assert Batch.from_json(batch.to_json()).reads == rs
