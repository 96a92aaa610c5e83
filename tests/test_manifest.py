"""Manifests (contract 1): every key, and one exact line for each kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prewarm.errors import ManifestError
from prewarm.flow.jobs import load_manifest
from prewarm.plan.manifest import FrameOrder, InputSpec, parse_manifest
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.patterns import PathPattern
from prewarm.plan.units import parse_size, size_text

SAMPLES = Path(__file__).resolve().parents[1] / "sample_jobs"


def parse(text: str) -> object:
    return parse_manifest(textwrap.dedent(text), "job.yaml")


def test_contract_example() -> None:
    m = parse_manifest(textwrap.dedent("""\
        job: shot010_lighting_v003          # required: a name
        frames: 1001-1100                   # required: a frame spec
        inputs:                             # required: what the frames may read
          - /studio/proj/shot010/shot010_lighting_v003.blend
          - /studio/proj/shot010/cache/fluid.####.vdb
          - /studio/proj/assets/hero/tex/diffuse.<UDIM>.tx
          - /studio/proj/assets/lookdev/tex/
        """), "job.yaml")
    assert m.job == "shot010_lighting_v003"
    assert m.frames == tuple(range(1001, 1101))
    assert m.source == "job.yaml"
    assert m.inputs == (
        InputSpec(PathPattern("/studio/proj/shot010/shot010_lighting_v003.blend"), 4),
        InputSpec(PathPattern("/studio/proj/shot010/cache/fluid.####.vdb"), 5),
        InputSpec(PathPattern("/studio/proj/assets/hero/tex/diffuse.<UDIM>.tx"), 6),
        InputSpec(PathPattern("/studio/proj/assets/lookdev/tex"), 7, is_dir=True),
    )
    assert m.inputs[3].path == "/studio/proj/assets/lookdev/tex/"
    assert (m.show, m.shot, m.start, m.priority, m.gateways, m.max_bytes, m.granule) == \
        (None, None, None, 0, (), None, None)
    assert m.path_map == PathMap() and m.frame_order is FrameOrder.SPEC


def test_every_optional_key() -> None:
    m = parse_manifest(textwrap.dedent("""\
        job: "010"
        frames: [1-3, 10, 2]
        show: proj
        shot: shot010
        start: 2025-03-01T22:00:00Z
        priority: -5
        gateway: [gw-a, gw-b]
        max_bytes: 20GiB
        granule: 1 MiB
        frame_order: sorted
        path_map:
          - {studio: /studio/proj, aliases: [/net/filer01/proj]}
        inputs:
          - path: /studio/proj//cache/sim.abc
            whole: true
            optional: true
          - path: /studio/proj/lookdev/
            include: ["*.tx", "hero/*"]
            exclude: old
          - path: "/studio/proj/notes #2.txt"
            literal: true
        """), "job.yaml")
    assert m.job == "010"
    assert m.frames == (1, 2, 3, 10)                    # sorted render order
    assert (m.show, m.shot, m.start, m.priority) == ("proj", "shot010", 1740866400.0, -5)
    assert m.gateways == ("gw-a", "gw-b")
    assert (m.max_bytes, m.granule) == (20 * 2**30, 2**20)
    assert m.frame_order is FrameOrder.SORTED
    assert m.path_map == PathMap((Prefix("/studio/proj", ("/net/filer01/proj",)),))
    sim, lookdev, notes = m.inputs
    assert sim == InputSpec(PathPattern("/studio/proj/cache/sim.abc"), 14, whole=True, optional=True)
    assert lookdev == InputSpec(PathPattern("/studio/proj/lookdev"), 17, is_dir=True,
                                include=("*.tx", "hero/*"), exclude=("old",))
    assert notes.pattern.is_literal and notes.path == "/studio/proj/notes #2.txt"


def test_frames_keep_spec_order_by_default() -> None:
    m = parse_manifest("job: j\nframes: 10-1x3,2\ninputs: [/a]\n", "job.yaml")
    assert m.frames == (10, 7, 4, 1, 2)


@pytest.mark.parametrize(("value", "expected"), [
    ("1740866400", 1740866400.0),
    ("1740866400.5", 1740866400.5),
    ("'2025-03-01T23:00:00+01:00'", 1740866400.0),
    ("2025-03-01 22:00:00Z", 1740866400.0),
])
def test_start_forms(value: str, expected: float) -> None:
    assert parse_manifest(f"job: j\nframes: 1\nstart: {value}\ninputs: [/a]\n", "m").start == expected


@pytest.mark.parametrize(("value", "expected"), [
    (1048576, 1048576), ("500MB", 500 * 10**6), ("20GiB", 20 * 2**30), ("1.5 KiB", 1536),
    ("2tb", 2 * 10**12), ("4096 B", 4096), ("  64KiB ", 65536),
])
def test_sizes(value: object, expected: int) -> None:
    assert parse_size(value, "m:1", "max_bytes") == expected


@pytest.mark.parametrize(("n", "text"), [(4096, "4KiB"), (1536, "1536"), (256 << 20, "256MiB"), (3 << 40, "3TiB"),
                                         (1000, "1000"), (5 << 30, "5GiB")])
def test_size_text_reads_back_exactly(n: int, text: str) -> None:
    assert size_text(n) == text and parse_size(text, "help", "default") == n


def test_frames_yaml_would_misread_are_read_as_written() -> None:
    """YAML 1.1 reads 010 as 8 and 0x10 as 16; a frame spec is text."""
    assert parse_manifest("job: j\nframes: 010\ninputs: [/a]\n", "m").frames == (10,)
    with pytest.raises(ManifestError, match="cannot parse '0x10'"):
        parse_manifest("job: j\nframes: 0x10\ninputs: [/a]\n", "m")


BAD = [
    ("job: j\nframes: 1-x\ninputs: [/a]\n",
     "job.yaml:2: frames: cannot parse '1-x'; expected e.g. 1001-1100, 1-100x5, 1-100:5, 1-100y5, 1,3,5"),
    ("job: j\nframes:\n  - 1-3\n  - 2-x\ninputs: [/a]\n",
     "job.yaml:4: frames[1]: cannot parse '2-x'; expected e.g. 1001-1100, 1-100x5, 1-100:5, 1-100y5, 1,3,5"),
    ("job: j\nframes: {a: 1}\ninputs: [/a]\n",
     "job.yaml:2: frames: expected a frame spec such as 1001-1100 or a list of them"),
    ("job: j\nfames: 1\ninputs: [/a]\n", "job.yaml:2: fames: unknown key (did you mean 'frames'?)"),
    ("job: j\nframes: 1\ninputs: [/a]\nzzz: 1\n",
     "job.yaml:4: zzz: unknown key (known keys: job, frames, inputs, show, shot, start, priority, gateway, "
     "max_bytes, granule, path_map, frame_order, predict)"),
    ("job: j\nframes: 1\nframes: 2\ninputs: [/a]\n", "job.yaml:3: frames: duplicate key (first on line 2)"),
    ("", "job.yaml:1: empty manifest: expected a mapping with job, frames and inputs"),
    ("# only a comment\n", "job.yaml:1: empty manifest: expected a mapping with job, frames and inputs"),
    ("- /a\n- /b\n", "job.yaml:1: expected a mapping with job, frames and inputs, got a list"),
    ("just text\n", "job.yaml:1: expected a mapping with job, frames and inputs, got a string"),
    ("job: j\nframes: [1\ninputs: [/a]\n",
     "job.yaml:3: not valid YAML: expected ',' or ']', but got ':'"),
    ("job: j\n\tframes: 1\n", "job.yaml:2: not valid YAML: found character '\\t' that cannot start any token"),
    ("job: j\n---\njob: k\n",
     "job.yaml:2: not valid YAML: expected a single document in the stream, but found another document"),
    ("job: \"\x01\"\n", "job.yaml:1: not valid YAML: special characters are not allowed (U+0001)"),
    ("job: j\ninputs: [/a]\n", "job.yaml:1: frames: missing (required: job, frames and inputs)"),
    ("frames: 1\ninputs: [/a]\n", "job.yaml:1: job: missing (required: job, frames and inputs)"),
    ("job:\nframes: 1\ninputs: [/a]\n", "job.yaml:1: job: expected a string, got nothing"),
    ("job: [a]\nframes: 1\ninputs: [/a]\n", "job.yaml:1: job: expected a string, got a list"),
    ("job: j\nframes: 1\ninputs: []\n", "job.yaml:3: inputs: expected a non-empty list of files, patterns and folders"),
    ("job: j\nframes: 1\ninputs: /a\n", "job.yaml:3: inputs: expected a non-empty list of files, patterns and folders"),
    ("job: j\nframes: 1\ninputs:\n  - /a\n  - tex/a.tx\n", "job.yaml:5: inputs[1]: 'tex/a.tx' is not an absolute path"),
    ("job: j\nframes: 1\ninputs:\n  - /a/../b\n",
     "job.yaml:4: inputs[0]: '/a/../b' has . or .. components: write the path out"),
    ("job: j\nframes: 1\ninputs:\n  - /\n", "job.yaml:4: inputs[0]: refusing to warm the whole file system ('/')"),
    ("job: j\nframes: 1\ninputs:\n  -\n", "job.yaml:4: inputs[0]: expected a string, got nothing"),
    ("job: j\nframes: 1\ninputs:\n  - /a\n  - /b\n  - /a\n", "job.yaml:6: inputs[2]: '/a' is already listed on line 4"),
    ("job: j\nframes: 1\ninputs:\n  - /t/<UDIM>/a.tx\n",
     "job.yaml:4: inputs[0]: '/t/<UDIM>/a.tx': tile tokens must be in the file name, not in a folder"),
    ("job: j\nframes: 1\ninputs:\n  - /t/<UDIM>/\n", "job.yaml:4: inputs[0]: a folder input cannot have tile tokens"),
    ("job: j\nframes: 1\ninputs:\n  - whole: true\n", "job.yaml:4: inputs[0]: missing 'path'"),
    ("job: j\nframes: 1\ninputs:\n  - path: /a\n    wole: true\n",
     "job.yaml:5: inputs[0].wole: unknown key (did you mean 'whole'?)"),
    ("job: j\nframes: 1\ninputs:\n  - path: /a\n    path: /b\n",
     "job.yaml:5: inputs[0].path: duplicate key (first on line 4)"),
    ("job: j\nframes: 1\ninputs:\n  - path: /a\n    whole: yes please\n",
     "job.yaml:5: inputs[0].whole: expected true or false, got 'yes please'"),
    ("job: j\nframes: 1\ninputs:\n  - path: /a.tx\n    include: ['*.tx']\n",
     "job.yaml:5: inputs[0].include: only for folders (paths ending in /)"),
    ("job: j\nframes: 1\nstart: 2025-03-01 10:00\ninputs: [/a]\n",
     "job.yaml:3: start: '2025-03-01 10:00' has no time zone: add Z or an offset such as +01:00"),
    ("job: j\nframes: 1\nstart: tomorrow\ninputs: [/a]\n",
     "job.yaml:3: start: expected ISO 8601 (2025-03-01T22:00:00Z) or epoch seconds, got 'tomorrow'"),
    ("job: j\nframes: 1\nstart: -5\ninputs: [/a]\n",
     "job.yaml:3: start: expected ISO 8601 (2025-03-01T22:00:00Z) or epoch seconds, got '-5'"),
    ("job: j\nframes: 1\npriority: high\ninputs: [/a]\n",
     "job.yaml:3: priority: expected an integer between -1,000,000 and 1,000,000, got 'high'"),
    ("job: j\nframes: 1\nmax_bytes: 20G\ninputs: [/a]\n",
     "job.yaml:3: max_bytes: expected a size such as 20GiB, 500MB or 1048576, got '20G'"),
    ("job: j\nframes: 1\ngranule: 0\ninputs: [/a]\n", "job.yaml:3: granule: must be more than 0 bytes, got 0"),
    ("job: j\nframes: 1\ngateway: [a, b, a]\ninputs: [/a]\n", "job.yaml:3: gateway: 'a' is listed twice"),
    ("job: j\nframes: 1\ngateway: []\ninputs: [/a]\n", "job.yaml:3: gateway: expected a gateway name or a list of them"),
    ("job: j\nframes: 1\nframe_order: random\ninputs: [/a]\n",
     "job.yaml:3: frame_order: expected one of spec, sorted, got 'random'"),
    ("job: j\nframes: 1\npath_map:\n  - {studio: /s, aliases: [/l]}\n  - {studio: rel}\ninputs: [/a]\n",
     "job.yaml:5: path_map[1].studio: must be an absolute path"),
    ("job: j\nframes: 1\npath_map:\n  - {studio: /s, lcoal: /l}\ninputs: [/a]\n",
     "job.yaml:4: path_map[0]: unknown key(s): lcoal"),
    ("job: j\nframes: 1\npath_map: /s\ninputs: [/a]\n",
     "job.yaml:3: path_map: expected a list of {studio, aliases} mappings, got a string"),
    ("job: j\nframes: 1\npath_map:\n  - {studio: /studio/proj, local: /etc}\ninputs: [/a]\n",
     "job.yaml:4: path_map[0].local: a job cannot say where studio paths are on this machine; that is the "
     "site's `path_map` setting (or `--local` on the command line)"),
    ("job: j\nframes: 1\n[a]: 1\ninputs: [/a]\n", "job.yaml:3: keys must be plain names, got a list"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_manifests_fail_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "job.yaml")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_load_manifest_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("job: j\nframes: 1-3\ninputs: [/a]\n")
    assert load_manifest(path).frames == (1, 2, 3)
    assert load_manifest(str(path)).source == str(path)


def test_load_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)     # a folder is a job bundle to the one loader
    assert str(info.value) == f"{tmp_path}: not a job bundle: no template.yaml or template.json"
    binary = tmp_path / "job.yaml"
    binary.write_bytes(b"job: \xff\xfe\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(binary)
    assert str(info.value) == f"{binary}: not UTF-8 text (byte 5)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: j\nframes: 1\ninputs: [/a]\nfarmes: 2\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(bad)
    assert str(info.value) == f"{bad}:4: farmes: unknown key (did you mean 'frames'?)"


def test_sample_shot100() -> None:
    m = load_manifest(SAMPLES / "shot100" / "manifest.yaml")
    assert m.frames == tuple(range(1, 25))
    paths = [spec.path for spec in m.inputs]
    assert "/studio/proj/assets/tex/crate_diff.<UDIM>.png" in paths
    assert "/studio/proj/shot100/anim_tex/monitor.####.png" in paths
    assert not any("unused_prop" in p for p in paths)
    assert all(p.startswith("/studio/proj/") for p in paths)


def test_sample_shot200() -> None:
    m = load_manifest(SAMPLES / "shot200" / "manifest.yaml")
    assert m.frames == tuple(range(1, 37))
    assert [(s.path, s.is_dir) for s in m.inputs] == [("/studio/proj/assets/lookdev/tex/", True)]


def test_prediction_knobs_are_checked_where_they_are_written():
    m = parse_manifest("job: j\nframes: 1\ninputs: [/a]\npredict: {finer: 2, spread: 256KiB, structure: false}\n",
                       "job.yaml")
    assert m.predict == {"finer": 2, "spread": 256 << 10, "structure": False}
    for text, expected in [
        ("predict: {finner: 1}", "job.yaml:4: predict: unknown prediction knob 'finner'"),
        ("predict: {finer: -1}", "job.yaml:4: predict: finer: expected an integer >= 0"),
        ("predict: {structure: 1}", "job.yaml:4: predict: structure: expected true or false"),
        ("predict: 3", "job.yaml:4: predict: expected a mapping of prediction knobs"),
    ]:
        with pytest.raises(ManifestError) as err:
            parse_manifest(f"job: j\nframes: 1\ninputs: [/a]\n{text}\n", "job.yaml")
        assert str(err.value).startswith(expected), str(err.value)
