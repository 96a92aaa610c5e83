"""Trace profiles: what planning needs from one stored frame file, kept beside it. Pure.

A stored frame file holds every call a render made (megabytes); planning needs only,
per file, the normal span list the frame read, the files it stat-ed or opened, the
folders it listed, and how many records there were: one part of a `TraceSet`. The
store keeps that part beside each raw file (`store.py` does the IO), so planning a new
job costs what the shot's files x frames cost, not what its history of calls costs.

    {"format": "prewarm.profile/1", "frame": 1001, "source": [size, mtime_ns],
     "records": 123456,
     "reads": [["/studio/proj/a.tx", [0, 65536, 131072, 196608]], ...],
     "stats": ["/studio/proj/a.tx", ...], "listed": ["/studio/proj/tex", ...],
     "filed": [["/studio/proj/a.tx", {"size": 5592405, "mtime_ns": ..., "inode": ..., "digest": "9f..",
                "shape": [[2048, 2048, 64, 64], ...]}, [level, x, y, level, x, y, ...]], ...]}

`filed` (optional: a profile written by an older prewarm has none) holds the frame's reads of
each structured file (tiled TIFF/.tx, EXR) in the file's own coordinates, with the file's
identity when the frame was filed (`prewarm.plan.structure.Identity`): a plan against a
re-published texture maps those tiles to its new offsets. The store fills it when its caller
hands in a structure reader; a profile rebuilt from its raw file has none (the file may have
changed since), and the planner treats those frames' identity as unknown.

`source` names the raw file the profile was built from (its size and mtime): a profile
whose raw file was replaced since (a frame filed again, by another node at the same
time, or by an older prewarm that wrote no profile) no longer matches and is rebuilt
from the raw file. `format` changes whenever this layout does, and a profile of another
format is rebuilt the same way. Spans are flat `[start, end, start, end, ...]`, strictly
increasing (that is what makes them normal). Lists keep the order in which the frame
first touched each path, so a `TraceSet` merged from profiles iterates exactly like one
aggregated from the raw files in the same order (the planner breaks ties by that order).

`decode` trusts nothing: anything that is not a well-formed profile of this format is a
`ProfileError`, and the store rebuilds it rather than fail a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.ranges import Span, SpanAccumulator, from_flat, normalize
from prewarm.plan.structure import Filed, Identity, Tile
from prewarm.traces.counters import Rec

__all__ = ["FORMAT", "FrameProfile", "ProfileBuilder", "ProfileError", "decode", "encode", "to_traceset"]

FORMAT = "prewarm.profile/1"

Source = tuple[int, int]
"""(size, mtime_ns) of the raw frame file a profile describes."""


class ProfileError(ValueError):
    """A profile that cannot be used as it is (torn, of another format, hand-edited)."""


@dataclass(frozen=True)
class FrameProfile:
    """One raw frame file's share of a `TraceSet`."""

    frame: int | None
    """The frame of every record in the file; None for the store's `noframe` file."""
    source: Source
    records: int
    reads: Mapping[str, list[Span]] = field(default_factory=dict)
    """Per file, the normal span list read (paths in the order the frame first read them)."""
    stats: Sequence[str] = ()
    """Files stat-ed or opened, first-touched order."""
    listed: Sequence[str] = ()
    """Directories listed, first-listed order."""
    filed: Mapping[str, Filed] = field(default_factory=dict)
    """Structured files read: the tiles read and the file's identity when filed (may be empty)."""


