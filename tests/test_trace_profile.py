"""Trace profiles: the compact per-frame part of a TraceSet the store keeps beside each raw frame file.

On the real sample traces: profiles merge to exactly the TraceSet the raw store files
aggregate to (order included), plans from them equal plans from the raw traces, stale and
corrupt profiles are rebuilt, and render nodes filing frames at once never leave a
profile that disagrees with its raw file.
"""

from __future__ import annotations

import multiprocessing
import shutil
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from prewarm.flow.jobs import load_manifest, plan_job
from prewarm.plan.aggregate import TraceSet, aggregate
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.catalogue import PROFILES, list_traces, prune, store_traces
from prewarm.traces.files import read_traces, trace_files
from prewarm.traces.loading import frame_profiles, load_profiles
from prewarm.traces.profile import FORMAT, FrameProfile, ProfileError, decode, encode
from prewarm.traces.store import import_traces

SAMPLE = Path(__file__).resolve().parents[1] / "sample_jobs"


def _frames(shot: str, n: int | None = None) -> list[str]:
    return [str(p) for p in sorted((SAMPLE / shot / "traces").iterdir())[:n]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",))


def _order(ts: TraceSet) -> tuple[list[str], list[list[int]], list[str], list[str]]:
    """What the planner iterates, in its order: equal TraceSets must iterate alike."""
    return list(ts.reads), [list(per) for per in ts.reads.values()], list(ts.stats), list(ts.listed)


def test_encode_decode_round_trip() -> None:
    p = FrameProfile(1001, (123, 456), 7, {"/s/b.tx": [(0, 10), (20, 30)], "/s/a.tx": [(5, 6)]},
                     ("/s/a.tx", "/s/c"), ("/s/tex",))
    back = decode(encode(p))
    assert back == replace(p, reads=dict(p.reads))
    assert list(back.reads) == ["/s/b.tx", "/s/a.tx"]          # first-read order survives


@pytest.mark.parametrize("change, why", [
    ({"format": "prewarm.profile/0"}, "format"),
    ({"reads": [["/a", [0, 10, 10, 20]]]}, "normal span list"),        # touching spans are not normal
    ({"reads": [["/a", [10, 5]]]}, "normal span list"),
    ({"reads": [["/a", [0, True]]]}, "normal span list"),
    ({"reads": [["/a", [0, 1.5]]]}, "normal span list"),
    ({"reads": [["/a", [-4, 5]]]}, "normal span list"),
    ({"reads": [["/a", [0, 5, 9]]]}, "normal span list"),
    ({"reads": [["/a", [0, 5]], ["/a", [9, 10]]]}, "twice"),
    ({"reads": [["rel", [0, 5]]]}, "path"),
    ({"stats": ["relative"]}, "stats"),
    ({"records": -1}, "records"),
    ({"source": [1]}, "source"),
    ({"frame": "1001"}, "frame"),
])
def test_decode_refuses_what_is_not_a_profile(change: dict[str, object], why: str) -> None:
    good = orjson.loads(encode(FrameProfile(1, (1, 2), 3, {"/a": [(0, 5)]})))
    with pytest.raises(ProfileError, match=why):
        decode(orjson.dumps({**good, **change}))
    with pytest.raises(ProfileError):
        decode(encode(FrameProfile(1, (1, 2), 3))[:-7])           # torn


def test_profiles_merge_to_the_traceset_of_the_raw_store_files(settings: Settings) -> None:
    # Two jobs of one shot, overlapping frames (1-24 of both), one with records of no frame.
    import_traces(settings, _frames("shot100"), "proj", "shot100", "shot100_lighting_v001")
    import_traces(settings, _frames("shot200"), "proj", "shot100", "shot100_lighting_v002")
    noframe = Path(settings.trace_store or "") / "x.jsonl"
    noframe.write_bytes(b'{"path": "/studio/proj/shot100/shot100_lighting_v001.blend", "offset": 0, "length": 9}\n')
    import_traces(settings, [str(noframe)], "proj", "shot100", "shot100_lighting_v002")
    manifest = load_manifest(SAMPLE / "shot100" / "manifest.yaml")
    stored = load_profiles(settings, manifest)
    assert stored.rebuilt == 0 and stored.profiles == 24 + 36 + 1
    raw = aggregate(read_traces(stored.folders))
    assert stored.traces == raw and _order(stored.traces) == _order(raw)
    assert stored.traces.unframed == 1 and stored.traces.frames == frozenset(range(1, 37))
    with_frame = load_profiles(settings, manifest, frame=5).traces       # what `--frame 5` does to raw files
    assert with_frame == aggregate(read_traces(stored.folders, frame=5)) and with_frame.unframed == 0
    aliased = PathMap((Prefix("/studio/show", aliases=("/studio/proj",)),))
    moved = load_profiles(settings, manifest, aliased).traces
    assert moved == aggregate(read_traces(stored.folders, aliased)) and all(p.startswith("/studio/show/")
                                                                           for p in moved.reads)


@pytest.mark.parametrize("shot", ["shot100", "shot200"])
def test_plan_from_profiles_is_the_plan_from_the_raw_traces(tmp_path: Path, shot_trees: Path, shot: str) -> None:
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(shot_trees)),)))
    raw = str(SAMPLE / shot / "traces")
    result = import_traces(settings, [raw], "proj", shot, f"{shot}_earlier_v001")
    manifest = str(SAMPLE / shot / "manifest.yaml")
    from_profiles = plan_job(manifest, [], settings)
    from_store_files = plan_job(manifest, [result.folder], settings)
    from_raw = plan_job(manifest, [raw], settings)
    assert from_profiles.stats.store.traces_from_store == [result.folder]
    core = ("ranges", "metadata", "files", "missing", "dropped", "frames")
    for other in (from_store_files, from_raw):
        assert all(getattr(from_profiles, k) == getattr(other, k) for k in core)
    assert len(from_profiles.ranges) > 10 and {r.reason for r in from_profiles.ranges} >= {"trace"}
    assert replace(from_profiles.stats, store=None) == from_store_files.stats      # records and frames counted alike


