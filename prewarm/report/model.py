"""The warm report as typed values: what `prewarm.report.build` makes and the page, the text and the JSON read.

The code that shows a report (`prewarm.report.html`, `prewarm report`'s lines) reads fields, so a
renamed or misspelt one fails mypy instead of a KeyError on a user's report. `Report.to_json` is
what `prewarm report --json`, `--report FILE.json` and the service's report route give: the same
keys, in the same order, as before these types existed; a part that does not apply (a `Tally`'s
`meta` for skipped files, readiness without a plan) writes no keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prewarm.plan.evaluate import Evaluation

__all__ = ["CoverageRow", "JobHead", "Problem", "Readiness", "Report", "Retry", "Sample", "Summary", "Tally",
           "Timing"]


@dataclass(frozen=True)
class JobHead:
    """Which warm job the report is of, and where it stands."""

    id: str
    name: str
    gateway: str
    state: str
    created: float | None
    started: float | None
    finished: float | None
    retry_of: str | None
    batches: int
    batches_done: int


@dataclass(frozen=True)
class Tally:
    """Bytes and files of one line of the summary; `meta`, `inputs` and `ranges` only on the lines they belong to."""

    bytes: int
    files: int
    meta: int | None = None
    """Metadata operations (planned, warmed, failed)."""
    inputs: int | None = None
    """Inputs the plan found absent (missing): counted in `files`, with no bytes."""
    ranges: int | None = None
    """Ranges that failed with an I/O error (failed): what `--retry` re-reads."""

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Summary:
    planned: Tally
    warmed: Tally
    skipped: Tally
    """Already warm: skipped by the cross-job dedupe."""
    missing: Tally
    failed: Tally

    def lines(self) -> list[tuple[str, Tally]]:
        """The summary's lines in the order `prewarm report` prints them."""
        return [("planned", self.planned), ("warmed", self.warmed), ("skipped", self.skipped),
                ("missing", self.missing), ("failed", self.failed)]

    def to_json(self) -> dict[str, Any]:
        return {"planned": self.planned.to_json(), "warmed": self.warmed.to_json(),
                "skipped": self.skipped.to_json(), "missing": self.missing.to_json(),
                "failed": self.failed.to_json()}


@dataclass(frozen=True)
class Timing:
    elapsed_s: float | None
    ideal_s: float | None
    """Planned bytes / the throttle: the soonest the warm could end; None without a throttle."""
    throttle_bps: int | None
    rate_bps: float | None
    files_per_s: float | None
    efficiency: float | None
    """ideal / elapsed."""
    link: dict[str, float] | None
    """How the reads in flight were sized to the link (`prewarm.warm.window`), when measured."""


@dataclass(frozen=True)
class Readiness:
    """Whether what the first frame needs is warm, and when it was; all None without a plan of frames."""

    first_frame: int | None = None
    ready: bool | None = None
    ready_at: float | None = None
    start: float | None = None
    margin_s: float | None = None
    """`start` - `ready_at`: negative when the data was warm only after the frames started."""
    share_of_plan: float = 0.0
    blocked_by: list[str] = field(default_factory=list)
    """Files the first frame reads that failed (the first 20)."""
    missing_inputs: list[str] = field(default_factory=list)
    """Inputs the first frame reads that do not exist (the first 20)."""
    late: bool | None = None

    def to_json(self) -> dict[str, Any]:
        head = {"first_frame": self.first_frame, "ready": self.ready, "ready_at": self.ready_at,
                "start": self.start, "margin_s": self.margin_s}
        if self.first_frame is None:
            return head
        return {**head, "share_of_plan": self.share_of_plan, "blocked_by": list(self.blocked_by),
                "missing_inputs": list(self.missing_inputs), "late": self.late}


@dataclass(frozen=True)
class Sample:
    """One point of the throughput plot."""

    t: float
    """Seconds since the warm started."""
    bytes_per_s: float
    in_flight: float


@dataclass(frozen=True)
class CoverageRow:
    """One input of the coverage chart (a manifest input, a file, or the sum of the rest)."""

    path: str
    planned: int
    warmed: int
    files: int
    file_bytes: int
    """The files' whole sizes."""
    planned_share: float
    saved_bytes: int
    """What warming the files whole would have cost more."""

    @classmethod
    def of(cls, path: str, planned: int, warmed: int, files: int, whole: int) -> CoverageRow:
        return cls(path, planned, warmed, files, whole, planned / whole if whole else 1.0, max(whole - planned, 0))


@dataclass(frozen=True)
class Problem:
    """A file the warm found missing, denied, refused or changed, or an input the plan found absent."""

    path: str
    kind: str
    """A `prewarm.warm.results.FindingKind` value, or `missing-input`."""
    detail: str


@dataclass(frozen=True)
class Retry:
    command: str | None
    """What re-reads just the failed ranges; None when none failed."""
    ranges: int


@dataclass(frozen=True)
class Report:
    job: JobHead
    summary: Summary
    timing: Timing
    readiness: Readiness
    series: list[Sample]
    coverage: list[CoverageRow]
    problems: list[Problem]
    retry: Retry
    evaluation: Evaluation | None
    """`prewarm evaluate`'s result for the job, as it stored it; None before it ran."""

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (`prewarm report --json`, the service's report route)."""
        return {"job": asdict(self.job), "summary": self.summary.to_json(), "timing": asdict(self.timing),
                "readiness": self.readiness.to_json(), "series": [asdict(s) for s in self.series],
                "coverage": [asdict(r) for r in self.coverage], "problems": [asdict(p) for p in self.problems],
                "retry": asdict(self.retry),
                "evaluation": None if self.evaluation is None else self.evaluation.to_json()}
