"""Finding, opening and telling trace files apart, on real files in a temporary folder."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from prewarm.errors import TraceError
from prewarm.plan.access import Access, Op
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.traces.files import (
    ImportStats,
    frame_from_name,
    read_traces,
    sniff,
    trace_files,
)

STRACE = ('4070  23:34:33.288641 openat(AT_FDCWD</studio/render>, "/net/filer01/proj/a.blend", O_RDONLY) = 3</net/filer01/proj/a.blend>\n'
          '4070  23:34:33.288768 read(3</net/filer01/proj/a.blend>, "(\\265/\\375`\\31\\5", 7) = 7\n')
JSONL = '{"path": "/net/filer01/proj/a.blend", "offset": 0, "length": 7}\n'
FILER = PathMap((Prefix("/studio/proj", aliases=("/net/filer01/proj",)),))


def write(path: Path, text: str, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


def load(*paths: Path, path_map: PathMap | None = None, frame: int | None = None,
         keep: Callable[[str], bool] | None = None) -> tuple[list[Access], ImportStats]:
    stats = ImportStats()
    return list(read_traces([str(p) for p in paths], path_map, frame, keep, stats)), stats


# --- finding files -------------------------------------------------------------------------

def test_a_folder_is_every_file_below_it_in_natural_order(tmp_path: Path) -> None:
    for name in ("frame.10.log", "frame.2.log", "sub/frame.1.log", ".hidden.log", ".git/frame.3.log"):
        write(tmp_path / name, STRACE)
    assert [Path(f.name).relative_to(tmp_path).as_posix() for f in trace_files(str(tmp_path))] == [
        "frame.2.log", "frame.10.log", "sub/frame.1.log"]
    assert [f.name for f in trace_files(str(tmp_path / "frame.2.log"))] == [str(tmp_path / "frame.2.log")]


def test_missing_path_fails_at_once_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(TraceError) as err:
        read_traces([str(write(tmp_path / "ok.log", STRACE)), missing])  # before any record is read
    assert err.value.where == missing and "no such" in str(err.value)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    with pytest.raises(TraceError, match="no trace files"):
        trace_files(str(tmp_path / "traces"))


@pytest.mark.parametrize("name, frame", [
    ("frame.1001.strace.gz", 1001),
    ("shot010_1001.log", 1001),
    ("frame.0007.strace", 7),
    ("sh010_v003.1042.jsonl.gz", 1042),
    ("render-1001.trace.txt", 1001),
    ("FRAME.0012.LOG", 12),
    ("frame.1001.exr.log", 1001),
    ("trace.jsonl", None),
    ("capture", None),
])
def test_frame_from_name(name: str, frame: int | None) -> None:
    assert frame_from_name(name) == frame


@pytest.mark.parametrize("line, kind", [
    ('{"path": "/p", "offset": 0, "length": 1}', "jsonl"),
    ('  {"path": "/p"}', "jsonl"),
    ('4070  23:34:33.288641 read(3</p>, "", 1) = 1', "strace"),
    ('[pid  4740] 23:50:43.509198 openat(AT_FDCWD</tmp>, "/p", O_RDONLY) = 3</p>', "strace"),
    ('23:50:43.509941 pread64(4</p>, "716", 3, 1) = 3', "strace"),
    ('1795564243.888472 read(3</p>, "", 1) = 1', "strace"),
    ('execve("/usr/bin/python3", ["python3"], 0x7ffc /* 20 vars */) = 0', "strace"),
    ('4073  23:34:32.322039 <... newfstatat resumed>{st_mode=S_IFREG|0644, ...}, AT_EMPTY_PATH) = 0', "strace"),
    ("strace: Process 4071 attached", "strace"),
    ('4076  23:34:33.414840 pread64(4</p/d.png>,  <unfinished ...>', "strace"),
    ("23:36:07 comm(4431): R /studio/proj/a.tx", None),      # fatrace
    ("path,offset,length", None),
    ("\x89PNG\r\n", None),
])
def test_sniff(line: str, kind: str | None) -> None:
    assert sniff(line) == kind


# --- telling formats and compression apart by content ------------------------------------------

@pytest.mark.parametrize("name, text, compress", [
    ("frame.1.strace.gz", STRACE, True),
    ("frame.1.log", STRACE, True),          # gzip named .log
    ("frame.1.strace.gz", STRACE, False),   # plain named .gz
    ("frame.1.txt", STRACE, False),
    ("frame.1.jsonl.gz", JSONL, True),
    ("frame.1.log", JSONL, False),          # JSON Lines named .log
    ("frame.1.strace", JSONL, True),        # gzip JSON Lines named .strace
])
def test_format_and_compression_come_from_content(tmp_path: Path, name: str, text: str, compress: bool) -> None:
    records, stats = load(write(tmp_path / name, text, compress), path_map=FILER)
    assert (records[-1].path, records[-1].op, records[-1].offset, records[-1].length, records[-1].frame) == (
        "/studio/proj/a.blend", Op.READ, 0, 7, 1)
    assert stats.files == 1 and stats.skipped_lines == 0


@pytest.mark.parametrize("content", [
    b"23:36:07 comm(4431): R /studio/proj/a.tx\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    gzip.compress(b"path,offset,length\n/p,0,1\n"),
])
def test_unknown_format_names_the_file(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "mystery.log"
    f.write_bytes(content)
    with pytest.raises(TraceError) as err:
        load(f)
    assert err.value.where == str(f) and "neither an strace log nor prewarm JSON Lines" in err.value.message


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "frame.1.strace.gz"
    whole = gzip.compress("".join(STRACE.replace("a.blend", f"{i}.blend") for i in range(2000)).encode())
    f.write_bytes(whole[:len(whole) // 2])  # cut short, as by a full disk
    with pytest.raises(TraceError) as err:
        load(f)
    assert err.value.where == str(f) and "cannot read" in err.value.message


def test_a_file_with_no_record_is_not_a_trace(real_traces: Path, tmp_path: Path) -> None:
    """`sizes.json` starts with `{` but no line of it is an access: pointing at the shot
    folder instead of its traces folder must say so rather than import nothing."""
    shutil.copy(real_traces / "shot100" / "sizes.json", tmp_path / "sizes.json")
    with pytest.raises(TraceError) as err:
        load(tmp_path)
    assert err.value.where == str(tmp_path / "sizes.json") and "not a trace" in err.value.message


def test_empty_file_is_a_frame_that_read_nothing(tmp_path: Path) -> None:
    records, stats = load(write(tmp_path / "frame.3.log", "\n\n"))
    assert records == [] and stats.files == 1


def test_jsonl_with_a_bad_line_in_the_middle(tmp_path: Path) -> None:
    lines = [json.dumps({"path": f"/net/filer01/proj/a.{i}", "offset": i, "length": 1}) for i in range(5)]
    lines[2] = '{"path": "/net/filer01/proj/a.2", "offset": 2, "len'
    f = write(tmp_path / "frame.0042.jsonl", "\n" + "\n".join(lines) + "\n")
    records, stats = load(f, path_map=FILER)
    assert [(a.path, a.offset, a.frame) for a in records] == [
        (f"/studio/proj/a.{i}", i, 42) for i in (0, 1, 3, 4)]
    assert (stats.lines, stats.records, stats.skipped_lines, stats.first_skipped) == (6, 4, 1, f"{f}:4")


def test_frame_comes_from_record_then_option_then_name(tmp_path: Path) -> None:
    f = write(tmp_path / "shot010_1001.log",
              '{"path": "/p/a", "offset": 0, "length": 1, "frame": 7}\n{"path": "/p/a", "offset": 0, "length": 1}\n')
    assert [a.frame for a in load(f)[0]] == [7, 1001]
    assert [a.frame for a in load(f, frame=5)[0]] == [7, 5]
    s = write(tmp_path / "frame.1001.strace.gz", STRACE, compress=True)
    assert {a.frame for a in load(s)[0]} == {1001} and {a.frame for a in load(s, frame=5)[0]} == {5}


def test_keep_sees_studio_paths_and_drops_the_rest(tmp_path: Path) -> None:
    text = STRACE + '4070  23:34:33.3 openat(AT_FDCWD</studio/render>, "/usr/lib/libz.so", O_RDONLY) = 4</usr/lib/libz.so>\n'
    records, stats = load(write(tmp_path / "f.log", text), path_map=FILER,
                          keep=lambda p: p.startswith("/studio/proj/"))
    assert {a.path for a in records} == {"/studio/proj/a.blend"} and stats.filtered == 1


# --- the real traces, whole folders -----------------------------------------------------------

@pytest.mark.parametrize("shot, frames, records", [("shot100", 24, 38568), ("shot200", 36, 35771)])
def test_real_trace_folders(real_traces: Path, shot: str, frames: int, records: int) -> None:
    """Every file of the folder, its frame from its name; no read reaches past the end of
    its file (sizes.json): a wrong descriptor position would."""
    sizes: dict[str, int] = json.loads((real_traces / shot / "sizes.json").read_text())
    got, stats = load(real_traces / shot / "traces")
    assert stats.files == frames and stats.records == records == len(got)
    assert stats.skipped_lines == 0 and stats.failed_calls == 0
    assert {a.frame for a in got} == set(range(1, frames + 1))
    assert {a.path for a in got} <= set(sizes)
    assert all(a.offset + a.length <= sizes[a.path] for a in got if a.op is Op.READ)


def test_real_traces_per_frame_sequence_moves_in_the_alembic(real_traces: Path) -> None:
    """The Alembic cache holds every frame: each frame reads its own region, further in as frames go."""
    got, _ = load(real_traces / "shot100" / "traces", path_map=PathMap((Prefix("/cloud/proj", aliases=("/studio/proj",)),)))
    abc = "/cloud/proj/shot100/cache/crate_anim.abc"
    assert all(a.path.startswith("/cloud/proj/") for a in got)
    by_frame: dict[int, set[int]] = {}
    for a in got:
        if a.path == abc and a.op is Op.READ and a.frame is not None:
            by_frame.setdefault(a.frame, set()).add(a.offset)
    assert len(by_frame) == 24
    assert by_frame[1] != by_frame[24]


def test_aggregate_runs_equals_aggregate_on_real_traces() -> None:
    from prewarm.plan.aggregate import aggregate, aggregate_runs
    from prewarm.traces.files import read_batches

    shots = Path(__file__).resolve().parents[1] / "sample_jobs"
    paths = [str(shots / "shot100" / "traces"), str(shots / "shot200" / "traces")]
    a, b = aggregate(read_traces(paths)), aggregate_runs(read_batches(paths))
    assert a == b and list(a.reads) == list(b.reads) and list(a.stats) == list(b.stats)
    assert a.sizes == b.sizes and a.sizes, "shot100's newfstatat sizes, through both"
    assert a.records > 50_000 and len(a.frames) == 36
