"""The trace store on the real sample traces: import, list, prune, find, and planning from it."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from prewarm.cli import main
from prewarm.errors import ConfigError, TraceError
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import plan_manifest
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.catalogue import find_traces, list_traces, prune, version_family
from prewarm.traces.files import read_traces
from prewarm.traces.profile import decode as decode_profile
from prewarm.traces.store import OPEN_FRAMES, import_traces

SAMPLE = Path(__file__).resolve().parents[1] / "sample_jobs"
SHOT100 = SAMPLE / "shot100"


def _frames(n: int) -> list[str]:
    return [str(p) for p in sorted((SHOT100 / "traces").iterdir())[:n]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",))


def _manifest(job: str, show: str | None = None, shot: str | None = None) -> object:
    extra = (f"show: {show}\n" if show else "") + (f"shot: {shot}\n" if shot else "")
    return parse_manifest(f"job: {job}\nframes: 1-3\ninputs: [/studio/proj/x]\n{extra}", "m.yaml")


def test_import_normalises_to_one_gzip_jsonl_per_frame(settings: Settings) -> None:
    result = import_traces(settings, _frames(3), "proj", "shot100", "shot100_lighting_v001")
    folder = Path(result.folder)
    assert folder == Path(settings.trace_store or "") / "proj" / "shot100" / "shot100_lighting_v001"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "frame.0001.jsonl.gz", "frame.0002.jsonl.gz", "frame.0003.jsonl.gz"]
    with gzip.open(folder / "frame.0002.jsonl.gz") as fh:
        assert fh.readline().startswith(b'{"path":"/studio/proj/')
    stored = list(read_traces([str(folder)]))
    raw = list(read_traces(_frames(3)))
    assert len(stored) == len(raw) == sum(result.frames.values())
    assert {a.frame for a in stored} == {1, 2, 3}


def test_import_again_replaces_the_frame(settings: Settings) -> None:
    first = import_traces(settings, _frames(2), "proj", "shot100", "j_v001")
    again = import_traces(settings, _frames(2), "proj", "shot100", "j_v001")
    assert first.frames == again.frames
    assert len(list(read_traces([again.folder]))) == sum(first.frames.values())


def test_only_reads_under_the_roots_are_kept(settings: Settings, tmp_path: Path) -> None:
    narrow = Settings(trace_store=settings.trace_store, roots=("/studio/proj/assets",))
    result = import_traces(narrow, _frames(1), None, None, "j")
    assert result.stats.filtered > 0
    assert all(a.path.startswith("/studio/proj/assets/") for a in read_traces([result.folder]))
    assert Path(result.folder).parent.name == "_"        # shot and show unknown


def test_a_file_that_is_not_a_trace_leaves_nothing_behind(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\nworld\n")
    with pytest.raises(TraceError, match="notes.txt"):
        import_traces(settings, [*_frames(1), str(bad)], "proj", "shot100", "j")
    folder = Path(settings.trace_store or "") / "proj" / "shot100" / "j"
    assert not [p for p in folder.iterdir() if p.name.endswith(".gz")]


def test_no_store_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trace_store"):
        import_traces(Settings(), _frames(1), None, None, "j")


def test_plan_from_the_store_matches_the_plan_from_raw_traces(tmp_path: Path, real_traces: Path,
                                                              shot_trees: Path) -> None:
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(shot_trees)),)))
    raw = str(real_traces / "shot100" / "traces")
    import_traces(settings, [raw], "proj", "shot100", "shot100_lighting_v001")
    manifest = load_manifest(SHOT100 / "manifest.yaml")
    found = find_traces(settings, manifest)
    assert len(found) == 1
    assert plan_manifest(manifest, found, settings).ranges == plan_manifest(manifest, [raw], settings).ranges


def test_find_by_shot_then_version_then_rules(settings: Settings) -> None:
    import_traces(settings, _frames(1), "proj", "shot010", "shot010_lighting_v002")
    import_traces(settings, _frames(1), None, None, "shot020_comp_v001")
    import_traces(settings, _frames(1), None, None, "shot030_fx_sim")
    store = Path(settings.trace_store or "")
    assert find_traces(settings, _manifest("anything", "proj", "shot010")) == [
        str(store / "proj" / "shot010" / "shot010_lighting_v002")]
    assert find_traces(settings, _manifest("shot010_lighting_v003")) == [
        str(store / "proj" / "shot010" / "shot010_lighting_v002")]
    assert find_traces(settings, _manifest("shot020_comp_v014")) == [str(store / "_" / "_" / "shot020_comp_v001")]
    assert find_traces(settings, _manifest("shot030_fx_render")) == []
    ruled = Settings(trace_store=settings.trace_store, trace_rules=(r"^(shot\d+)_",))
    assert find_traces(ruled, _manifest("shot030_fx_render")) == [str(store / "_" / "_" / "shot030_fx_sim")]
    assert find_traces(Settings(), _manifest("shot010_lighting_v003")) == []


@pytest.mark.parametrize("name, family", [("shot010_lighting_v003", "shot010_lighting"),
                                          ("shot010_v3_lighting", "shot010_lighting"),
                                          ("shot010.lighting.V012", "shot010.lighting"), ("shot010_fx", None)])
def test_version_family(name: str, family: str | None) -> None:
    assert version_family(name) == family


def test_prune_removes_oldest_jobs_first(settings: Settings) -> None:
    folders = []
    for i, job in enumerate(["a_v001", "a_v002", "a_v003", "b_v001"]):
        r = import_traces(settings, _frames(1), "proj", job[0], job)
        for f in Path(r.folder).iterdir():
            os.utime(f, (1_000_000 + i, 1_000_000 + i))
        folders.append(r.folder)
    sizes = [j.bytes for j in sorted(list_traces(settings), key=lambda j: j.mtime)]
    kept = prune(settings, keep_jobs=2)
    assert [j.job for j in kept.removed] == ["a_v001"]
    budget = prune(settings, max_bytes=sizes[3] + sizes[2])
    assert [j.job for j in budget.removed] == ["a_v002"]
    assert [j.job for j in list_traces(settings)] == ["b_v001", "a_v003"]
    assert list_traces(settings, shot="b")[0].frames == 1


def test_store_budget_applies_after_each_import(tmp_path: Path) -> None:
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",), trace_store_max_bytes=1)
    import_traces(settings, _frames(1), "proj", "s", "old")
    result = import_traces(settings, _frames(1), "proj", "s", "new")
    assert result.pruned == 1
    assert [j.job for j in list_traces(settings)] == ["new"]      # the job just imported is kept


def test_traces_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    assert main(["traces", "--store", store, "import", "--job", "shot100_lighting_v001", "--show", "proj",
                 "--shot", "shot100", *_frames(2)]) == 0
    assert "2 file(s)" in capsys.readouterr().err
    assert main(["traces", "--store", store, "list", "--json"]) == 0
    assert '"job": "shot100_lighting_v001"' in capsys.readouterr().out
    assert main(["traces", "--store", store, "prune"]) == 2
    assert main(["traces", "--store", store, "prune", "--keep-jobs", "0"]) == 0
    assert "1 job(s) removed" in capsys.readouterr().err
    assert main(["traces", "--store", store, "import", "--job", "j", str(tmp_path / "missing")]) == 2
    assert "missing: no such trace file or folder" in capsys.readouterr().err


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) for p in folder.iterdir() if p.name.endswith(".gz")}


def test_an_import_over_processes_stores_what_one_process_does(settings: Settings, tmp_path: Path) -> None:
    # Two files per frame (shot200's frames 1-4 twice, as frame N of a JSON Lines copy too):
    # frames shared between the workers' groups are joined in file order.
    twice = tmp_path / "again"
    twice.mkdir()
    for f in _frames(2)[:2]:
        shutil.copy(f, twice / ("z_" + Path(f).name))
    paths = [*_frames(4), str(twice)]
    one = import_traces(settings, paths, "proj", "s", "one", workers=1)
    many = import_traces(settings, paths, "proj", "s", "many", workers=3, min_parallel_bytes=0)
    assert many.frames == one.frames and many.stats == one.stats
    assert _contents(Path(many.folder)) == _contents(Path(one.folder))
    profiles = [sorted((Path(r.folder) / ".profile").iterdir()) for r in (one, many)]
    assert [decode_profile(p.read_bytes()).reads for p in profiles[0]] == \
        [decode_profile(p.read_bytes()).reads for p in profiles[1]]


def test_an_import_over_processes_fails_whole_on_a_bad_file(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(TraceError, match="notes.txt"):
        import_traces(settings, [*_frames(3), str(bad)], "proj", "s", "j", workers=2, min_parallel_bytes=0)
    folder = Path(settings.trace_store or "") / "proj" / "s" / "j"
    assert not list(folder.iterdir())


def test_more_frames_than_open_files_interleaved_are_filed_whole_and_in_order(settings: Settings,
                                                                             tmp_path: Path) -> None:
    """Traces whose frames come and go (40 frames, each in three files read apart) are filed with
    at most OPEN_FRAMES gzip streams open: a frame that comes back is appended as a further gzip
    member, and its stored file reads back as every one of its records, in order."""
    frames = range(1, 2 * OPEN_FRAMES + 9)
    src = tmp_path / "mixed"
    src.mkdir()
    for k in range(3):
        for f in frames:
            (src / f"r{k}_{f:03d}.jsonl").write_text(
                f'{{"path":"/studio/proj/f{f}.abc","offset":{k * 4096},"length":4096,"frame":{f}}}\n')
    result = import_traces(settings, [str(src)], "proj", "mixed", "j")
    assert result.frames == {f: 3 for f in frames}
    folder = Path(result.folder)
    for f in (1, OPEN_FRAMES + 1, frames[-1]):
        stored = list(read_traces([str(folder / f"frame.{f:04d}.jsonl.gz")]))
        assert [(a.path, a.offset, a.frame) for a in stored] == [(f"/studio/proj/f{f}.abc", k * 4096, f) for k in range(3)]
        profile = decode_profile((folder / ".profile" / f"frame.{f:04d}.jsonl.gz.json").read_bytes())
        assert profile.reads == {f"/studio/proj/f{f}.abc": [(0, 3 * 4096)]} and profile.records == 3


@pytest.mark.parametrize("shot, tree", [("shot100", "shot_trees"), ("shot200", "real_textures")])
def test_a_plan_over_forked_parts_is_the_plan_made_in_one_process(real_traces: Path, shot: str, tree: str,
                                                                  request: pytest.FixtureRequest,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`prewarm plan` predicts and orders the traced files in forked parts (cores > 1): the plan
    must be the one a single process makes, byte for byte, on the sample shots (shot200 with
    its real textures, so the structured files' model runs in the children too)."""
    import prewarm.flow.planning as planning
    forks: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(planning, "FORK_MAX_RSS", 1 << 40)  # the test process itself is larger than a planner
    monkeypatch.setattr(os, "fork", fork)
    root = request.getfixturevalue(tree)
    settings = Settings(roots=("/studio/proj",), path_map=PathMap((Prefix("/studio/proj", (), str(root)),)))
    manifest = load_manifest(SAMPLE / shot / "manifest.yaml")
    traces = [str(real_traces / shot / "traces")]
    one = plan_manifest(manifest, traces, settings, clock=lambda: 0.0)
    assert not forks
    forked = plan_manifest(manifest, traces, settings, clock=lambda: 0.0, cores=3)
    assert len(forks) == 2, "two children, the third part planned here"
    assert "".join(forked.json_text()) == "".join(one.json_text())
    assert len(one.ranges) > 10
    if shot == "shot200":
        assert one.stats.predict.tiled_files > 0
