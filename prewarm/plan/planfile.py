"""Reading a plan file: JSON values or ijson parser events into a `Plan`, trusting nothing.

`Plan.from_json` and `Plan.from_events` (`prewarm.plan.model`) call these; every shape error is a
PlanFileError naming the field, and ranges go straight into `RangeTable`s as they are read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from prewarm.errors import PlanFileError
from prewarm.plan import limits
from prewarm.plan.access import Op
from prewarm.plan.model import DEFAULT_GRANULE, FIELDS_LIMITS, FORMAT, Plan
from prewarm.plan.rangetable import RangeTable
from prewarm.plan.records import (
    MAX_OFFSET,
    MAX_TEXT,
    FileInfo,
    Finding,
    MetaOp,
    Origin,
    PlannedRange,
    Reason,
    path_problem,
)


class EventLoader:
    """Builds a plan from parser events: ranges straight into tables, other fields as small values."""

    def __init__(self, v: Validator) -> None:
        self.v = v
        self.rest: dict[str, Any] = {}
        self.tables = {"ranges": RangeTable(), "dropped": RangeTable()}

    def load(self, events: Iterator[tuple[str, str, Any]]) -> Plan:
        v = self.v
        first = next(events, None)
        if first is None or first[1] != "start_map":
            v.fail("", "expected an object")
        for prefix, event, value in events:
            if event == "end_map" and prefix == "":
                break
            if event != "map_key":
                v.fail("", "expected an object")
            if value in self.rest or (value in self.tables and len(self.tables[value])):
                v.fail(value, "given twice")
            self.field(events, value)
        for key in ("ranges", "dropped"):
            if (key in self.rest or key == "ranges") and not isinstance(self.rest.get(key), list):
                v.fail(key, "expected a list")
        return v.plan(self.rest, self.tables["ranges"], self.tables["dropped"])

    def field(self, events: Iterator[tuple[str, str, Any]], key: str) -> None:
        """One top-level field: a list of ranges streamed into its table, anything else built whole."""
        _, event, value = next(events)
        most = FIELDS_LIMITS.get(key, 0)
        if key in self.tables and event == "start_array":
            self.rest[key] = []
            for i, item in enumerate(self.items(events, key)):
                if i >= most:
                    self.v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")
                self.v.add_range(self.tables[key], item, f"{key}[{i}]")
            return
        if key == "files" and event == "start_map":
            self.rest[key] = self.files(events)
            return
        self.rest[key] = self.value(events, key, event, value, most)

    def files(self, events: Iterator[tuple[str, str, Any]]) -> dict[str, FileInfo]:
        """`files` entry by entry into FileInfo values, each path shared with the ranges' table."""
        out: dict[str, FileInfo] = {}
        table = self.tables["ranges"]
        while True:
            _, event, value = next(events)
            if event == "end_map":
                return out
            if len(out) >= limits.MAX_FILES:
                self.v.fail("files", f"more than {limits.MAX_FILES:,} items (see prewarm.plan.limits)")
            path = table.canonical(value)
            _, event, first = next(events)
            out.update(self.v.files({path: self.value(events, "files", event, first, 0)}))

    def items(self, events: Iterator[tuple[str, str, Any]], key: str) -> Iterator[Any]:
        while True:
            _, event, value = next(events)
            if event == "end_array":
                return
            yield self.value(events, key, event, value, 0)

    def value(self, events: Iterator[tuple[str, str, Any]], key: str, event: str, value: Any, most: int) -> Any:
        """A whole value from its first event; containers at most `limits.MAX_NESTING` deep and,
        at the top (`most` > 0), with at most `most` items."""
        if event not in ("start_map", "start_array"):
            return value
        stack: list[Any] = [{} if event == "start_map" else []]
        keys: list[str | None] = [None]
        while True:
            _, event, value = next(events)
            if event in ("end_map", "end_array"):
                done = stack.pop()
                keys.pop()
                if not stack:
                    return done
                self._put(stack, keys, done)
            elif event == "map_key":
                keys[-1] = value
            elif event in ("start_map", "start_array"):
                if len(stack) >= limits.MAX_NESTING:
                    self.v.fail(key, f"nested deeper than {limits.MAX_NESTING} levels")
                stack.append({} if event == "start_map" else [])
                keys.append(None)
            else:
                self._put(stack, keys, value)
            if most and len(stack) == 1 and len(stack[0]) > most:
                self.v.fail(key, f"more than {most:,} items (see prewarm.plan.limits)")

    @staticmethod
    def _put(stack: list[Any], keys: list[str | None], value: Any) -> None:
        top = stack[-1]
        if isinstance(top, list):
            top.append(value)
        else:
            top[keys[-1]] = value


