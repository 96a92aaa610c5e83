"""A warm job as data: its state machine and the report both modes print. Pure.

    queued ──first batch starts──▶ running ──every batch recorded──▶ done | partial | failed
       └───────────────┴──── prewarm cancel ────▶ cancelled

`done`: everything planned was read or already warm. `partial`: some files or
ranges failed (the findings say which, `--retry ID` re-reads the failed ranges).
`failed`: nothing could be warmed. Embedded warms and Redis-backed warms produce
the same `JobInfo`, so reports and exit codes do not depend on the mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from prewarm.warm.results import FileFinding, WarmResult
from prewarm.warm.timeline import Point


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED)


FAILURE_COUNTERS = ("bytes_failed", "files_failed", "meta_failed", "inputs_missing")
"""Any of these above zero, or any finding, and the job did not fully succeed. A missing
input counts: the render will miss it as surely as a file that failed to warm."""

PROGRESS_COUNTERS = ("bytes_done", "bytes_skipped", "meta_done")
PLANNED_COUNTERS = ("bytes_planned", "meta_planned")
"""With work planned and no progress at all, the job failed: nothing could be warmed."""

JOB_COUNTERS = (*WarmResult.COUNTERS, "inputs_missing")
"""What a job counts: its batches' counters, and the plan's missing inputs."""


def final_state(numbers: Mapping[str, int], findings: int) -> JobState:
    """The state a job ends in once every batch is recorded: the one rule.

    `numbers` holds the job's counters and planned totals. Redis-backed jobs end in a
    Lua script (`prewarm.state.jobs`) that is handed these three lists and applies
    exactly this.
    """
    if not findings and not any(numbers.get(k, 0) for k in FAILURE_COUNTERS):
        return JobState.DONE
    if any(numbers.get(k, 0) for k in PLANNED_COUNTERS) and not any(numbers.get(k, 0) for k in PROGRESS_COUNTERS):
        return JobState.FAILED
    return JobState.PARTIAL


@dataclass
class JobInfo:
    id: str
    name: str
    gateway: str
    state: JobState
    created: float
    started: float | None = None
    finished: float | None = None
    priority: int = 0
    start: float | None = None
    batches: int = 0
    batches_done: int = 0
    bytes_planned: int = 0
    files_planned: int = 0
    meta_planned: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JOB_COUNTERS, 0))
    findings: list[FileFinding] = field(default_factory=list)
    failed_ranges: int = 0
    retry_of: str | None = None
    bytes_read_live: int = 0
    """Bytes read so far as running batches report them, about once a second: progress moves
    during a batch, not only when one ends (the counters are recorded when it ends)."""
    samples: list[Point] = field(default_factory=list)
    """Bytes and reads in flight per second (warm/timeline.py): filled by the embedded mode; from Redis on request."""
    link: dict[str, float] | None = None
    """What the in-flight window measured (`window.LinkEstimate.to_json`): filled by the embedded mode."""
    overdue: list[int] = field(default_factory=list)
    """Batches sent longer ago than the broker's visibility timeout and not finished (filled by `prewarm status`)."""

    def progress(self) -> tuple[int, int, int]:
        """(bytes read, bytes dealt with, files dealt with) now: read, already warm or failed.

        Bytes read take the live figure while batches run; it never exceeds what is planned.
        """
        c = self.counters
        read = max(c.get("bytes_done", 0), self.bytes_read_live)
        moved = min(read + c.get("bytes_skipped", 0) + c.get("bytes_failed", 0), max(self.bytes_planned, 0))
        files = c.get("files_done", 0) + c.get("files_skipped", 0) + c.get("files_failed", 0)
        return read, moved, files

    def numbers(self) -> dict[str, int]:
        """Counters and planned totals: what `final_state` judges."""
        return {**self.counters, "bytes_planned": self.bytes_planned, "meta_planned": self.meta_planned}

    @property
    def elapsed(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["findings"] = [f.to_json() for f in self.findings]
        return d


def summary_lines(info: JobInfo, limit: int = 20) -> list[str]:
    """The human report: totals, then findings grouped by kind (what to fix before the render)."""
    c = info.counters
    took = f" in {info.elapsed:.2f}s" if info.elapsed is not None else ""
    lines = [
        f"warm {info.id} ({info.name}) {info.state.value}{took}: "
        f"{_mb(info.progress()[0])} read, {_mb(c['bytes_skipped'])} already warm, {_mb(c['bytes_failed'])} failed "
        f"of {_mb(info.bytes_planned)}; files {c['files_done']} warmed, {c['files_skipped']} already warm, "
        f"{c['files_failed']} failed of {info.files_planned}; metadata {c['meta_done']} ok, {c['meta_failed']} failed"]
    if info.link:
        k = info.link
        lines.append(f"  in flight: {k['in_flight']:.0f} (at most {k['max_in_flight']:.0f}), sized to the link: "
                     f"RTT {k['rtt_s'] * 1e3:.2f} ms x {k['rate_bps'] / 1e6:.1f} MB/s / "
                     f"{k['read_bytes'] / 1024:.0f} KiB a read = {k['bdp_reads']:.1f} reads")
    if c.get("inputs_missing"):
        lines.append(f"  missing inputs: {c['inputs_missing']} (listed in the plan's `missing`): "
                     "the render will miss them")
    by_kind: dict[str, list[FileFinding]] = {}
    for f in info.findings:
        by_kind.setdefault(f.kind.value, []).append(f)
    for kind, items in sorted(by_kind.items()):
        lines.append(f"  {kind}: {len(items)} file(s)")
        lines.extend(f"    {f.path}: {f.detail}" for f in items[:limit])
        if len(items) > limit:
            lines.append(f"    ... and {len(items) - limit} more")
    if info.overdue and not info.state.final:
        shown = ", ".join(map(str, info.overdue[:10])) + (" ..." if len(info.overdue) > 10 else "")
        lines.append(f"  overdue: {len(info.overdue)} batch(es) ({shown}) sent longer ago than the visibility "
                     "timeout and not finished: their worker died or is stuck; the broker hands them to "
                     "another worker")
    if info.failed_ranges and info.state is JobState.PARTIAL:
        lines.append(f"  {info.failed_ranges} failed range(s): re-run them with `prewarm warm --retry {info.id}`")
    return lines


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
