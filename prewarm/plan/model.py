"""The plan: what to warm, in which order, and what the planner found. A value with a JSON form.

A plan leaves the planner as JSON (contract 3) and reaches workers on other hosts,
so `Plan.from_json` trusts nothing: a corrupt or hostile plan (negative offsets,
relative paths, `..`, absurd sizes, nesting a thousand deep, more ranges, files or
gateways than `prewarm.plan.limits` allows, ranges past a file's planned end) is
refused with a message naming the field. `Plan.from_events` does the same from a
stream of parser events (ijson), so a plan file is never held whole in memory: its
ranges go straight into a columnar `RangeTable`. Whether a path is *allowed*
(inside the configured roots) is for the warm side to decide against its own
settings; here only the shape and the limits are checked (`limit_problem`, which
the warm side's `check_plan` applies to plans made in-process too).

Its parts: the records it holds (`prewarm.plan.records`), its ranges as columns
(`prewarm.plan.rangetable`), and the reader of its JSON form (`prewarm.plan.planfile`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prewarm.plan import limits
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import (
    MAX_OFFSET,
    MAX_TEXT,
    FileInfo,
    Finding,
    MetaOp,
    Origin,
    PlannedRange,
    path_problem,
    shown,
)
from prewarm.plan.stats import PlanStats

__all__ = ["DEFAULT_GRANULE", "FIELDS_LIMITS", "FORMAT", "Plan", "PlanTotals"]

FORMAT = "prewarm.plan/1"

DEFAULT_GRANULE = 4096
"""Ranges are widened to whole granules. The one default: the site's `granule` setting starts from it.
4 KiB pages, what a gateway fetches: `rsize=1M` is its largest READ, not a fetch unit; a standalone
37 KB tile read costs about 40 KB of WAN, kept in 4 KiB cache blocks (domain.md), so 1 MiB granules
around sparse tile reads cost about 4x what a perfect plan needs."""


FIELDS_LIMITS = {"ranges": limits.MAX_RANGES, "dropped": limits.MAX_RANGES, "frames": limits.MAX_FRAMES,
                 "files": limits.MAX_FILES, "metadata": limits.MAX_METADATA, "missing": limits.MAX_FINDINGS + 1,
                 "gateways": limits.MAX_GATEWAYS, "inputs": limits.MAX_FILES}
"""Most items each top-level field of a plan may hold."""


@dataclass(frozen=True)
class PlanTotals:
    """What a plan holds, counted: typed for the code that reads them (the summary table, the service's
    answer), and the first keys of the plan file's `summary` in this order (contract 3), before the
    planner's `stats`."""

    bytes: int
    files: int
    """Files with a planned range."""
    ranges: int
    frames: int
    whole_file_bytes: int
    """Those files' whole sizes: what warming them whole would cost."""
    metadata_ops: int
    missing: int
    """Findings, a folded one counting each path (optional ones too; `Plan.missing_inputs` leaves them out)."""
    dropped_bytes: int
    dropped_ranges: int
    bytes_by_reason: dict[str, int]
    """Planned bytes by why they were planned, sorted by reason."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    job: str
    frames: tuple[int, ...]
    ranges: Sequence[PlannedRange]
    """In warm order; held as a `RangeTable` whatever sequence was given."""
    metadata: tuple[MetaOp, ...] = ()
    files: Mapping[str, FileInfo] = field(default_factory=dict)
    missing: tuple[Finding, ...] = ()
    dropped: Sequence[PlannedRange] = ()
    granule: int = DEFAULT_GRANULE
    created: float | None = None
    """Epoch seconds when it was planned (the caller's clock); None in hand-written plans."""
    start: float | None = None
    priority: int = 0
    gateways: tuple[str, ...] = ()
    """Gateway nodes whose caches to warm (a queue each); empty: the configured default."""
    stats: PlanStats | None = None
    """What the planner counted (trace records used, frames seen, ...), shown in the summary;
    None in a plan read from its file or written by hand."""
    origins: Mapping[str, Origin] = field(default_factory=dict)
    """Files a scene input brought in (`prewarm.plan.scenes`), by path; written into their `files` entries."""
    inputs: tuple[str, ...] = ()
    """The manifest's inputs as it writes them (`fluid.####.vdb`, `diffuse.<UDIM>.tx`, a folder), so
    what reads the plan (the report's coverage) can name a file's input as the manifest does. Empty
    in plans written before it was kept: readers fold file names themselves."""
    input_of: Mapping[str, int] = field(default_factory=dict)
    """Each planned file's input, an index into `inputs`, written as its `files` entry's `input`;
    files only traces named (outside every input) have none."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", RangeTable.of(self.ranges))
        object.__setattr__(self, "dropped", RangeTable.of(self.dropped))

    @property
    def table(self) -> RangeTable:
        """`ranges` as the table it is."""
        assert isinstance(self.ranges, RangeTable)
        return self.ranges

    @property
    def dropped_table(self) -> RangeTable:
        """`dropped` as the table it is."""
        assert isinstance(self.dropped, RangeTable)
        return self.dropped

    @property
    def bytes(self) -> int:
        return self.table.bytes

    @property
    def missing_inputs(self) -> int:
        """Inputs the render needs that are not there (optional ones do not count; a folded finding counts each)."""
        return sum(m.count for m in self.missing if not m.optional)

    def totals(self) -> PlanTotals:
        planned_files = self.table.paths()
        dropped = RangeTable.of(self.dropped)
        return PlanTotals(
            bytes=self.bytes,
            files=len(planned_files),
            ranges=len(self.ranges),
            frames=len(self.frames),
            whole_file_bytes=sum(self.files[p].size for p in planned_files if p in self.files),
            metadata_ops=len(self.metadata),
            missing=sum(m.count for m in self.missing),
            dropped_bytes=dropped.bytes,
            dropped_ranges=len(dropped),
            bytes_by_reason=dict(sorted(self.table.bytes_by_reason().items())),
        )

    def summary(self) -> dict[str, Any]:
        """The plan file's `summary`: the totals, then the planner's statistics."""
        return {**self.totals().to_json(), **(self.stats.to_json() if self.stats is not None else {})}

    def to_json(self, ranges: bool = True) -> dict[str, Any]:
        """The plan as JSON data (contract 3); `ranges=False` leaves `ranges` and `dropped` empty."""
        return {
            "format": FORMAT,
            "job": self.job,
            "frames": list(self.frames),
            "created": self.created,
            "start": self.start,
            "priority": self.priority,
            "gateways": list(self.gateways),
            "granule": self.granule,
            "ranges": [r.to_json() for r in self.ranges] if ranges else [],
            "metadata": [{"op": m.op.value, "path": m.path} for m in self.metadata],
            "inputs": list(self.inputs),
            "files": {p: self._file_json(p, f) for p, f in sorted(self.files.items())},
            "missing": [m.to_json() for m in self.missing],
            "dropped": [r.to_json() for r in self.dropped] if ranges else [],
            "summary": self.summary(),
        }

    def json_text(self) -> Iterator[str]:
        """`to_json`'s document as text, a range a line, made piece by piece: a million-range
        plan is written, stored or hashed without a million dicts existing at once."""
        yield "{"
        for i, (key, value) in enumerate(self.to_json(ranges=False).items()):
            yield f'{"," if i else ""}\n{json.dumps(key)}: '
            if key in ("ranges", "dropped"):
                rows = RangeTable.of(self.ranges if key == "ranges" else self.dropped)
                yield "["
                yield from self._rows(rows)
                yield "\n]" if len(rows) else "]"
            else:
                yield json.dumps(value)
        yield "\n}\n"

    @staticmethod
    def _rows(rows: RangeTable) -> Iterator[str]:
        first = True
        for row in rows.json_rows():
            yield f"\n {row}" if first else f",\n {row}"
            first = False

    def _file_json(self, path: str, info: FileInfo) -> dict[str, Any]:
        """`input` for files of a manifest input, `scene` and `layer` only for files a scene brought in:
        older readers ignore them."""
        out: dict[str, Any] = {"size": info.size, "mtime": info.mtime}
        if path in self.input_of:
            out["input"] = self.input_of[path]
        origin = self.origins.get(path)
        if origin is not None:
            out.update(scene=origin.scene, layer=origin.layer)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "plan") -> Plan:
        """Validate and load a plan written by `to_json` (or by hand, or by an attacker)."""
        from prewarm.plan.planfile import Validator  # the reader builds Plans: imported when called

        v = Validator(where)
        obj = v.mapping(data, "")
        for key, most in FIELDS_LIMITS.items():
            value = obj.get(key)
            if isinstance(value, list | Mapping) and len(value) > most:
                v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")
        tables = {}
        for key in ("ranges", "dropped"):
            table = tables[key] = RangeTable()
            items = obj.get(key) if key == "ranges" or key in obj else []
            for i, r in enumerate(v.array(items, key)):
                v.add_range(table, r, f"{key}[{i}]")
        return v.plan(obj, tables["ranges"], tables["dropped"])

    @classmethod
    def from_events(cls, events: Iterable[tuple[str, str, Any]], where: str = "plan") -> Plan:
        """Validate and load a plan from `(prefix, event, value)` parser events (`ijson.parse`).

        Ranges are validated and stored one at a time, so memory follows the table, not
        the text; every field is counted while it is read, so an oversized or deeply
        nested plan is refused as soon as it crosses the limit.
        """
        from prewarm.plan.planfile import EventLoader, Validator

        return EventLoader(Validator(where)).load(iter(events))

    def limit_problem(self) -> tuple[str, str] | None:
        """(field, what is wrong) when this plan asks for more than the limits allow or holds a
        path or range no loaded plan may, else None.

        The one check of a whole plan: `from_json` and `from_events` end with it, and the
        planner's output passes it before it is written, so the planner never writes a plan
        the warm side would refuse (a negative offset from a hostile trace line, a name that
        is not UTF-8).
        """
        counts = {"ranges": len(self.ranges), "dropped": len(self.dropped), "frames": len(self.frames),
                  "files": len(self.files), "metadata": len(self.metadata), "missing": len(self.missing),
                  "gateways": len(self.gateways), "inputs": len(self.inputs)}
        for key, n in counts.items():
            if n > FIELDS_LIMITS[key]:
                return key, f"{n:,} items, more than {FIELDS_LIMITS[key]:,} (see prewarm.plan.limits)"
        if self.bytes > limits.MAX_PLAN_BYTES:
            return "ranges", f"asks for {self.bytes:,} bytes, more than {limits.MAX_PLAN_BYTES:,} (16 TiB)"
        problem = limits.granule_problem(self.granule)
        if problem:
            return "granule", problem
        return self._paths_problem() or self._spans_problem() or self._inputs_problem()

    def _paths_problem(self) -> tuple[str, str] | None:
        """The first path of the plan `path_problem` refuses, as (field, what is wrong)."""
        for key, table in (("ranges", self.table), ("dropped", self.dropped_table)):
            for path in table.paths():
                problem = path_problem(path)
                if problem:
                    at = next(j for j, r in enumerate(table.spans()) if r[0] == path)
                    return f"{key}[{at}].path", problem
        for path in self.files:
            problem = path_problem(path)
            if problem:
                return f"files[{shown(path)[:200]!r}]", problem
        for i, m in enumerate(self.metadata):
            problem = path_problem(m.path)
            if problem:
                return f"metadata[{i}].path", problem
        return None

    def _inputs_problem(self) -> tuple[str, str] | None:
        """The first input that is no text, or file whose `input` names no input of the plan (a file no
        longer in `files`, as a metadata-only copy of a plan leaves them, is not written: harmless)."""
        for i, text in enumerate(self.inputs):
            if not text or len(text) > MAX_TEXT:
                return f"inputs[{i}]", f"expected a non-empty string of at most {MAX_TEXT} characters"
        for path, i in self.input_of.items():
            if not 0 <= i < len(self.inputs):
                return f"files[{shown(path)[:200]!r}].input", f"{i} is not the index of one of the plan's inputs"
        return None

    def _spans_problem(self) -> tuple[str, str] | None:
        """The first range outside a file: a negative offset, an empty range, one past the planned size."""
        for key, table in (("ranges", self.table), ("dropped", self.dropped_table)):
            for i, (path, offset, length) in enumerate(table.spans()):
                if offset < 0 or length < 1 or offset + length > MAX_OFFSET:
                    return f"{key}[{i}]", f"offset {offset} and length {length}: not a range of a file"
                info = self.files.get(path)
                if key == "ranges" and info is not None and offset + length > info.size:
                    return f"{key}[{i}]", f"ends at {offset + length}, beyond the file's planned size {info.size}"
        for i, g in enumerate(self.gateways):
            problem = limits.gateway_problem(g)
            if problem:
                return f"gateways[{i}]", problem
        return None