def test_stale_torn_and_old_format_profiles_are_rebuilt(settings: Settings) -> None:
    result = import_traces(settings, _frames("shot100", 3), "proj", "shot100", "j_v001")
    folder = Path(result.folder)
    raws = [Path(r.path) for r in trace_files(str(folder))]
    kept = sorted((folder / PROFILES).iterdir())
    assert [p.name for p in kept] == [r.name + ".json" for r in raws]
    manifest = load_manifest(SAMPLE / "shot100" / "manifest.yaml")

    kept[0].write_bytes(kept[0].read_bytes().replace(FORMAT.encode(), b"prewarm.profile/0"))   # a format change
    kept[1].write_bytes(kept[1].read_bytes()[:100])                                            # torn
    # frame 3 filed again by an older prewarm: the raw file changes, its profile does not
    other = import_traces(settings, _frames("shot200", 3)[2:], "proj", "elsewhere", "scratch")
    shutil.copy(Path(other.folder) / "frame.0003.jsonl.gz", raws[2])
    stored = load_profiles(settings, manifest)
    assert stored.rebuilt == 3
    truth = aggregate(read_traces([str(folder)]))
    assert stored.traces == truth
    assert all(decode(p.read_bytes()).source == (r.stat().st_size, r.stat().st_mtime_ns)
               for p, r in zip(sorted((folder / PROFILES).iterdir()), raws, strict=True))      # written back
    assert load_profiles(settings, manifest).rebuilt == 0


def test_a_store_filed_before_profiles_existed_is_profiled_on_first_read(settings: Settings) -> None:
    result = import_traces(settings, _frames("shot200", 4), "proj", "shot200", "old_v001")
    shutil.rmtree(Path(result.folder) / PROFILES)
    manifest = load_manifest(SAMPLE / "shot200" / "manifest.yaml")
    first = load_profiles(settings, manifest)
    assert first.rebuilt == 4 and first.traces == aggregate(read_traces([result.folder]))
    assert load_profiles(settings, manifest).rebuilt == 0


