"""The warm loop on real files: findings, retries, the roots guard, metadata, concurrency.

Failures a root-run test cannot produce with chmod (EACCES, EIO) are injected at the
reader seam by a real reader that raises for chosen paths; everything else is real.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from prewarm.plan.access import Op
from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import MetaOp
from prewarm.site.guard import Guard
from prewarm.testkit.readers import FirstRead
from prewarm.warm.batches import LIST_DIR_MIN, Batch, Reads, make_batches, pieces, whole_batch
from prewarm.warm.embedded import run_embedded
from prewarm.warm.job import JobState
from prewarm.warm.loop import WarmContext, execute_batch
from prewarm.warm.reader import MountReader, OpenFile, OpenOnce, read_each
from prewarm.warm.results import FindingKind, Snapshot, WarmResult
from prewarm.warm.window import QUICK_RTT_S, Window
from tests.fixtures.studio import Studio

MiB = 1 << 20


class RecordingReader(MountReader):
    """The real reader of the studio tree, keeping a log of opens and reads (by studio path),
    failing on request (an errno per studio path)."""

    def __init__(self, studio: Studio, fail_open: dict[str, list[int]] | None = None,
                 fail_read: dict[str, list[int]] | None = None, delay_s: float = 0.0) -> None:
        settings = studio.settings()
        super().__init__(Guard(settings.allowed_roots(), settings.path_map))
        self.fail_open = fail_open or {}
        self.fail_read = fail_read or {}
        self.delay_s = delay_s
        self.opens: Counter[str] = Counter()
        self.reads: list[tuple[str, int, int]] = []
        self.meta: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def open(self, path: str) -> OpenFile:
        with self.lock:
            self.opens[path] += 1
            self.events.append(("open", path))
            errs = self.fail_open.get(path)
            err = errs.pop(0) if errs else None
        if err is not None:
            raise OSError(err, os.strerror(err))
        real = super().open(path)
        outer = self

        class Logged:
            size, mtime, regular = real.size, real.mtime, real.regular

            def read(self, offset: int, length: int) -> int:
                with outer.lock:
                    errs = outer.fail_read.get(path)
                    err = errs.pop(0) if errs else None
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    if err is not None:
                        raise OSError(err, os.strerror(err))
                    time.sleep(outer.delay_s)
                    got = real.read(offset, length)
                    with outer.lock:
                        outer.reads.append((path, offset, got))
                    return got
                finally:
                    with outer.lock:
                        outer.active -= 1

            def read_many(self, offsets: Any, lengths: Any, positions: Any, lo: int, hi: int,
                          short: list[tuple[int, int]]) -> int:
                return read_each(self, offsets, lengths, positions, lo, hi, short)

            def identity(self) -> tuple[int, float]:
                return real.identity()

            def close(self) -> None:
                real.close()

        return Logged()

    def stat(self, path: str) -> None:
        self.meta.append(("stat", path))
        super().stat(path)

    def listdir(self, path: str) -> int:
        self.meta.append(("readdir", path))
        n = super().listdir(path)
        with self.lock:
            self.events.append(("listed", path))
        return n


def ctx_for(studio: Studio, reader: RecordingReader, **kw: Any) -> WarmContext:
    """The loop's context over the studio tree; backoff sleeps are recorded, not slept, unless given."""
    kw.setdefault("sleep", [].append)
    kw.setdefault("in_flight", studio.settings().in_flight)
    return WarmContext(reader=reader, **kw)


def one_batch(studio: Studio, plan_ranges: list[tuple[str, int, int]], meta: tuple[MetaOp, ...] = ()) -> Batch:
    plan = studio.plan(plan_ranges, metadata=meta)
    reads = pieces([(r.path, r.offset, r.length) for r in plan.ranges], MiB)
    return Batch(0, reads=Reads.of(reads), meta=meta, files=dict(plan.files), closes=frozenset(r.path for r in reads))


