"""Wiring of the warm loop to its two homes: in-process (embedded) and Redis + Celery.

The loop (`prewarm.warm`) is the same in both; what differs is where batches come
from, where results go and what enforces the shared rate. This module owns that
wiring and the checks that guard it: a plan is refused here, before any job exists,
if it names paths outside the allowed roots or asks for absurd amounts of work.
Celery itself stays out: the task passes in how to send a batch.
"""

from __future__ import annotations

from prewarm.errors import ConfigError, PlanFileError
from prewarm.plan.model import Plan
from prewarm.site.guard import inside
from prewarm.site.settings import Settings

MAX_PIECES = 20_000_000
"""Reads one plan may ask for (20 TB at 1 MiB): more is a corrupt or hostile plan, refused before any work."""


def check_plan(plan: Plan, settings: Settings, where: str, need_roots: bool = True) -> None:
    """Refuse a plan that reads outside the allowed roots or asks for an absurd number of reads.

    `need_roots=False` (a submitter without roots configured): the size checks still apply,
    the roots are then enforced by each worker against its own settings.
    """
    roots = settings.allowed_roots()
    if need_roots and not roots:
        raise ConfigError("roots", "no allowed studio roots: set `roots` or `path_map` in the config, "
                                   "or pass --local STUDIO=MOUNT")
    for i, r in enumerate(plan.ranges):
        if roots and not inside(r.path, roots):
            raise PlanFileError(f"{where}: ranges[{i}].path", f"{r.path!r} is outside the allowed roots {list(roots)}")
        info = plan.files.get(r.path)
        if info is not None and r.end > info.size:
            raise PlanFileError(f"{where}: ranges[{i}]", f"ends at {r.end}, beyond the file's planned size {info.size}")
    for i, m in enumerate(plan.metadata):
        if roots and not inside(m.path, roots):
            raise PlanFileError(f"{where}: metadata[{i}].path", f"{m.path!r} is outside the allowed roots {list(roots)}")
    count = len(plan.ranges) + sum(r.length for r in plan.ranges) // settings.granule
    if count > MAX_PIECES:
        raise PlanFileError(f"{where}: ranges", f"asks for about {count} reads (limit {MAX_PIECES})")




# embedded




# with Redis and workers










