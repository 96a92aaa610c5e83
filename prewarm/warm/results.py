"""What a warm found and did: findings, counters, claims. Plain values that travel as JSON.

Kept apart from the read loop so that job state, the timeline and reports can use
them without importing a thread pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo


class FindingKind(StrEnum):
    MISSING = "missing"
    DENIED = "denied"
    CHANGED = "changed"
    IO_ERROR = "io-error"
    OUTSIDE = "outside-roots"


@dataclass(frozen=True, slots=True)
class FileFinding:
    """What the studio should hear about one file before the render starts."""

    path: str
    kind: FindingKind
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind.value, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> FileFinding:
        return cls(data["path"], FindingKind(data["kind"]), data["detail"])


@dataclass
class WarmResult:
    """What one batch (or a whole embedded warm) did. Plain values: it travels as JSON."""

    bytes_done: int = 0
    bytes_skipped: int = 0
    bytes_failed: int = 0
    files_done: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    meta_done: int = 0
    meta_failed: int = 0
    reads: int = 0
    findings: dict[str, FileFinding] = field(default_factory=dict)
    failed: list[ByteRange] = field(default_factory=list)
    """Reads that failed and may succeed later (`prewarm warm --retry`); refused paths are not among them."""

    COUNTERS = ("bytes_done", "bytes_skipped", "bytes_failed", "files_done", "files_skipped",
                "files_failed", "meta_done", "meta_failed", "reads")

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.COUNTERS}

    def snapshot(self, in_flight: int) -> Snapshot:
        return Snapshot(self.bytes_done, self.counters(), in_flight)

    def to_json(self) -> dict[str, Any]:
        return {**self.counters(),
                "findings": [f.to_json() for f in self.findings.values()],
                "failed": [[r.path, r.offset, r.length] for r in self.failed]}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Progress of a running batch at one moment: what progress callbacks get, never the live result."""

    bytes_done: int
    counters: Mapping[str, int]
    in_flight: int
    """Operations in flight now: the report's concurrency series, not a counter."""


class Claim(StrEnum):
    READ = "read"
    SKIP = "skip"
    WAIT = "wait"


class Dedupe(Protocol):
    """Cross-job memory of what the gateway already holds, with claims so two jobs never read the same bytes."""

    def claim(self, ident: FileInfo, piece: ByteRange) -> bool:
        """True: read it (now claimed by us). False: warmed recently, skip. May wait for another reader."""

    def claim_now(self, items: list[tuple[FileInfo, ByteRange]]) -> list[Claim]:
        """Claim many pieces in one round trip, without waiting: `WAIT` ones go through `claim` later."""

    def warmed(self, ident: FileInfo, piece: ByteRange) -> None: ...

    def release(self, ident: FileInfo, piece: ByteRange) -> None: ...

    def flush(self) -> None:
        """Write what `warmed` may have buffered: called once the batch's reads are over."""