class ProfileBuilder:
    """Folds one frame's records into its profile while they stream past (memory: distinct spans)."""

    __slots__ = ("frame", "listed", "reads", "records", "stats")

    def __init__(self, frame: int | None) -> None:
        self.frame = frame
        self.reads: dict[str, SpanAccumulator] = {}
        self.stats: dict[str, None] = {}
        self.listed: dict[str, None] = {}
        self.records = 0

    def add(self, a: Access) -> None:
        self.records += 1
        if a.op is Op.READ:
            if a.length > 0:
                acc = self.reads.get(a.path)
                if acc is None:
                    acc = self.reads[a.path] = SpanAccumulator()
                acc.add(a.offset, a.offset + a.length)
        elif a.op is Op.READDIR:
            self.listed[a.path] = None
        else:
            self.stats[a.path] = None

    def add_records(self, run: Iterable[Rec]) -> None:
        """`add` for record tuples of this frame (what the importers hand on)."""
        read, readdir = Op.READ, Op.READDIR
        reads, stats, listed = self.reads, self.stats, self.listed
        n = 0
        for r in run:
            n += 1
            if r[1] is read:
                if r[3] > 0:
                    acc = reads.get(r[0])
                    if acc is None:
                        acc = reads[r[0]] = SpanAccumulator()
                    acc.add(r[2], r[2] + r[3])
            elif r[1] is readdir:
                listed[r[0]] = None
            else:
                stats[r[0]] = None
        self.records += n

    def merge(self, other: FrameProfile) -> None:
        """Fold in a profile of more records of the same frame (from a parallel worker)."""
        self.records += other.records
        for path, spans in other.reads.items():
            acc = self.reads.get(path)
            if acc is None:
                acc = self.reads[path] = SpanAccumulator()
            for s, e in spans:
                acc.add(s, e)
        self.stats.update(dict.fromkeys(other.stats))
        self.listed.update(dict.fromkeys(other.listed))

    def build(self, source: Source) -> FrameProfile:
        return FrameProfile(self.frame, source, self.records, {p: acc.spans() for p, acc in self.reads.items()},
                            tuple(self.stats), tuple(self.listed))


def encode(p: FrameProfile) -> bytes:
    flat = [[path, [x for span in spans for x in span]] for path, spans in p.reads.items()]
    filed = [[path, {"size": v.identity.size, "mtime_ns": v.identity.mtime_ns, "inode": v.identity.inode,
                     "digest": v.identity.digest, "shape": [list(lv) for lv in v.identity.shape]},
              [x for t in v.tiles for x in t]] for path, v in p.filed.items()]
    return orjson.dumps({"format": FORMAT, "frame": p.frame, "source": list(p.source), "records": p.records,
                         "reads": flat, "stats": list(p.stats), "listed": list(p.listed),
                         **({"filed": filed} if filed else {})})


def _identity(obj: Any, path: str) -> Identity:
    if type(obj) is not dict or type(obj.get("digest")) is not str or type(obj.get("shape")) is not list:
        raise ProfileError(f"filed[{path!r}]: expected an identity with digest and shape")
    shape = []
    for lv in obj["shape"]:
        if type(lv) is not list or len(lv) != 4 or not all(type(n) is int and n > 0 for n in lv):
            raise ProfileError(f"filed[{path!r}].shape: expected [width, height, tile width, tile height] items")
        shape.append((lv[0], lv[1], lv[2], lv[3]))
    return Identity(_int(obj.get("size"), "filed.size"), _int(obj.get("mtime_ns"), "filed.mtime_ns"),
                    _int(obj.get("inode"), "filed.inode"), obj["digest"], tuple(shape))


def _filed(raw: Any) -> dict[str, Filed]:
    if raw is None:
        return {}  # a profile of an older prewarm: identity unknown
    if type(raw) is not list:
        raise ProfileError("filed: expected a list")
    out: dict[str, Filed] = {}
    for item in raw:
        if type(item) is not list or len(item) != 3 or type(item[0]) is not str or not item[0].startswith("/"):
            raise ProfileError("filed: expected [path, identity, tiles] items")
        flat = item[2]
        if type(flat) is not list or len(flat) % 3 or not all(type(n) is int and n >= 0 for n in flat):
            raise ProfileError(f"filed[{item[0]!r}]: expected tiles [level, x, y, ...]")
        tiles: tuple[Tile, ...] = tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3))
        out[item[0]] = Filed(_identity(item[1], item[0]), tiles)
    return out