def test_every_planned_byte_is_read_once_and_nothing_else(studio: Studio) -> None:
    a = studio.file("a.tx", 3 * MiB + 123)
    b = studio.file("b.exr", 200_000)
    reader = RecordingReader(studio)
    batch = one_batch(studio, [(a, 0, 3 * MiB + 123), (b, 1000, 5000), (b, 100_000, 50_000)])
    result = execute_batch(batch, ctx_for(studio, reader))
    assert result.bytes_done == batch.bytes and result.bytes_failed == 0 and not result.findings
    assert sorted(reader.reads) == sorted((r.path, r.offset, r.length) for r in batch.reads)
    assert set(reader.opens.values()) == {1}, "each file is opened once per batch"
    assert result.files_done == 2


def test_reads_are_in_flight_together(studio: Studio) -> None:
    paths = [studio.file(f"tex/t{i}.tx", 64 * 1024) for i in range(24)]
    reader = RecordingReader(studio, delay_s=0.02)
    result = execute_batch(one_batch(studio, [(p, 0, 64 * 1024) for p in paths]), ctx_for(studio, reader, in_flight=8))
    assert result.files_done == 24
    assert reader.max_active >= 4


def test_missing_truncated_replaced_files_are_findings_and_the_rest_is_warmed(studio: Studio) -> None:
    keep = studio.file("keep.tx", MiB)
    gone = studio.file("gone.tx", MiB)
    short = studio.file("short.tx", 2 * MiB)
    dirp = studio.file("dir.tx", MiB)
    batch = one_batch(studio, [(p, 0, studio.local(p).stat().st_size) for p in (keep, gone, short, dirp)])
    studio.local(gone).unlink()
    with open(studio.local(short), "r+b") as fh:
        fh.truncate(MiB // 2)
    studio.local(dirp).unlink()
    studio.local(dirp).mkdir()
    reader = RecordingReader(studio)
    result = execute_batch(batch, ctx_for(studio, reader))
    kinds = {p: f.kind for p, f in result.findings.items()}
    assert kinds == {gone: FindingKind.MISSING, short: FindingKind.CHANGED, dirp: FindingKind.CHANGED}
    assert result.bytes_done == MiB, "only the unchanged file is warmed; nothing is read from a changed one"
    assert {p for p, _, _ in reader.reads} == {keep}
    assert result.files_done == 1 and result.files_failed == 3 and result.bytes_failed == 4 * MiB
    assert not result.failed, "missing and changed files are final: nothing to offer --retry"


def test_a_file_modified_in_place_is_changed_not_warmed(studio: Studio) -> None:
    p = studio.file("m.tx", MiB)
    batch = one_batch(studio, [(p, 0, MiB)])
    os.utime(studio.local(p), (1, 1))
    result = execute_batch(batch, ctx_for(studio, RecordingReader(studio)))
    assert result.findings[p].kind is FindingKind.CHANGED and result.bytes_done == 0


def test_denied_is_final_and_transient_errors_are_retried_with_backoff(studio: Studio) -> None:
    denied = studio.file("denied.tx", MiB)
    flaky = studio.file("flaky.tx", MiB)
    broken = studio.file("broken.tx", MiB)
    reader = RecordingReader(
        studio, fail_open={denied: [errno.EACCES] * 10, flaky: [errno.ESTALE]},
        fail_read={flaky: [errno.EIO, errno.ETIMEDOUT], broken: [errno.EIO] * 10})
    sleeps: list[float] = []
    result = execute_batch(one_batch(studio, [(denied, 0, MiB), (flaky, 0, MiB), (broken, 0, MiB)]),
                        ctx_for(studio, reader, sleep=sleeps.append, retries=3, backoff_s=0.01))
    assert result.findings[denied].kind is FindingKind.DENIED
    assert reader.opens[denied] == 1, "permission denied is not retried"
    assert flaky not in result.findings and result.files_done == 1
    assert result.findings[broken].kind is FindingKind.IO_ERROR
    assert result.failed == [ByteRange(broken, 0, MiB)], "only what may succeed later is offered to --retry"
    # flaky: 1 open retry + 2 read retries; broken: 3 retries then gives up; each doubling
    assert sorted(sleeps).count(0.01) == 3 and sleeps.count(0.02) == 2 and sleeps.count(0.04) == 1


@pytest.mark.parametrize("bad", ["/etc/passwd", "/studio/proj/../../etc/passwd", "/studio/project2/x",
                                 "/studio/proj/./x", "relative/x"])
def test_paths_outside_the_roots_are_never_opened(studio: Studio, bad: str) -> None:
    ok = studio.file("ok.tx", 1000)
    reader = RecordingReader(studio)
    batch = Batch(0, reads=Reads.of((ByteRange(bad, 0, 100), ByteRange(ok, 0, 1000))),
                  meta=(MetaOp(Op.STAT, bad), MetaOp(Op.READDIR, bad)),
                  files={ok: studio.info(ok)}, closes=frozenset({bad, ok}))
    result = execute_batch(batch, ctx_for(studio, reader))
    assert result.findings[bad].kind is FindingKind.OUTSIDE
    assert list(reader.opens) == [ok] and not reader.meta
    assert result.bytes_done == 1000 and result.meta_failed == 2
    assert not result.failed, "refused paths are not offered for retry"


def test_metadata_ops_stat_and_list(studio: Studio, tmp_path: Path) -> None:
    p = studio.file("udim/diffuse.1001.tx", 10)
    studio.file("udim/diffuse.1002.tx", 10)
    meta = (MetaOp(Op.READDIR, "/studio/proj/udim/"), MetaOp(Op.STAT, p), MetaOp(Op.STAT, "/studio/proj/nope.tx"))
    reader = RecordingReader(studio)
    result = execute_batch(Batch(0, meta=meta), ctx_for(studio, reader))
    assert sorted(reader.meta) == sorted([("readdir", "/studio/proj/udim/"), ("stat", p),
                                          ("stat", "/studio/proj/nope.tx")])
    assert result.meta_done == 2 and result.meta_failed == 1
    assert result.findings["/studio/proj/nope.tx"].kind is FindingKind.MISSING


def test_stop_request_ends_the_batch_early(studio: Studio) -> None:
    paths = [studio.file(f"s{i}.tx", 1000) for i in range(50)]
    reader = RecordingReader(studio, delay_s=0.01)
    stop = threading.Event()
    seen: list[Snapshot] = []

    def progress(r: Snapshot) -> None:
        seen.append(r)
        if r.counters["reads"] >= 5:
            stop.set()

    result = execute_batch(one_batch(studio, [(p, 0, 1000) for p in paths]),
                        ctx_for(studio, reader, in_flight=2, should_stop=stop.is_set, progress=progress,
                                clock=iter(range(10**6)).__next__))
    assert 5 <= result.reads < 50 and result.bytes_failed == 0


def test_direct_reader_reads_unaligned_ranges_exactly(studio: Studio) -> None:
    p = studio.file("u.bin", 3 * MiB + 7)
    f = RecordingReader(studio).open(p)
    try:
        assert f.read(0, 4096) == 4096
        assert f.read(3, 100) == 100, "EINVAL from O_DIRECT falls back to a buffered read"
        assert f.read(3 * MiB, MiB) == 7
        assert f.read(10, 2 * MiB + 5) == 2 * MiB + 5
    finally:
        f.close()


def test_embedded_warm_reports_like_a_job(studio: Studio) -> None:
    a = studio.file("a.tx", 2 * MiB)
    gone = studio.file("gone.tx", MiB)
    plan = studio.whole([a, gone])
    studio.local(gone).unlink()
    info = run_embedded(plan, studio.settings(in_flight=4))
    assert info.state is JobState.PARTIAL
    assert info.counters["bytes_done"] == 2 * MiB and info.counters["bytes_failed"] == MiB
    assert [f.kind for f in info.findings] == [FindingKind.MISSING]
    assert run_embedded(studio.whole([a]), studio.settings()).state is JobState.DONE


def test_embedded_throttle_limits_the_rate(studio: Studio) -> None:
    a = studio.file("a.tx", 2 * MiB)
    t0 = time.monotonic()
    info = run_embedded(studio.whole([a]), studio.settings(throttle_bps=8 * MiB))
    assert info.state is JobState.DONE
    assert time.monotonic() - t0 >= 2 / 8 - 0.05 - 0.02


def test_batches_of_a_plan_cover_it(studio: Studio) -> None:
    paths = [studio.file(f"c{i}.tx", 300_000) for i in range(20)]
    plan = studio.whole(paths)
    total = WarmResult()
    for b in make_batches(plan, MiB, rate_bps=1_000_000):
        r = execute_batch(b, ctx_for(studio, RecordingReader(studio)))
        total.bytes_done += r.bytes_done
        total.files_done += r.files_done
    assert total.bytes_done == plan.bytes and total.files_done == 20


def test_a_directory_of_many_planned_files_is_listed_before_they_are_opened_but_the_first(studio: Studio) -> None:
    many = [studio.file(f"udim/d.{1001 + i}.tx", 100) for i in range(LIST_DIR_MIN)]
    few = [studio.file(f"other/o{i}.tx", 100) for i in range(3)]
    batch = whole_batch(studio.whole(many + few), MiB)
    first = batch.reads[0].path
    assert "/udim/" in first

    class ListingAfterTheFirstRead(RecordingReader):
        """A listing that answers only once the first read has gone out (a slow READDIR)."""

        waited: bool | None = None

        def listdir(self, path: str) -> int:
            self.waited = noted.read.wait(5)
            return super().listdir(path)

    reader = ListingAfterTheFirstRead(studio)
    noted = FirstRead(reader)
    result = execute_batch(batch, WarmContext(reader=noted, in_flight=8, sleep=[].append))
    assert result.files_done == LIST_DIR_MIN + 3 and result.meta_done == 1
    assert reader.waited, "the first read went out while the listing was outstanding"
    listed = reader.events.index(("listed", "/studio/proj/udim"))
    udim_opens = [i for i, (kind, p) in enumerate(reader.events) if kind == "open" and "/udim/" in p and p != first]
    assert min(udim_opens) > listed, "one READDIRPLUS first, then opens served from the attribute cache"
    assert ("readdir", "/studio/proj/other") not in reader.meta


def test_no_listing_or_stat_goes_out_while_the_first_file_is_being_opened(studio: Studio) -> None:
    """A gateway without parallel directory operations (FUSE) serialises a folder's lookups with its
    listing, so a listing or stat that got in first held the first read back by its round trip."""
    many = [studio.file(f"udim/d.{1001 + i}.tx", 100) for i in range(LIST_DIR_MIN)]
    looked = studio.file("other/looked.tx", 100)
    batch = whole_batch(studio.whole(many, metadata=(MetaOp(Op.STAT, looked),)), MiB)
    first = batch.reads[0].path

    class SlowFirstOpen(RecordingReader):
        opening = False

        def __init__(self) -> None:
            super().__init__(studio)
            self.overlapped: list[str] = []

        def open(self, path: str) -> OpenFile:
            if path != first:
                return super().open(path)
            self.opening = True
            try:
                time.sleep(0.1)  # a cold folder and file: two round trips
                return super().open(path)
            finally:
                self.opening = False

        def stat(self, path: str) -> None:
            if self.opening:
                self.overlapped.append(path)
            super().stat(path)

        def listdir(self, path: str) -> int:
            if self.opening:
                self.overlapped.append(path)
            return super().listdir(path)

    reader = SlowFirstOpen()
    result = execute_batch(batch, ctx_for(studio, reader, in_flight=8))
    assert result.files_done == LIST_DIR_MIN and result.meta_done == 2
    assert sorted(reader.meta) == [("readdir", "/studio/proj/udim"), ("stat", looked)]
    assert reader.overlapped == [], "a listing or stat went out beside the first file's open"


def test_many_threads_falling_back_from_o_direct_at_once_read_the_right_file(studio: Studio) -> None:
    p = studio.file("unaligned.bin", 64 * 1024)
    reader = RecordingReader(studio)
    for _ in range(20):
        f = reader.open(p)
        try:
            with ThreadPoolExecutor(16) as pool:
                got = list(pool.map(lambda i, f=f: f.read(i * 7 + 1, 5), range(64)))
        finally:
            f.close()
        assert got == [5] * 64


def test_missing_inputs_make_an_embedded_warm_partial_and_optional_ones_do_not(studio: Studio) -> None:
    from dataclasses import replace

    from prewarm.plan.records import Finding

    a = studio.file("a.tx", MiB)
    plan = studio.whole([a])
    gone = Finding("/studio/proj/gone.tx", "not found", 4)
    maybe = Finding("/studio/proj/maybe.tx", "not found (optional input)", 5, optional=True)
    info = run_embedded(replace(plan, missing=(gone, maybe)), studio.settings())
    assert info.state is JobState.PARTIAL and info.counters["inputs_missing"] == 1
    assert info.counters["bytes_done"] == MiB
    assert run_embedded(replace(plan, missing=(maybe,)), studio.settings()).state is JobState.DONE
    nothing = run_embedded(replace(plan, ranges=(), metadata=(), missing=(gone,)), studio.settings())
    assert nothing.state is JobState.PARTIAL, "all inputs missing: not done, and nothing planned failed either"


def test_an_embedded_warm_of_many_batches_keeps_one_running_byte_count(studio: Studio, monkeypatch: Any) -> None:
    """The throughput series of a warm longer than one embedded batch: never negative, and it adds up to
    the bytes read, so the report's first-frame time is read off the right curve (a clock that ticks a
    second at every progress call makes every call a point, batch boundaries included)."""
    import prewarm.warm.batches as batches_mod
    import prewarm.warm.embedded as embedded_mod
    from prewarm.report.build import build
    from prewarm.warm.timeline import Sampler

    monkeypatch.setattr(batches_mod, "EMBEDDED_READS", 8)
    ticks = iter(range(1_000_000, 2_000_000))
    monkeypatch.setattr(embedded_mod, "Sampler", lambda emit: Sampler(emit, clock=lambda: float(next(ticks))))
    paths = [studio.file(f"many/f{i}.tx", 64 * 1024) for i in range(5)]
    info = run_embedded(studio.whole(paths), studio.settings(read_size=4096, in_flight=2))
    assert info.state is JobState.DONE and info.counters["reads"] == 80
    assert all(p.bytes >= 0 for p in info.samples)
    assert sum(p.bytes for p in info.samples) == info.counters["bytes_done"] == 5 * 64 * 1024
    series = build(info, None, None, points=info.samples).series
    assert all(s.bytes_per_s >= 0 for s in series)


def test_a_file_appended_to_while_it_is_warmed_is_changed(studio: Studio) -> None:
    """Its identity is checked again after its last read: the bytes warmed are not the file the render reads."""
    p = studio.file("grow.tx", 4 * MiB)
    q = studio.file("still.tx", MiB)
    batch = one_batch(studio, [(p, 0, 4 * MiB), (q, 0, MiB)])
    grown = threading.Event()

    def progress(_: Snapshot) -> None:
        if not grown.is_set():
            grown.set()
            with open(studio.local(p), "ab") as f:
                f.write(b"appended")

    result = execute_batch(batch, ctx_for(studio, RecordingReader(studio), in_flight=1, progress=progress))
    assert grown.is_set()
    assert set(result.findings) == {p} and result.findings[p].kind is FindingKind.CHANGED
    assert "modified while warmed" in result.findings[p].detail
    assert result.files_failed == 1 and result.files_done == 1


def test_an_embedded_warm_opens_each_file_once_and_reports_its_window(studio: Studio, monkeypatch: Any) -> None:
    """A file whose reads fall in many embedded batches is opened once for the warm, not once a batch."""
    import prewarm.warm.batches as batches_mod

    monkeypatch.setattr(batches_mod, "EMBEDDED_READS", 4)
    paths = [studio.file(f"once/f{i}.tx", 64 * 1024) for i in range(3)]
    # each file's ranges interleaved with the others', so each file has reads in several batches
    ranges = [(p, off, 4096) for off in range(0, 64 * 1024, 8192) for p in paths]
    reader = RecordingReader(studio)
    info = run_embedded(studio.plan(ranges), studio.settings(read_size=4096, in_flight=2), reader=reader)
    assert info.state is JobState.DONE and info.batches > 3
    assert info.counters["reads"] == len(ranges) and info.counters["files_done"] == 3
    assert reader.opens == Counter(paths)
    assert info.link is not None and info.link["in_flight"] >= 2 and info.link["rtt_s"] > 0


def _quick_window() -> Window:
    """A window that has measured page-cached round trips (microseconds): the loop takes reads in runs."""
    w = Window(2)
    for i in range(200):
        w.observe(1e-5, 4096, i * 1e-3)
    assert w.min_rtt < QUICK_RTT_S
    return w


def test_reads_taken_in_runs_keep_each_reads_fate(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quick reads are taken a run of one file at a time; a read of a run that fails is retried alone
    with the same backoff, one that still fails is that read's finding, and the run goes on after it."""
    flaky = studio.file("runs/flaky.tx", 400 * 4096)
    broken = studio.file("runs/broken.tx", 400 * 4096)
    reader = RecordingReader(studio, fail_read={flaky: [errno.EIO, errno.ETIMEDOUT],
                                                broken: [errno.EIO] * 4})
    slept: list[float] = []
    runs: list[int] = []
    batch = one_batch(studio, [(flaky, 0, 400 * 4096), (broken, 0, 400 * 4096)])
    batch = Batch(0, reads=Reads.of(pieces([(r.path, r.offset, r.length) for r in batch.reads], 4096)),
                  files=batch.files, closes=batch.closes)
    original = read_each

    def noting(file: Any, offsets: Any, lengths: Any, positions: Any, lo: int, hi: int,
               short: list[tuple[int, int]]) -> int:
        runs.append(hi - lo)
        return original(file, offsets, lengths, positions, lo, hi, short)

    monkeypatch.setitem(globals(), "read_each", noting)  # what RecordingReader's files run
    result = execute_batch(batch, ctx_for(studio, reader, in_flight=2, sleep=slept.append, window=_quick_window()))
    assert max(runs) > 1, "reads were taken in runs"
    assert slept.count(0.05) == 2 and slept.count(0.1) == 2 and slept.count(0.2) == 1
    assert set(result.findings) == {broken} and result.findings[broken].kind is FindingKind.IO_ERROR
    assert result.failed == [ByteRange(broken, 0, 4096)], "only the read that kept failing is offered to --retry"
    assert result.bytes_done == 2 * 400 * 4096 - 4096 and result.reads == 799
    assert sorted(reader.reads) == sorted((r.path, r.offset, r.length) for r in batch.reads
                                          if r != ByteRange(broken, 0, 4096))


def test_a_file_opened_ahead_is_opened_once_and_an_open_waits_for_another_of_the_same_file(studio: Studio) -> None:
    """The warm's first file is opened on a thread of its own while the first batch is cut; the batch's
    own open waits for that one instead of opening the file a second time."""
    p = studio.file("ahead/a.tx", 8192)
    gate = threading.Event()

    class Slow(RecordingReader):
        def open(self, path: str) -> OpenFile:
            gate.wait(5)
            return super().open(path)

    reader = Slow(studio)
    opens = OpenOnce(reader)
    opens.open_ahead(p)
    got: list[int] = []
    waiting = threading.Thread(target=lambda: got.append(opens.open(p).read(0, 4096)))
    waiting.start()
    time.sleep(0.05)
    gate.set()
    waiting.join(5)
    opens.close()
    assert got == [4096] and reader.opens == Counter({p: 1}) and opens.opens == 1


def test_an_embedded_warm_whose_first_file_is_missing_reports_it_once(studio: Studio) -> None:
    """The open ahead of a missing file fails quietly; the batch's own open meets it and reports it."""
    a = studio.file("b.tx", 4096)
    gone = "/studio/proj/gone.tx"
    plan = studio.plan([(gone, 0, 100), (a, 0, 4096)])
    reader = RecordingReader(studio)
    info = run_embedded(plan, studio.settings(), reader=reader)
    assert info.state is JobState.PARTIAL and [f.path for f in info.findings] == [gone]
    assert info.findings[0].kind is FindingKind.MISSING and info.counters["files_done"] == 1


def test_a_gateway_that_answers_nothing_is_reported_stalled_then_resumed(studio: Studio,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A stopped gateway leaves reads hanging in the kernel: the warm says so instead of going silent."""
    paths = [studio.file(f"st{i}.tx", 4096) for i in range(3)]
    gate = threading.Event()

    class Hanging(RecordingReader):
        def open(self, path: str) -> OpenFile:
            gate.wait(10)
            return super().open(path)

    threading.Timer(0.8, gate.set).start()
    with caplog.at_level("WARNING", logger="prewarm.warm.loop"):
        result = execute_batch(one_batch(studio, [(p, 0, 4096) for p in paths]),
                            ctx_for(studio, Hanging(studio), in_flight=2, stall_s=0.3))
    assert result.files_done == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("warm stalled: nothing has completed for") for m in messages), messages
    assert "warm resumed: the gateway answers again" in messages
