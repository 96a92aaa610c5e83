"""Every core when there is enough work: the one rule for how many worker processes an import, a
profile rebuild or a planner's trace load starts, and the one kind of pool they start.

Each caller names the amount of trace data below which starting interpreters costs more than
parsing in its own process (`PARALLEL_BYTES` of `prewarm.traces.store` and `prewarm.flow.planning`).
The pool spawns fresh interpreters rather than forking, as each caller's own pool did: a fork of a
process that runs threads can inherit a lock another thread held. (The planner's `forked` is the
deliberate exception: its children need the planner's memory, copied on write.)
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

MAX_WORKERS = 8
"""Most worker processes one import or load starts (the cap each caller had)."""


def workers_for(items: int, size: int, min_bytes: int, workers: int | None = None) -> int:
    """How many processes to spread `items` (`size` bytes in all) over: `workers` if given, else one per
    core (at most `MAX_WORKERS`, at most one per item); 1 (this process) when fewer than 2 or less than
    `min_bytes` to read."""
    n = workers or min(items, os.cpu_count() or 1, MAX_WORKERS)
    return n if n >= 2 and size >= min_bytes else 1


def pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` fresh interpreters (spawned, not forked)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