def _int(value: Any, name: str, lo: int = 0) -> int:
    if type(value) is not int or value < lo:
        raise ProfileError(f"{name}: expected an integer >= {lo}")
    return value


def _paths(value: Any, name: str) -> tuple[str, ...]:
    if type(value) is not list or not all(type(p) is str and p.startswith("/") for p in value):
        raise ProfileError(f"{name}: expected a list of absolute paths")
    return tuple(value)


def _spans(flat: Any, path: str) -> list[Span]:
    spans = from_flat(flat) if type(flat) is list else None
    if spans is None:
        raise ProfileError(f"reads[{path!r}]: expected a normal span list [start, end, ...]")
    return spans


def decode(data: bytes) -> FrameProfile:
    """The profile `encode` wrote; ProfileError for anything else."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"not JSON: {exc}") from exc
    if type(obj) is not dict:
        raise ProfileError("expected an object")
    if obj.get("format") != FORMAT:
        raise ProfileError(f"format {obj.get('format')!r}, expected {FORMAT!r}")
    frame = obj.get("frame")
    if frame is not None and type(frame) is not int:
        raise ProfileError("frame: expected an integer or null")
    source = obj.get("source")
    if type(source) is not list or len(source) != 2:
        raise ProfileError("source: expected [size, mtime_ns]")
    reads: dict[str, list[Span]] = {}
    raw = obj.get("reads")
    if type(raw) is not list:
        raise ProfileError("reads: expected a list")
    for item in raw:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not str or not item[0].startswith("/"):
            raise ProfileError("reads: expected [path, spans] items")
        if item[0] in reads:
            raise ProfileError(f"reads[{item[0]!r}]: listed twice")
        reads[item[0]] = _spans(item[1], item[0])
    return FrameProfile(frame, (_int(source[0], "source.size"), _int(source[1], "source.mtime_ns")),
                        _int(obj.get("records"), "records"), reads,
                        _paths(obj.get("stats"), "stats"), _paths(obj.get("listed"), "listed"),
                        _filed(obj.get("filed")))


def to_traceset(profiles: Iterable[FrameProfile], frame: int | None = None,
                to_path: Mapping[str, str] | None = None) -> TraceSet:
    """The TraceSet of the raw files the profiles describe, as `aggregate` would make it from
    those files read in the same order (merge order and dict order included).

    `frame` is the frame of records that carry none (the planner's `--frame`); `to_path`
    renames paths (the planner's path map), merging what lands on one path.
    """
    reads: dict[str, dict[int, list[Span]]] = {}
    filed: dict[str, dict[int, Filed]] = {}
    stats: dict[str, set[int]] = {}
    listed: dict[str, set[int]] = {}
    frames: set[int] = set()
    records = unframed = 0
    rename = to_path.get if to_path is not None else None
    for p in profiles:
        records += p.records
        f = p.frame if p.frame is not None else frame
        if f is None:
            unframed += p.records
            continue
        if p.records:
            frames.add(f)
        for path, spans in p.reads.items():
            if rename is not None:
                path = rename(path, path)
            per = reads.get(path)
            if per is None:
                per = reads[path] = {}
            got = per.get(f)
            per[f] = spans if got is None else normalize(got + spans)
        for path, v in p.filed.items():
            filed.setdefault(rename(path, path) if rename is not None else path, {})[f] = v
        for target, paths in ((stats, p.stats), (listed, p.listed)):
            for path in paths:
                if rename is not None:
                    path = rename(path, path)
                fs = target.get(path)
                if fs is None:
                    target[path] = {f}
                else:
                    fs.add(f)
    return TraceSet(reads=reads, stats=stats, listed=listed, frames=frozenset(frames), records=records,
                    unframed=unframed, filed=filed)