def test_prune_counts_and_removes_profiles(settings: Settings) -> None:
    a = import_traces(settings, _frames("shot100", 2), "proj", "s", "a_v001")
    profile_bytes = sum(p.stat().st_size for p in (Path(a.folder) / PROFILES).iterdir())
    assert profile_bytes > 0
    assert list_traces(settings)[0].bytes == a.bytes + profile_bytes
    prune(settings, keep_jobs=0)
    assert not Path(a.folder).exists()


def _file_frames(store: str, shot: str, frames: list[int]) -> None:
    """One render node: files frames one at a time, as `prewarm record` does after each render."""
    settings = Settings(trace_store=store, roots=("/studio/proj",))
    for f in frames:
        import_traces(settings, [_frames(shot)[f - 1]], "proj", "shotX", "shotX_lighting_v001")


def test_render_nodes_filing_frames_at_once_leave_a_consistent_store(settings: Settings) -> None:
    """Four processes file frames 1-24 of one job at once; two of them file every frame from a
    different render (shot200's traces), so every frame is raced by nodes with different content."""
    ctx = multiprocessing.get_context("spawn")
    store = settings.trace_store or ""
    nodes = [("shot100", list(range(1, 25))), ("shot200", list(range(24, 0, -1))),
             ("shot100", list(range(12, 25)) + list(range(1, 12))), ("shot200", list(range(1, 25)))]
    procs = [ctx.Process(target=_file_frames, args=(store, shot, frames)) for shot, frames in nodes]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    folder = Path(store) / "proj" / "shotX" / "shotX_lighting_v001"
    raws = [Path(r.path) for r in trace_files(str(folder))]
    assert [r.name for r in raws] == [f"frame.{f:04d}.jsonl.gz" for f in range(1, 25)]
    assert not [p for p in folder.rglob(".tmp-*")]
    for raw in raws:   # a kept profile that names its raw file describes exactly that file
        kept = decode((folder / PROFILES / (raw.name + ".json")).read_bytes())
        if kept.source == (raw.stat().st_size, raw.stat().st_mtime_ns):
            part = aggregate(read_traces([str(raw)]))
            assert kept.reads == {p: per[kept.frame] for p, per in part.reads.items()}
            assert kept.records == part.records
    manifest = replace(load_manifest(SAMPLE / "shot100" / "manifest.yaml"), shot="shotX")
    stored = load_profiles(settings, manifest)
    assert stored.traces == aggregate(read_traces([str(folder)]))
    assert stored.traces.frames == frozenset(range(1, 25))
    again = frame_profiles(store_traces(settings, [str(folder)])[0])
    assert not again[1]


def test_profiles_of_many_stale_files_are_rebuilt_over_processes(settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from prewarm.traces import loading

    result = import_traces(settings, _frames("shot200"), "proj", "shot200", "old_v001")
    shutil.rmtree(Path(result.folder) / PROFILES)
    monkeypatch.setattr(loading, "PARALLEL_BYTES", 0)
    manifest = load_manifest(SAMPLE / "shot200" / "manifest.yaml")
    stored = load_profiles(settings, manifest)
    raw = aggregate(read_traces([result.folder]))
    assert stored.rebuilt == 36 and stored.traces == raw and _order(stored.traces) == _order(raw)
    assert load_profiles(settings, manifest).rebuilt == 0           # written back by the workers


def test_a_job_with_an_unreadable_raw_file_is_left_out_and_said(tmp_path: Path, shot_trees: Path) -> None:
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(shot_trees)),)))
    good = import_traces(settings, _frames("shot100"), "proj", "shot100", "a_v001")
    bad = import_traces(settings, _frames("shot100", 2), "proj", "shot100", "b_v001")
    torn = Path(bad.folder) / "frame.0002.jsonl.gz"
    torn.write_bytes(torn.read_bytes()[:200])
    plan = plan_job(str(SAMPLE / "shot100" / "manifest.yaml"), [], settings)
    assert list(plan.stats.store.traces_skipped) == [bad.folder]
    assert "frame.0002.jsonl.gz" in plan.stats.store.traces_skipped[bad.folder]
    assert plan.ranges == plan_job(str(SAMPLE / "shot100" / "manifest.yaml"), [good.folder], settings).ranges
