"""Job state, dedupe, shared throttle and dispatch on a real Redis, batches run in this process.

`send` is a list: what the dispatcher would put on the Celery queue, run here by hand,
so redelivery and ordering can be replayed exactly.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo
from prewarm.site.settings import Settings
from prewarm.state import dispatch, keys, runner
from prewarm.state.dedupe import RedisDedupe, forget_gateway
from prewarm.state.jobs import recent
from prewarm.state.throttle import RedisThrottle, get_rate, set_rate
from prewarm.warm.job import JobState
from prewarm.warm.reader import Reader
from prewarm.warm.results import Claim, FindingKind
from tests.fixtures.studio import Studio

MiB = 1 << 20


class Sent(list[tuple[str, str, int]]):
    def __call__(self, gateway: str, job_id: str, index: int) -> None:
        self.append((gateway, job_id, index))


def drain(r: redis.Redis, studio: Studio, sent: Sent, reader: Reader | None = None, **settings: object) -> None:
    """Run every batch the dispatcher sends until the window is empty (a worker, in-process)."""
    s = studio.settings(**settings)
    while sent:
        _, job_id, index = sent.pop(0)
        runner.run_batch(r, s, job_id, index, sent, reader)


def test_a_job_runs_to_done_with_true_counters(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"t{i}.tx", 700_000) for i in range(12)]
    plan = studio.whole(paths)
    s = studio.settings(throttle_bps=2 * MiB, dispatch_window=3)
    sent = Sent()
    job = runner.submit(r, plan, s, sent, "gw1")
    assert len(sent) == 3, "only the window is sent at once"
    assert job.state() is JobState.QUEUED
    drain(r, studio, sent)
    info = job.info()
    assert info is not None and info.state is JobState.DONE
    assert info.counters["bytes_done"] == plan.bytes == info.bytes_planned
    assert info.counters["files_done"] == 12 == info.files_planned
    assert info.batches_done == info.batches and info.finished and info.started
    assert [j.id for j in recent(r)] == [job.id]


def test_a_redelivered_batch_is_counted_once(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"t{i}.tx", MiB) for i in range(4)]
    plan = studio.whole(paths)
    s = studio.settings(throttle_bps=MiB)
    sent = Sent()
    job = runner.submit(r, plan, s, sent, "gw1")
    first = list(sent)
    drain(r, studio, sent)
    for _, job_id, index in first:  # the broker hands the same batches out again
        runner.run_batch(r, s, job_id, index, sent)
    info = job.info()
    assert info is not None and info.state is JobState.DONE
    assert info.counters["bytes_done"] == plan.bytes and info.counters["files_done"] == 4


def test_partial_job_lists_failures_and_retry_reads_only_those(r: redis.Redis, studio: Studio) -> None:
    ok = studio.file("ok.tx", MiB)
    gone = studio.file("gone.tx", MiB)
    flaky = studio.file("flaky.tx", MiB)
    plan = studio.whole([ok, gone, flaky])
    studio.local(gone).unlink()
    s = studio.settings()
    sent = Sent()
    job = runner.submit(r, plan, s, sent, "gw1")
    drain(r, studio, sent, studio.reader(failing=[flaky]))  # the gateway's link drops for that file
    info = job.info()
    assert info is not None and info.state is JobState.PARTIAL
    assert [(f.path, f.kind) for f in info.findings] == [(flaky, FindingKind.IO_ERROR), (gone, FindingKind.MISSING)]
    assert job.failed_ranges() == [ByteRange(flaky, 0, MiB)], "missing is final: only the I/O error is retried"
    retry = runner.submit(r, job.plan(), s, sent, "gw1", retry_of=job)
    drain(r, studio, sent)
    rinfo = retry.info()
    assert rinfo is not None and rinfo.state is JobState.DONE and rinfo.retry_of == job.id
    assert rinfo.bytes_planned == MiB and rinfo.counters["bytes_done"] == MiB


def test_nothing_warmable_is_failed(r: redis.Redis, studio: Studio) -> None:
    gone = studio.file("gone.tx", 1000)
    plan = studio.whole([gone])
    studio.local(gone).unlink()
    sent = Sent()
    job = runner.submit(r, plan, studio.settings(), sent, "gw1")
    drain(r, studio, sent)
    assert job.state() is JobState.FAILED


def test_second_job_over_the_same_data_reads_nothing(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"d{i}.tx", 3 * MiB) for i in range(3)]
    plan = studio.whole(paths)
    s = studio.settings()
    sent = Sent()
    first = runner.submit(r, plan, s, sent, "gw1")
    drain(r, studio, sent)
    second = runner.submit(r, plan, s, sent, "gw1")
    drain(r, studio, sent)
    other_gw = runner.submit(r, plan, s, sent, "gw2")
    drain(r, studio, sent)
    a, b, c = first.info(), second.info(), other_gw.info()
    assert a and b and c
    assert a.counters["bytes_done"] == plan.bytes
    assert b.counters["bytes_done"] == 0 and b.counters["bytes_skipped"] == plan.bytes
    assert b.counters["files_skipped"] == 3 and b.state is JobState.DONE
    assert c.counters["bytes_done"] == plan.bytes, "another gateway has its own cache"


def test_forgetting_a_wiped_gateway_warms_its_data_again(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"w{i}.tx", 2 * MiB) for i in range(2)]
    plan = studio.whole(paths)
    s = studio.settings()
    sent = Sent()
    for gw in ("gw1", "gw2"):
        runner.submit(r, plan, s, sent, gw)
    drain(r, studio, sent)
    assert forget_gateway(r, "gw1") > 0
    again, other = runner.submit(r, plan, s, sent, "gw1"), runner.submit(r, plan, s, sent, "gw2")
    drain(r, studio, sent)
    a, b = again.info(), other.info()
    assert a and b
    assert a.counters["bytes_done"] == plan.bytes, "the wiped gateway's data is read again"
    assert b.counters["bytes_done"] == 0 and b.counters["bytes_skipped"] == plan.bytes, "gw2 still holds it"


def test_a_changed_file_invalidates_what_was_warmed(r: redis.Redis, studio: Studio) -> None:
    p = studio.file("c.tx", 2 * MiB)
    q = studio.file("q.tx", 2 * MiB)
    s = studio.settings()
    sent = Sent()
    runner.submit(r, studio.whole([p, q]), s, sent, "gw1")
    drain(r, studio, sent)
    studio.file("c.tx", 2 * MiB)  # re-rendered
    later = time.time() + 5
    os.utime(studio.local(p), (later, later))
    again = runner.submit(r, studio.whole([p, q]), s, sent, "gw1")
    drain(r, studio, sent)
    info = again.info()
    assert info is not None
    assert info.counters["bytes_done"] == 2 * MiB and info.counters["bytes_skipped"] == 2 * MiB


def test_two_jobs_at_once_never_read_a_granule_twice(r: redis.Redis, studio: Studio) -> None:
    p = studio.file("big.tx", 8 * MiB)
    ident = studio.info(p)
    reads: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        d = RedisDedupe(r, "gw1", owner, MiB, ttl_s=3600, poll_s=0.01)
        for g in range(8):
            piece = ByteRange(p, g * MiB, MiB)
            if d.claim(ident, piece):
                with lock:
                    reads.append((owner, g))
                time.sleep(0.01)
                d.warmed(ident, piece)
                d.flush()

    threads = [threading.Thread(target=worker, args=(f"job{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(g for _, g in reads) == list(range(8))


def test_a_claim_of_the_same_job_is_taken_over(r: redis.Redis) -> None:
    ident = FileInfo("/studio/proj/x", 10, 1.0)
    piece = ByteRange("/studio/proj/x", 0, 10)
    a = RedisDedupe(r, "gw1", "jobA", MiB, ttl_s=60)
    assert a.claim(ident, piece)
    # jobA's worker died holding the claim; its redelivered batch reads at once
    assert RedisDedupe(r, "gw1", "jobA", MiB, ttl_s=60).claim(ident, piece)
    waited: list[float] = []

    def jobA_finishes(s: float) -> None:
        waited.append(s)
        a.warmed(ident, piece)
        a.flush()

    b = RedisDedupe(r, "gw1", "jobB", MiB, ttl_s=60, sleep=jobA_finishes)
    assert not b.claim(ident, piece), "jobB waits for jobA, then skips what it warmed"
    assert waited


def test_shared_throttle_rate_is_changeable(r: redis.Redis) -> None:
    slept: list[float] = []
    t = RedisThrottle(r, "gw1", default_bps=10 * MiB, sleep=slept.append, burst_s=0.0)
    for _ in range(5):
        t.acquire(MiB)
    # the sleep is not real, so each wait is measured from the same moment: the 5th MiB may go at 0.5 s
    assert max(slept) == pytest.approx(0.5, abs=0.05)
    set_rate(r, "gw1", 100 * MiB)
    assert get_rate(r, "gw1") == 100 * MiB
    slept.clear()
    r.delete("prewarm:gw:gw1:tat")
    for _ in range(5):
        t.acquire(MiB)
    assert max(slept) == pytest.approx(0.05, abs=0.02)
    set_rate(r, "gw1", None)
    slept.clear()
    for _ in range(5):
        t.acquire(MiB)
    assert slept == []


def test_the_job_whose_frames_start_first_is_dispatched_first(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"o{i}.tx", MiB) for i in range(6)]
    s = studio.settings(throttle_bps=MiB, dispatch_window=1)  # small batches: one file each
    set_rate(r, "gw1", None)  # ...read unthrottled
    sent = Sent()
    now = time.time()
    late = runner.submit(r, studio.whole(paths, start=now + 3600), s, sent, "gw1")
    soon = runner.submit(r, studio.whole(paths, start=now + 60, job="soon"), s, sent, "gw1")
    urgent = runner.submit(r, studio.whole(paths, start=now + 60, priority=5, job="urgent"), s, sent, "gw1")
    order: list[str] = []
    while sent:
        _, job_id, index = sent.pop(0)
        order.append(job_id)
        runner.run_batch(r, s, job_id, index, sent)
    # the first batch of `late` was sent before the others existed; then urgent, soon, late
    assert order[0] == late.id
    rest = [j for i, j in enumerate(order[1:]) if i == 0 or order[i] != j]
    assert rest == [urgent.id, soon.id, late.id]


def test_cancel_stops_dispatch_and_running_batches(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"k{i}.tx", MiB) for i in range(8)]
    s = studio.settings(throttle_bps=MiB, dispatch_window=2)
    set_rate(r, "gw1", None)
    sent = Sent()
    job = runner.submit(r, studio.whole(paths), s, sent, "gw1")
    _, job_id, index = sent.pop(0)
    runner.run_batch(r, s, job_id, index, sent)
    revoked: list[str] = []
    assert runner.cancel(r, job.id, s, revoked.extend, sent)
    assert revoked == [keys.task_id(job.id, i) for i in (1, 2)]
    drain(r, studio, sent)  # revoked tasks that still arrive do nothing
    info = job.info()
    assert info is not None and info.state is JobState.CANCELLED and info.finished
    assert info.batches_done == 1
    assert not r.zcard(keys.gateway("gw1", "inflight"))
    assert not runner.cancel(r, job.id, s, revoked.extend, sent), "cancelling twice changes nothing"


def test_a_job_cancelled_mid_batch_reports_the_bytes_its_running_batches_read(r: redis.Redis,
                                                                             studio: Studio) -> None:
    """Cancel ends the job before its running batches record their counters: the report takes the
    bytes they reported while running, not the recorded counters alone ("0.0 MB read" after 90 MB)."""
    from prewarm.warm.job import summary_lines
    from prewarm.warm.timeline import Point

    paths = [studio.file(f"c{i}.tx", MiB) for i in range(4)]
    s = studio.settings()
    sent = Sent()
    job = runner.submit(r, studio.whole(paths), s, sent, "gw1")
    job.mark_running()
    job.record_point(Point(int(time.time()), 3 * MiB, 4))  # what a running batch's sampler sends
    assert runner.cancel(r, job.id, s, [].extend, sent)
    info = job.info()
    assert info is not None and info.state is JobState.CANCELLED
    assert info.counters["bytes_done"] == 0
    assert f"{3 * MiB / 1e6:.1f} MB read" in summary_lines(info)[0]


def test_claims_of_a_file_that_changed_are_released(r: redis.Redis, studio: Studio) -> None:
    p = studio.file("ch.tx", 2 * MiB)
    plan = studio.whole([p])
    studio.file("ch.tx", 3 * MiB)  # changed between plan and warm
    sent = Sent()
    job = runner.submit(r, plan, studio.settings(), sent, "gw1")
    drain(r, studio, sent)
    assert job.state() is JobState.FAILED
    assert not list(r.scan_iter("prewarm:dd:gw1:*:c:*")), "another job must not wait on claims nobody holds"


def test_a_batch_lost_on_the_way_is_sent_again(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"l{i}.tx", MiB) for i in range(4)]
    s = studio.settings(throttle_bps=MiB, dispatch_window=2)
    set_rate(r, "gw1", None)
    sent = Sent()
    job = runner.submit(r, studio.whole(paths), s, sent, "gw1")
    lost = list(sent)
    sent.clear()  # the messages never reach a worker; nothing finishes, nothing refills
    assert dispatch.refill(r, "gw1", 2, sent, stale_after_s=3600) == 0
    assert dispatch.refill(r, "gw1", 2, sent, stale_after_s=0) == 2 and sent == lost
    drain(r, studio, sent)
    info = job.info()
    assert info is not None and info.state is JobState.DONE and info.counters["bytes_done"] == 4 * MiB


def test_what_was_warmed_is_trusted_only_for_the_retention_time(r: redis.Redis) -> None:
    ident = FileInfo("/studio/proj/x", 3 * MiB, 1.0)
    piece = ByteRange("/studio/proj/x", MiB, MiB)
    first = RedisDedupe(r, "gw1", "jobA", MiB, ttl_s=1)
    assert first.claim_now([(ident, piece)]) == [Claim.READ]
    first.warmed(ident, piece)
    first.flush()
    assert RedisDedupe(r, "gw1", "jobB", MiB, ttl_s=1).claim_now([(ident, piece)]) == [Claim.SKIP]
    time.sleep(1.1)  # the gateway cache may have culled it by now
    assert RedisDedupe(r, "gw1", "jobC", MiB, ttl_s=1).claim_now([(ident, piece)]) == [Claim.READ]


def test_the_sweep_resends_what_a_dead_sender_chose(r: redis.Redis, studio: Studio) -> None:
    paths = [studio.file(f"w{i}.tx", MiB) for i in range(3)]
    s = studio.settings(throttle_bps=MiB, dispatch_window=2, visibility_timeout_s=1)
    set_rate(r, "gw1", None)
    sent = Sent()
    job = runner.submit(r, studio.whole(paths), s, sent, "gw1")
    sent.clear()  # chosen, never sent: the sender died
    assert runner.refill_all(r, s, sent) == 0, "not stale yet"
    time.sleep(2.1)
    assert runner.refill_all(r, s, sent) == 2
    drain(r, studio, sent)
    assert job.state() is JobState.DONE


def test_workers_refuse_paths_outside_their_roots_even_if_the_submitter_did_not(
        r: redis.Redis, studio: Studio) -> None:
    ok = studio.file("ok.tx", 1000)
    plan = studio.plan([(ok, 0, 1000), ("/etc/hostname", 0, 10)])
    sent = Sent()
    job = runner.submit(r, plan, Settings(), sent, "gw1")  # a submitter with no roots configured
    drain(r, studio, sent)
    info = job.info()
    assert info is not None and info.state is JobState.PARTIAL
    assert [(f.path, f.kind) for f in info.findings] == [("/etc/hostname", FindingKind.OUTSIDE)]
    assert info.counters["bytes_done"] == 1000 and info.failed_ranges == 0


def test_missing_inputs_make_a_redis_job_partial_by_the_same_rule(r: redis.Redis, studio: Studio) -> None:
    from dataclasses import replace

    from prewarm.plan.records import Finding

    plan = replace(studio.whole([studio.file("a.tx", MiB)]), missing=(Finding("/studio/proj/gone.tx", "not found"),))
    sent = Sent()
    job = runner.submit(r, plan, studio.settings(), sent, "gw1")
    drain(r, studio, sent)
    info = job.info()
    assert info is not None and info.state is JobState.PARTIAL and info.counters["inputs_missing"] == 1
    empty = runner.submit(r, replace(plan, ranges=(), metadata=()), studio.settings(), sent, "gw1")
    assert empty.state() is JobState.PARTIAL, "no batches to send: the job ends at once, by the same rule"


def test_progress_moves_while_a_batch_runs_not_only_when_it_ends(r: redis.Redis, studio: Studio) -> None:
    """A 3 MB batch at 1 MB/s takes 3 s: status must show bytes read before it is recorded."""
    import threading

    from prewarm.state.jobs import WarmJob
    from prewarm.warm.batches import whole_batch

    paths = [studio.file(f"p{i}.tx", MiB) for i in range(3)]
    plan = studio.whole(paths)
    job = WarmJob.create(r, plan, [whole_batch(plan, MiB)], "gw1", MiB)
    s = studio.settings(throttle_bps=MiB, in_flight=2)
    set_rate(r, "gw1", MiB)
    worker = threading.Thread(target=runner.run_batch, args=(r, s, job.id, 0, Sent()))
    worker.start()
    seen: list[tuple[int, int]] = []
    while worker.is_alive():
        info = job.info(findings=False)
        assert info is not None
        seen.append((info.batches_done, info.progress()[0]))
        time.sleep(0.2)
    worker.join()
    during = [read for done, read in seen if done == 0]
    assert any(0 < read < 3 * MiB for read in during), seen
    final = job.info()
    assert final is not None and final.progress()[0] == final.counters["bytes_done"] == 3 * MiB
