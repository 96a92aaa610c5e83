"""prewarm's own trace format, JSON Lines: one access per line. Pure: lines in, records out.

    {"path": "/abs/file", "offset": 0, "length": 65536, "frame": 1001}

plus optional `op` (read, stat, readdir, open; default read), `t` (epoch seconds),
`host`, `job`, `tid`. Unknown keys are ignored so newer writers stay readable by older
readers. A `read` must say where and how much it read; other ops need only a path. A
`stat`'s `length`, when given, is the size it returned (a plan tells a changed file by it).
A line that is not valid JSON or breaks these rules is counted and skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import orjson

from prewarm.plan.access import Access, Op
from prewarm.traces.counters import ImportStats, Rec, Records, Resolve, accesses, seconds

_OPS = {op.value: op for op in Op}


def _opt_int(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"expected a non-negative integer, got {value!r}")


def _opt_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _record(obj: Any, path: str, frame: int | None) -> Rec:
    """The record a decoded line describes; ValueError if a field is wrong."""
    op = _OPS[obj.get("op", "read")]  # KeyError on an unknown op, caught by the caller
    offset = obj.get("offset", 0 if op is not Op.READ else None)
    length = obj.get("length", 0 if op is not Op.READ else None)
    if type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
        raise ValueError("offset and length must be non-negative integers")
    got = obj.get("frame")
    if got is not None:
        if type(got) is not int:
            raise ValueError("frame must be an integer")
        frame = got
    t = obj.get("t")
    if t is not None and type(t) is not float and type(t) is not int:
        raise ValueError("t must be a number")
    return (path, op, offset, length, frame, t, _opt_str(obj.get("host")), _opt_str(obj.get("job")),
            _opt_int(obj.get("tid")))


def jsonl_batches(chunks: Iterable[Sequence[str | bytes]], stats: ImportStats, frame: int | None = None,
                  resolve: Resolve | None = None, where: str = "<jsonl>", skip: int = 0) -> Iterator[Records]:
    """Stream the records of a JSON Lines trace given as runs of lines.

    `frame` is used for records without their own `frame`; `resolve` maps each path
    once; `where` names the file in `stats.first_skipped`; `skip` lines (blank ones the caller
    passed over) come before the first, so line numbers are the file's. Past `MAX_TRACE_PATHS`
    distinct paths, `TraceError`.
    """
    paths: dict[str, str | None] = {}
    n, records = skip, 0
    loads = orjson.loads
    try:
        for chunk in chunks:
            out: Records = []
            for line in chunk:
                n += 1
                try:
                    obj = loads(line)
                    raw = obj["path"]
                    if type(raw) is not str or not raw.startswith("/"):
                        raise ValueError("path must be absolute")
                    path = paths.get(raw, "")
                    if path == "":
                        stats.check_paths(where, len(paths) + 1)
                        path = paths[raw] = resolve(raw) if resolve is not None else raw
                    if path is None:
                        stats.filtered += 1
                        continue
                    out.append(_record(obj, path, frame))
                except (ValueError, KeyError, TypeError, AttributeError):
                    if line.strip():
                        stats.skip(where, n)
            if out:
                records += len(out)
                yield out
    finally:
        stats.lines += n
        stats.records += records
        stats.paths += len(paths)


def parse_jsonl(lines: Iterable[str | bytes], stats: ImportStats, frame: int | None = None,
                resolve: Resolve | None = None, where: str = "<jsonl>") -> Iterator[Access]:
    """`jsonl_batches` of single lines, as `Access` records."""
    it = iter(lines)
    chunks = iter(lambda: list(itertools.islice(it, 4096)), [])
    return accesses(jsonl_batches(chunks, stats, frame, resolve, where))


def access_to_json(a: Access) -> dict[str, object]:
    """The JSON object of one record: unset fields are left out to keep traces small."""
    d: dict[str, object] = {"path": a.path, "offset": a.offset, "length": a.length}
    if a.op is not Op.READ:
        d["op"] = a.op.value
    for key, value in (("frame", a.frame), ("t", a.t), ("host", a.host), ("job", a.job), ("tid", a.tid)):
        if value is not None:
            d[key] = value
    return d


def record_to_json(r: Rec) -> dict[str, object]:
    """`access_to_json` of a record tuple (strace stamps and pids converted)."""
    d: dict[str, object] = {"path": r[0], "offset": r[2], "length": r[3]}
    if r[1] is not Op.READ:
        d["op"] = r[1].value
    tid = r[8]
    for key, value in (("frame", r[4]), ("t", seconds(r[5])), ("host", r[6]), ("job", r[7]),
                       ("tid", int(tid) if isinstance(tid, str) else tid)):
        if value is not None:
            d[key] = value
    return d


def dump_records(batch: Records) -> bytes:
    """JSON Lines of a run of records, one write's worth."""
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(record_to_json(r), option=nl) for r in batch])


def write_jsonl(records: Iterable[Access], fh: IO[bytes]) -> int:
    """Write records one per line to a binary stream; returns how many were written."""
    count = 0
    for a in records:
        fh.write(orjson.dumps(access_to_json(a), option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count
