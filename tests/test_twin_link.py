"""The WAN link model on a fake clock: latency overlaps, bandwidth is shared."""

from __future__ import annotations

import pytest

from prewarm.twin.link import MB, Link

MiB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(rtt_s: float = 0.030, mbps: float | None = 50) -> tuple[Link, FakeClock]:
    clock = FakeClock()
    return Link(rtt_s, mbps * MB if mbps else None, clock=clock, sleep=clock.sleep), clock


def test_one_fetch_costs_a_round_trip_plus_its_transfer_time() -> None:
    link, clock = make()
    assert link.transfer(MiB) == pytest.approx(0.030 + MiB / (50 * MB))
    assert clock.now == pytest.approx(0.030 + MiB / (50 * MB))


def test_concurrent_fetches_overlap_latency_but_queue_for_bandwidth() -> None:
    link, _ = make()
    xfer = MiB / (50 * MB)
    done = [link.reserve(MiB) for _ in range(16)]  # 16 readers issue at t=0
    assert done == pytest.approx([0.030 + (k + 1) * xfer for k in range(16)])


def test_sequential_reader_pays_a_round_trip_per_request() -> None:
    """One reader: 20 MB/s of a 50 MB/s link at 30 ms, as the FUSE prototype measured."""
    link, clock = make()
    for _ in range(10):
        link.transfer(MiB)
    throughput = 10 * MiB / clock.now / MB
    assert 19 < throughput < 22


def test_sixteen_readers_fill_the_link() -> None:
    link, _ = make()
    last = max(link.reserve(MiB) for _ in range(16))
    assert 16 * MiB / last / MB > 45


def test_idle_link_does_not_bank_credit() -> None:
    link, clock = make()
    link.transfer(MiB)
    clock.now += 10.0
    start = clock.now
    link.transfer(MiB)
    assert clock.now - start == pytest.approx(0.030 + MiB / (50 * MB))


def test_unlimited_bandwidth_is_latency_only_and_never_queues() -> None:
    link, _ = make(mbps=None)
    assert [link.reserve(100 * MiB) for _ in range(3)] == pytest.approx([0.030] * 3)


def test_metadata_round_trip_takes_latency_and_no_bandwidth() -> None:
    link, clock = make()
    link.round_trip()
    assert clock.now == pytest.approx(0.030)
    assert link.reserve(MiB) == pytest.approx(0.060 + MiB / (50 * MB))


@pytest.mark.parametrize("rtt, bw", [(-0.001, 1.0), (0.0, 0.0), (0.0, -5.0)])
def test_rejects_impossible_links(rtt: float, bw: float) -> None:
    with pytest.raises(ValueError):
        Link(rtt, bw)
