"""What the planner found while planning, counted: the rest of a plan file's `summary` after its totals.

Each part is counted by the step that knows it (the trace import, the predictor, the
structure reader, the scene reader, the trace store) and typed, so that the code reading a
count (`prewarm plan --summary`, the benches, the tests) names a field that exists, and a
misspelt one fails mypy rather than reading 0. `PlanStats.to_json` writes the keys the plan
file has always had, in the same order (contract 3); a part not counted (no scene input,
traces given rather than taken from the store) writes no keys.

A plan read back from its file has no `PlanStats` (None): its summary is the totals alone,
recomputed from its ranges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PlanStats", "PredictStats", "SceneStats", "StoreStats", "StructureStats", "TraceStats"]


@dataclass(frozen=True)
class TraceStats:
    """The traces planned from."""

    trace_records: int = 0
    trace_frames: int = 0
    trace_lines_skipped: int = 0
    """Lines the parser could not read (profiles from the store hold none)."""
    trace_calls_failed: int = 0
    """System calls that failed (an open of a file that is not there), not planned."""


@dataclass
class PredictStats:
    """The predictor's counts (`prewarm.plan.predict`), set as it goes."""

    sequences: int = 0
    """Per-frame file sequences found in the traces."""
    remapped_files: int = 0
    """Traced files re-published since (same identity, new offsets) whose reads were moved to the new file."""
    identity_unknown: int = 0
    """Traced files whose new version could not be matched to the traced one, left as traced."""
    shared_files: int = 0
    """Traced files outside any sequence: read by many frames, or by some."""
    changed_since_traced: int = 0
    tiled_files: int = 0
    """Traced files predicted by their tiles (textures, tiled EXRs)."""
    unseen_files: int = 0
    """Inputs no trace read: planned whole, or by head and tail."""
    unseen_tiled_files: int = 0
    unread_tiles: int = 0
    """UDIM tiles of a traced texture set that no traced frame read."""


@dataclass(frozen=True)
class StructureStats:
    """Files read by their structure (`prewarm.formats.reader`), and those left to the byte model."""

    structured_files: dict[str, int] = field(default_factory=dict)
    """Files read, by format."""
    structure_unreadable: int = 0
    structure_unreadable_files: dict[str, str] = field(default_factory=dict)
    """The first 20 unreadable files, by path: why."""


@dataclass
class SceneStats:
    """Scene inputs read for what they use (`prewarm.plan.scenes`), counted as they are read."""

    scenes: int = 0
    scene_layers: int = 0
    scene_inputs: int = 0
    """Inputs the scenes added to the manifest's."""
    scene_unresolved: int = 0
    scene_outside_roots: int = 0
    """Dependencies outside the allowed roots: counted, not planned or opened."""
    scene_files_planned: int = 0


@dataclass(frozen=True)
class StoreStats:
    """Traces taken from the trace store, when none were given."""

    traces_from_store: list[str] = field(default_factory=list)
    """The store's folders read."""
    traces_skipped: dict[str, Any] = field(default_factory=dict)
    """Folders whose profiles could not be read, and what was wrong; written only when there are some."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"traces_from_store": list(self.traces_from_store)}
        if self.traces_skipped:
            out["traces_skipped"] = dict(self.traces_skipped)
        return out


@dataclass(frozen=True)
class PlanStats:
    """Everything the planner counted, by part."""

    traces: TraceStats
    granule: int
    """The granule planned at (the plan's own `granule`), shown beside the counts it shaped."""
    predict: PredictStats
    structure: StructureStats | None = None
    """None: the plan was made without reading files' structure (a plan made by `plan.build` alone)."""
    scenes: SceneStats | None = None
    """None: the manifest names no scene input."""
    store: StoreStats | None = None
    """None: traces were given, or the store had none of the shot."""

    def to_json(self) -> dict[str, Any]:
        """The summary's keys after the totals, flat, in the order plan files have always had them."""
        out: dict[str, Any] = {**asdict(self.traces), "granule": self.granule, **asdict(self.predict)}
        if self.structure is not None:
            out.update(asdict(self.structure))
        if self.scenes is not None:
            out.update(asdict(self.scenes))
        if self.store is not None:
            out.update(self.store.to_json())
        return out
