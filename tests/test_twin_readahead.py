"""The readahead model on its own: which pages one read adds, worked out by hand from mm/readahead.c."""

from __future__ import annotations

import pytest

from prewarm.twin.readahead import (
    PAGE,
    READY,
    FilePages,
    RaState,
    init_size,
    next_size,
    read_pages,
)

MiB = 1 << 20
RA = 8 * MiB // PAGE  # read_ahead_kb=8192, as knfsd-cache-utils sets it


def pages(size: int) -> FilePages:
    return FilePages.of_size(size)


def settle(fp: FilePages) -> None:
    """The fetches arrived."""
    for i, s in enumerate(fp.state):
        if s:
            fp.state[i] = READY


@pytest.mark.parametrize("req, size", [(1, 4), (2, 8), (10, 64), (16, 64), (17, 128), (256, 512), (600, 2048)])
def test_the_first_window_is_4x_or_2x_the_request_rounded_up(req: int, size: int) -> None:
    assert init_size(req, RA) == size


@pytest.mark.parametrize("cur, nxt", [(64, 256), (127, 508), (128, 256), (1024, 2048), (2048, 2048)])
def test_windows_grow_4x_then_2x_up_to_read_ahead_kb(cur: int, nxt: int) -> None:
    assert next_size(cur, RA) == nxt


def test_a_standalone_random_tile_read_fetches_its_own_pages_only() -> None:
    fp = pages(64 * MiB)
    assert read_pages(fp, 100 * PAGE, 37_000, 64 * MiB, RA) == [(100, 110)]  # 40 KiB for 37 KB
    settle(fp)
    assert read_pages(fp, 5000 * PAGE + 123, 37_000, 64 * MiB, RA) == [(5000, 5010)]
    assert read_pages(fp, 100 * PAGE, 37_000, 64 * MiB, RA) == []           # cached: nothing
    assert fp.ra.size == 0, "random reads leave the readahead state alone"


def test_a_read_at_offset_zero_starts_a_small_window() -> None:
    fp = pages(64 * MiB)
    assert read_pages(fp, 0, 37_000, 64 * MiB, RA) == [(0, 64)]
    assert fp.marks == {10}, "the mark sits where the request ends: reaching it starts the next window"


def test_a_sequential_run_grows_its_window_to_read_ahead_kb() -> None:
    size = 64 * MiB
    fp = pages(size)
    fetched = [read_pages(fp, n * MiB, MiB, size, RA) for n in range(12)]
    assert fetched[0] == [(0, 512)]                 # 2 MiB for the first 1 MiB read
    assert fetched[1] == [(512, 1536)]              # its mark reached: 4 MiB more
    assert fetched[2] == [(1536, 3584)]             # then 8 MiB, the maximum
    assert fetched[3] == []
    assert fetched[6] == [(3584, 5632)]             # every 8 MiB window, 8 MiB ahead of the reader
    total = sum(b - a for runs in fetched for a, b in runs) * PAGE
    assert total == 22 * MiB and total - 12 * MiB == 10 * MiB, "12 MiB read, 10 MiB fetched ahead"


def test_a_read_right_after_the_previous_one_is_sequential() -> None:
    fp = pages(64 * MiB)
    read_pages(fp, 100 * PAGE, 10 * PAGE, 64 * MiB, RA)
    assert read_pages(fp, 110 * PAGE, 10 * PAGE, 64 * MiB, RA) == [(110, 174)]


def test_cached_history_before_a_read_makes_it_sequential() -> None:
    """Interleaved streams: the pages left behind by a run mark the next read as part of it."""
    fp = pages(64 * MiB)
    fp.state[1000:1040] = bytes([READY]) * 40        # another reader's run cached these
    fp.ra.prev_pos = 50 * PAGE                       # and this file's last read was elsewhere
    assert read_pages(fp, 1040 * PAGE, 4 * PAGE, 64 * MiB, RA) == [(1040, 1084)]  # 40 history + 4
    assert read_pages(fp, 3000 * PAGE, 4 * PAGE, 64 * MiB, RA) == [(3000, 3004)]  # no history: as is


def test_nothing_is_fetched_past_the_end_of_the_file() -> None:
    size = 3 * PAGE + 100
    fp = pages(size)
    assert read_pages(fp, 0, 10, size, RA) == [(0, 4)]
    assert read_pages(fp, size, 10, size, RA) == []
    assert read_pages(pages(0), 0, 10, 0, RA) == []


def test_a_page_brought_by_a_marks_readahead_is_not_read_again() -> None:
    """A read crossing a mark: the window it starts holds the next page, which then needs no readahead of its own."""
    fp = pages(64 * MiB)
    fp.state[163:179] = bytes([READY]) * 16           # a context window of 16 pages, its mark on the last one
    fp.marks = {178}
    fp.ra = RaState(163, 16, 1)
    runs = read_pages(fp, 175 * PAGE, 37_000, 64 * MiB, RA)
    assert runs == [(179, 243), (243, 499)], "the expected window, then the one its own mark starts"
