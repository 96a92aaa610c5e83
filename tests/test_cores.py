"""How many processes an import or a trace load spreads over (`prewarm.traces.cores`)."""

from __future__ import annotations

from prewarm.traces.cores import MAX_WORKERS, workers_for


def test_little_work_stays_in_this_process_and_much_work_takes_at_most_one_process_per_item() -> None:
    assert workers_for(items=50, size=10, min_bytes=100, workers=4) == 1
    assert workers_for(items=50, size=1000, min_bytes=100, workers=4) == 4
    assert workers_for(items=1, size=1000, min_bytes=100) == 1
    assert 1 <= workers_for(items=3, size=1000, min_bytes=100) <= 3
    assert workers_for(items=10_000, size=1000, min_bytes=100) <= MAX_WORKERS
