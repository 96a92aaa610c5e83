"""The in-flight window on a simulated link: it grows to fill a link whose round trip is long,
stays at its floor where reads are as fast as the reader, and at one read where they are page
copies (pure: the clock is simulated)."""

from __future__ import annotations

from prewarm.warm.window import CACHED_RTT_S, CEILING, FLOOR, QUICK_RTT_S, Window

KiB = 1024


def simulate(window: Window, rtt: float, bandwidth: float, read: int, seconds: float, queue: bool = True,
             start: float = 0.0) -> float:
    """Reads of `read` bytes over a link of `rtt` and `bandwidth` (bytes/s), `window.size` at a time,
    from `start` for `seconds` (the clock at the end is returned): each takes the round trip plus its
    share of the link, as a queue at the bottleneck would; with `queue` False the bottleneck is the
    reader itself (the interpreter), whose waits no read sees."""
    now = start
    while now < start + seconds:
        n = window.size
        # n reads in flight complete together after a round trip, or later if the link is full
        took = max(rtt, n * read / bandwidth)
        now += took
        for _ in range(n):
            window.observe(took if queue else rtt, read, now)
    return now


def test_a_long_round_trip_grows_the_window_to_about_twice_the_bandwidth_delay_product() -> None:
    w = Window(16)
    simulate(w, rtt=0.030, bandwidth=100e6, read=16 * KiB, seconds=3)
    bdp = 100e6 * 0.030 / (16 * KiB)  # 183 reads
    assert bdp <= w.size <= CEILING
    est = w.estimate()
    assert est is not None and abs(est.rtt_s - 0.030) < 1e-9 and est.bdp_reads >= 0.9 * bdp


def test_page_cached_reads_bring_the_window_down_to_one_read() -> None:
    """Page-cached files: the product is below one read, a second thread would only contend."""
    w = Window(16)
    simulate(w, rtt=3e-6, bandwidth=470e6, read=4 * KiB, seconds=1, queue=False)  # measured: 100k reads, tmpfs
    assert w.size == 1 and w.largest <= 32


def test_quick_reads_that_wait_on_a_device_keep_the_floor() -> None:
    """Reads of a local disk or a near server (tens to hundreds of microseconds) wait on something a
    second thread overlaps: the floor, not one."""
    for rtt in (2 * CACHED_RTT_S, QUICK_RTT_S / 2):
        w = Window(16)
        simulate(w, rtt=rtt, bandwidth=1e12, read=4 * KiB, seconds=0.5, queue=False)
        assert w.size == FLOOR


def test_a_link_that_slows_shrinks_the_window_again() -> None:
    w = Window(4)
    simulate(w, rtt=0.030, bandwidth=100e6, read=64 * KiB, seconds=2)
    big = w.size
    simulate(w, rtt=0.030, bandwidth=10e6, read=64 * KiB, seconds=15)
    assert w.size < big and w.size >= 4


def test_a_reader_bound_by_the_interpreter_falls_to_one_read_though_its_round_trips_grow_with_it() -> None:
    """Page-cached reads on threads that share the interpreter: each read's measured round trip is
    the other threads' time holding it (n x 3 us), so bandwidth x round trip grows with the window
    it sizes; the window is decided by the round trip being quick, not by that product."""
    w = Window(16)
    simulate(w, rtt=3e-6, bandwidth=1e12, read=4 * KiB, seconds=0.5)
    assert w.size == 1
    slow = Window(16)
    simulate(slow, rtt=0.030, bandwidth=100e6, read=16 * KiB, seconds=3)
    assert slow.size > FLOOR  # a round trip over a link is not mistaken for the reader's own


def test_a_link_bound_phase_after_page_cached_reads_grows_the_window_again() -> None:
    """A worker's window lives across its batches of one gateway: a batch the gateway's page cache
    answered (microsecond round trips) must not leave a later batch that crosses the link sized by
    those round trips and its throughput: the search starts again."""
    w = Window(16)
    bdp = 100e6 * 0.030 / (16 * KiB)
    now = simulate(w, rtt=0.030, bandwidth=100e6, read=16 * KiB, seconds=3)
    assert not w.growing and bdp <= w.size             # the search on the link had ended
    now = simulate(w, rtt=3e-6, bandwidth=470e6, read=4 * KiB, seconds=1, queue=False, start=now)
    assert w.size == 1
    simulate(w, rtt=0.030, bandwidth=100e6, read=16 * KiB, seconds=3, start=now)
    assert bdp <= w.size <= CEILING
    est = w.estimate()
    assert est is not None and abs(est.rtt_s - 0.030) < 1e-9
