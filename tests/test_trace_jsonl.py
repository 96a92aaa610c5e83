"""prewarm's JSON Lines traces: what a valid line is, what a bad one costs, and the writer."""

from __future__ import annotations

import io

import pytest

from prewarm.plan.access import Access, Op
from prewarm.traces.counters import ImportStats
from prewarm.traces.jsonl import access_to_json, parse_jsonl, write_jsonl


def parse(lines: list[str] | list[bytes], frame: int | None = None) -> tuple[list[Access], ImportStats]:
    stats = ImportStats()
    return list(parse_jsonl(lines, stats, frame, where="t.jsonl")), stats


def test_contract_example() -> None:
    records, stats = parse(['{"path": "/abs/file", "offset": 0, "length": 65536, "frame": 1001}'])
    assert records == [Access("/abs/file", Op.READ, 0, 65536, 1001)]
    assert (stats.lines, stats.records, stats.skipped_lines) == (1, 1, 0)


def test_all_optional_fields() -> None:
    line = ('{"path": "/p/a.exr", "offset": 8, "length": 4096, "frame": -3, "op": "read", "t": 1732490072.5,'
            ' "host": "node07", "job": "shot010_v003", "tid": 4076, "future_key": [1, 2]}')
    assert parse([line])[0] == [Access("/p/a.exr", Op.READ, 8, 4096, -3, 1732490072.5, "node07", "shot010_v003", 4076)]


@pytest.mark.parametrize("line, expected", [
    ('{"path": "/p/d", "op": "readdir"}', Access("/p/d", Op.READDIR)),
    ('{"path": "/p/f", "op": "stat", "t": 5}', Access("/p/f", Op.STAT, t=5)),
    ('{"path": "/p/f", "op": "open", "frame": 7}', Access("/p/f", Op.OPEN, frame=7)),
])
def test_metadata_ops_need_only_a_path(line: str, expected: Access) -> None:
    assert parse([line])[0] == [expected]


def test_frame_field_wins_over_the_default() -> None:
    records, _ = parse(['{"path": "/p/a", "offset": 0, "length": 1, "frame": 5}',
                        '{"path": "/p/a", "offset": 0, "length": 1}',
                        '{"path": "/p/a", "offset": 0, "length": 1, "frame": null}'], frame=1001)
    assert [a.frame for a in records] == [5, 1001, 1001]


@pytest.mark.parametrize("bad", [
    '{"path": "/p/a", "offset": 0, "length": 1',          # torn line
    '{"path": "relative/a", "offset": 0, "length": 1}',
    '{"path": 7, "offset": 0, "length": 1}',
    '{"offset": 0, "length": 1}',
    '{"path": "/p/a", "length": 1}',                      # a read must say where
    '{"path": "/p/a", "offset": 0}',                      # ... and how much
    '{"path": "/p/a", "offset": -1, "length": 1}',
    '{"path": "/p/a", "offset": 0, "length": true}',
    '{"path": "/p/a", "offset": 0.5, "length": 1}',
    '{"path": "/p/a", "offset": 0, "length": 1, "op": "write"}',
    '{"path": "/p/a", "offset": 0, "length": 1, "frame": "1001"}',
    '{"path": "/p/a", "offset": 0, "length": 1, "t": "noon"}',
    '{"path": "/p/a", "offset": 0, "length": 1, "host": 3}',
    '{"path": "/p/a", "offset": 0, "length": 1, "tid": -2}',
    '["/p/a", 0, 1]',
    '"/p/a"',
    'null',
])
def test_a_bad_line_in_the_middle_is_counted_and_skipped(bad: str) -> None:
    good = '{"path": "/p/a", "offset": 0, "length": 1}'
    records, stats = parse([good, bad, "", good])
    assert len(records) == 2
    assert (stats.lines, stats.records, stats.skipped_lines, stats.first_skipped) == (4, 2, 1, "t.jsonl:2")


def test_bytes_lines_and_blank_lines() -> None:
    records, stats = parse([b'{"path": "/p/a", "offset": 3, "length": 1}\n', b"\n", b"  \n"])
    assert records == [Access("/p/a", Op.READ, 3, 1)] and stats.skipped_lines == 0


def test_resolve_maps_filters_and_caches() -> None:
    seen: list[str] = []

    def resolve(path: str) -> str | None:
        seen.append(path)
        return "/studio" + path[len("/net/filer01"):] if path.startswith("/net/filer01/") else None

    stats = ImportStats()
    lines = ['{"path": "/net/filer01/a", "offset": 0, "length": 1}'] * 3 + ['{"path": "/tmp/x", "offset": 0, "length": 1}']
    records = list(parse_jsonl(lines, stats, resolve=resolve))
    assert [a.path for a in records] == ["/studio/a"] * 3
    assert seen == ["/net/filer01/a", "/tmp/x"] and stats.filtered == 1


def test_access_to_json_leaves_out_what_is_unset() -> None:
    assert access_to_json(Access("/p/a", Op.READ, 0, 65536, 1001)) == {
        "path": "/p/a", "offset": 0, "length": 65536, "frame": 1001}
    assert access_to_json(Access("/p/d", Op.READDIR, tid=3)) == {
        "path": "/p/d", "offset": 0, "length": 0, "op": "readdir", "tid": 3}


def test_write_then_read_round_trips() -> None:
    records = [Access("/p/a.exr", Op.READ, 8, 4096, 1001, 84873.414840, "node07", "job", 4076),
               Access("/p/d", Op.READDIR, frame=1001), Access("/p/f", Op.STAT), Access("/p/é é", Op.OPEN, frame=-2)]
    buf = io.BytesIO()
    assert write_jsonl(records, buf) == 4
    assert buf.getvalue().count(b"\n") == 4
    assert parse(buf.getvalue().splitlines(keepends=True))[0] == records
