"""Property tests of every parser of outside input: any input gets a result or one clear line, never a traceback.

The manifest parser, the plan validator (from a dict and from a stream of parser
events, as `prewarm warm` reads plan files) and the trace importers are fed documents
hypothesis builds: random YAML and JSON values, near-miss manifests and plans,
deep nesting, huge numbers, NUL bytes and unicode, binary garbage. Each must either
parse or raise the one error class of its kind (an `InputError`) whose message is one
line and never quotes a long run of what it was given.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prewarm.errors import InputError, ManifestError, PlanFileError, TraceError
from prewarm.flow.jobs import load_plan
from prewarm.plan.manifest import Manifest, parse_manifest
from prewarm.plan.model import Plan
from prewarm.plan.records import PlannedRange, Reason
from prewarm.traces.files import read_traces

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                    st.floats(allow_nan=False), st.text(max_size=40),
                    st.sampled_from(["/studio/proj/a.tx", "/studio/proj/../etc", "1-100x5", "1e400", "\0",
                                     "/studio/proj/f.####.vdb", "<UDIM>", "-", "1-99999999999", "\u202e"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                      max_leaves=30)
MANIFEST_KEYS = ("job", "frames", "inputs", "show", "shot", "start", "priority", "gateway", "max_bytes", "granule",
                 "path_map", "frame_order")
manifests = st.fixed_dictionaries({}, optional={k: values for k in MANIFEST_KEYS})
PLAN_KEYS = ("format", "job", "frames", "granule", "start", "priority", "gateways", "ranges", "metadata", "inputs", "files",
             "missing", "dropped", "created")
ranges = st.fixed_dictionaries({}, optional={"path": values, "offset": values, "length": values, "frame": values,
                                             "frames": values, "reason": values})
plans = st.fixed_dictionaries({"job": st.one_of(st.text(max_size=10), values),
                               "ranges": st.one_of(st.lists(ranges, max_size=4), values)},
                              optional={k: values for k in PLAN_KEYS if k not in ("job", "ranges")})


def one_line(exc: InputError, given: str) -> None:
    text = str(exc)
    assert "\n" not in text and text.strip() == text and exc.where is not None
    assert len(text) < 2000
    assert "Traceback" not in text


def nested(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


@SETTINGS
@given(manifests)
def test_any_manifest_document_parses_or_fails_in_one_line(doc: dict[str, object]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        assert isinstance(parse_manifest(text, "job.yaml"), Manifest)
    except ManifestError as exc:
        one_line(exc, text)
        assert str(exc).startswith("job.yaml")


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_as_a_manifest_parses_or_fails_in_one_line(text: str) -> None:
    try:
        parse_manifest(text, "job.yaml")
    except ManifestError as exc:
        one_line(exc, text)


@pytest.mark.parametrize("depth", [70, 500, 5000, 50000])
@pytest.mark.parametrize("kind", ["[", "{a: ", "- "])
def test_deeply_nested_yaml_is_one_line_not_a_recursion_error(depth: int, kind: str) -> None:
    if kind == "- ":
        text = "job: j\nframes: 1\ninputs:\n" + "".join("  " * i + "- \n" for i in range(min(depth, 3000)))
    elif kind == "[":
        text = "job: j\nframes: 1\ninputs: " + nested(depth, "[", "]")
    else:
        text = "job: j\nframes: 1\ninputs: " + kind * depth + "1" + "}" * depth
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, "job.yaml")
    one_line(err.value, text)


def events(text: str) -> Plan:
    return load_plan(io.BytesIO(text.encode("utf-8", "surrogatepass")), "plan.json")


@SETTINGS
@given(plans)
def test_any_plan_object_validates_or_fails_naming_a_field(doc: dict[str, object]) -> None:
    text = json.dumps(doc)
    outcomes = []
    for load in (lambda: Plan.from_json(json.loads(text), "plan.json"), lambda: events(text)):
        try:
            plan = load()
            outcomes.append(("ok", plan.to_json()["ranges"], plan.to_json()["files"]))
        except PlanFileError as exc:
            one_line(exc, text)
            assert str(exc).startswith("plan.json")
            outcomes.append(("error", str(exc)))
    # the streamed loader and the dict loader agree on what is valid
    assert outcomes[0][0] == outcomes[1][0], outcomes


@pytest.mark.parametrize("text", [
    '{"job": "j", "ranges": []' + ', "x": ' + nested(100_000, "[", "]") + "}",
    '{"job": "j", "ranges": [' + nested(5000, "{\"a\":", "}").replace("}", "1}", 1) + "]}",
    '{"job": "j", "ranges": [{"path": "/a", "offset": ' + "9" * 5000 + ', "length": 1}]}',
    '{"job": "j", "ranges": [{"path": "/a", "offset": 1e999, "length": 1}]}',
    '{"job": "j", "ranges": [{"path": "/a\\u0000b", "offset": 0, "length": 1}]}',
    '{"job": "j", "ranges": [], "gateways": [' + ",".join(f'"g{i}"' for i in range(5000)) + "]}",
    '{"job": "j", "granule": 1, "ranges": []}',
    '{"job": "j", "granule": 1000000000000000000000, "ranges": []}',
    '{"job": "j", "ranges": [{"path": "/a", "offset": 4611686018427387900, "length": 100}]}',
    '{"job": "j", "ranges": [{"path": "/a", "offset": 0, "length": 100}], "files": {"/a": {"size": 10, "mtime": 1}}}',
    '{"job": "j", "ranges": [], "ranges": []}',
    "\x00\xff\xfe garbage",
    "",
])
def test_hostile_plan_files_are_one_line(text: str) -> None:
    with pytest.raises(PlanFileError) as err:
        events(text)
    one_line(err.value, text)
    assert "9999999999" not in str(err.value), "the file's text is not quoted"


@SETTINGS
@given(st.binary(max_size=2000), st.booleans())
def test_any_bytes_as_a_trace_import_or_fail_in_one_line(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                                         compressed: bool) -> None:
    folder = tmp_path_factory.mktemp("t")
    path = Path(folder, "frame.0001.log")
    path.write_bytes(gzip.compress(data) if compressed else data)
    try:
        list(read_traces([str(path)]))
    except TraceError as exc:
        one_line(exc, "")
        run = data.strip()[:20]
        if len(run) >= 12:
            assert run.decode("utf-8", "replace") not in str(exc), "trace content quoted"


@SETTINGS
@given(st.lists(st.one_of(
    st.builds(lambda d: json.dumps(d), st.dictionaries(st.sampled_from(["path", "offset", "length", "frame", "op",
                                                                       "t"]), values, max_size=6)),
    st.sampled_from(["1234 12:00:00.000001 openat(AT_FDCWD, \"/studio/proj/a\", O_RDONLY) = 3</studio/proj/a>",
                     "1234 12:00:00.1 pread64(3</studio/proj/a>, \"\"..., 65536, 0) = 65536 <0.000010>",
                     "1234 12:00:00.1 read(3</studio/proj/a>, \"\"..., 99999999999999999999) = -1",
                     "1234 12:00:00.1 lseek(3</studio/proj/a>, -5, SEEK_SET) = 18446744073709551615",
                     "[pid 1] <... pread64 resumed>\"\"..., 4096, 0) = 4096", "{" * 2000, "\0\0\0"]),
    st.text(max_size=80)), min_size=1, max_size=12))
def test_any_trace_lines_import_or_fail_in_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                    lines: list[str]) -> None:
    path = Path(tmp_path_factory.mktemp("t"), "frame.0001.log")
    path.write_text("\n".join(lines), errors="surrogateescape")
    try:
        for access in read_traces([str(path)]):
            assert access.offset >= 0 and access.length >= 0
    except TraceError as exc:
        one_line(exc, "")


def test_a_huge_line_of_garbage_is_cut_not_held(tmp_path: Path) -> None:
    path = tmp_path / "frame.0001.log"
    with open(path, "wb") as fh:
        fh.write(b'{"path": "/studio/proj/a", "offset": 0, "length": 1}\n')
        fh.write(b"\xff" * (64 << 20))  # 64 MiB without a newline
    records = list(read_traces([str(path)]))
    assert len(records) == 1


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["/s/a", "/s/b", "/s/c"]), st.integers(0, 1 << 24),
                          st.integers(1, 1 << 22)), min_size=1, max_size=30),
       st.sampled_from([4096, 65536, 1 << 20]))
def test_a_batch_stored_as_runs_comes_back_read_for_read(spans: list[tuple[str, int, int]], granule: int) -> None:
    from prewarm.warm.batches import Batch, iter_batches

    for batch in iter_batches((), spans, {}, granule, 1 << 62, 37, 10):
        stored = json.loads(json.dumps(batch.to_json()))
        assert Batch.from_json(stored) == batch
        assert len(stored["reads"]) <= len(batch.reads)


@given(st.lists(st.tuples(st.sampled_from(["/p/a.tx", '/p/"q"\\b é.exr', "/p/\u2028x"]),
                          st.integers(0, 2**40), st.integers(1, 2**30),
                          st.none() | st.integers(-(2**40), 2**40), st.integers(1, 10_000),
                          st.sampled_from(list(Reason))), max_size=8))
def test_plan_text_is_what_json_makes_of_its_ranges(rows):
    """The plan's text is written from its range columns, not through `json.dumps` of each range:
    it must say exactly what that would, for any path, frame (or none) and reason."""
    plan = Plan(job="j", frames=(1,), ranges=[PlannedRange(*r) for r in rows], dropped=[PlannedRange(*rows[0])] if rows else [])
    text = "".join(plan.json_text())
    assert json.loads(text) == json.loads(json.dumps(plan.to_json()))
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    assert [json.dumps(r.to_json()) for r in plan.ranges] == [line for line in lines if line.startswith('{"path"')][:len(rows)]