class Validator:
    """Turns shape errors into PlanFileError naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.origins: dict[str, Origin] = {}
        """Scene origins of the files validated so far (`files` entries with `scene`)."""
        self.input_of: dict[str, int] = {}
        """Inputs of the files validated so far (`files` entries with `input`), checked against `inputs` by the plan."""

    def fail(self, fld: str, message: str) -> NoReturn:
        raise PlanFileError(f"{self.where}: {fld}" if fld else self.where, message)

    def mapping(self, value: Any, fld: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(fld, "expected an object")
        return value

    def array(self, value: Any, fld: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(fld, "expected a list")
        return value

    def string(self, value: Any, fld: str) -> str:
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            self.fail(fld, f"expected a non-empty string of at most {MAX_TEXT} characters")
        return value

    def integer(self, value: Any, fld: str, lo: int = 0, hi: int = MAX_OFFSET) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(fld, f"expected an integer from {lo:,} to {hi:,}")
        return value

    def boolean(self, value: Any, fld: str) -> bool:
        if not isinstance(value, bool):
            self.fail(fld, "expected true or false")
        return value

    def number(self, value: Any, fld: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not -MAX_OFFSET <= value <= MAX_OFFSET:
            self.fail(fld, "expected a number")
        return float(value)

    def path(self, value: Any, fld: str) -> str:
        p = self.string(value, fld)
        problem = path_problem(p)
        if problem:
            self.fail(fld, problem)
        return p

    def reason(self, value: Any, fld: str) -> Reason:
        try:
            return Reason(value)
        except ValueError:
            self.fail(fld, f"unknown reason {value!r} (one of {', '.join(r.value for r in Reason)})")

    def planned_range(self, value: Any, fld: str) -> PlannedRange:
        r = self.mapping(value, fld)
        frame = r.get("frame")
        return PlannedRange(
            path=self.path(r.get("path"), f"{fld}.path"),
            offset=self.integer(r.get("offset"), f"{fld}.offset"),
            length=self.integer(r.get("length"), f"{fld}.length", lo=1),
            frame=None if frame is None else self.integer(frame, f"{fld}.frame", lo=-limits.MAX_FRAME_NUMBER,
                                                          hi=limits.MAX_FRAME_NUMBER),
            frames=self.integer(r.get("frames", 1), f"{fld}.frames"),
            reason=self.reason(r.get("reason", Reason.TRACE.value), f"{fld}.reason"),
        )

    def add_range(self, table: RangeTable, value: Any, fld: str) -> None:
        r = self.planned_range(value, fld)
        if r.end > MAX_OFFSET:
            self.fail(fld, f"ends at {r.end}, beyond any file")
        table.add(r.path, r.offset, r.length, r.frame, r.frames, r.reason)

    def plan(self, obj: Mapping[str, Any], ranges: RangeTable, dropped: RangeTable) -> Plan:
        """The plan of a top-level object whose ranges are already in tables."""
        fmt = obj.get("format", FORMAT)
        if fmt != FORMAT:
            self.fail("format", f"unsupported plan format {str(fmt)[:40]!r} (expected {FORMAT!r})")
        job = self.string(obj.get("job"), "job")
        frames = tuple(self.integer(f, f"frames[{i}]", lo=-limits.MAX_FRAME_NUMBER, hi=limits.MAX_FRAME_NUMBER)
                       for i, f in enumerate(self.array(obj.get("frames", []), "frames")))
        start = obj.get("start")
        gateways = tuple(self.string(g, f"gateways[{i}]")
                         for i, g in enumerate(self.array(obj.get("gateways", []), "gateways")))
        plan = Plan(
            job=job, frames=frames, ranges=ranges, metadata=self.metadata(obj.get("metadata", [])),
            files=self.files(obj.get("files", {})), missing=self.missing(obj.get("missing", [])), dropped=dropped,
            granule=self.integer(obj.get("granule", DEFAULT_GRANULE), "granule", lo=1),
            created=None if obj.get("created") is None else self.number(obj["created"], "created"),
            start=None if start is None else self.number(start, "start"),
            priority=self.integer(obj.get("priority", 0), "priority", lo=-limits.MAX_PRIORITY,
                                  hi=limits.MAX_PRIORITY),
            gateways=gateways, origins=dict(self.origins),
            inputs=tuple(self.string(t, f"inputs[{i}]") for i, t in enumerate(self.array(obj.get("inputs", []),
                                                                                          "inputs"))),
            input_of=dict(self.input_of),
        )
        problem = plan.limit_problem()
        if problem:
            self.fail(*problem)
        return plan

    def metadata(self, value: Any) -> tuple[MetaOp, ...]:
        out = []
        for i, m in enumerate(self.array(value, "metadata")):
            mm = self.mapping(m, f"metadata[{i}]")
            try:
                op = Op(str(mm.get("op")))
            except ValueError:
                self.fail(f"metadata[{i}].op", f"unknown operation {str(mm.get('op'))[:20]!r}")
            out.append(MetaOp(op, self.path(mm.get("path"), f"metadata[{i}].path")))
        return tuple(out)

    def files(self, value: Any) -> dict[str, FileInfo]:
        files = {}
        for p, info in self.mapping(value, "files").items():
            if isinstance(info, FileInfo):  # validated as it was streamed
                files[p] = info
                continue
            path = self.path(p, f"files[{p[:200]!r}]")
            im = self.mapping(info, f"files[{p!r}]")
            files[path] = FileInfo(path, self.integer(im.get("size"), f"files[{p!r}].size"),
                                   self.number(im.get("mtime"), f"files[{p!r}].mtime"))
            if "input" in im:
                self.input_of[path] = self.integer(im["input"], f"files[{p!r}].input", hi=limits.MAX_FILES)
            if "scene" in im:
                self.origins[path] = Origin(self.path(im["scene"], f"files[{p!r}].scene"),
                                            self.path(im.get("layer", im["scene"]), f"files[{p!r}].layer"))
        return files

    def missing(self, value: Any) -> tuple[Finding, ...]:
        out = []
        for i, m in enumerate(self.array(value, "missing")):
            mm = self.mapping(m, f"missing[{i}]")
            line, frames = mm.get("line"), mm.get("frames")
            out.append(Finding(self.string(mm.get("path"), f"missing[{i}].path"),
                               self.string(mm.get("reason"), f"missing[{i}].reason"),
                               None if line is None else self.integer(line, f"missing[{i}].line"),
                               self.integer(mm.get("count", 1), f"missing[{i}].count", lo=1),
                               None if frames is None else self.string(frames, f"missing[{i}].frames"),
                               self.boolean(mm.get("optional", False), f"missing[{i}].optional")))
        return tuple(out)
