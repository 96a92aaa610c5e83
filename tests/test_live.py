"""Frame events and live re-planning on a real Redis, batches run in this process.

The events table (`prewarm.state.frames`) is replayed event by event; re-planning runs
against a real trace store in a temporary folder and a small studio tree.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from prewarm.errors import ManifestError
from prewarm.flow import live, warming
from prewarm.flow.planning import plan_manifest
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.records import Reason
from prewarm.report.frames import live_report
from prewarm.state import frames as fstate
from prewarm.state import keys
from prewarm.state.frames import FrameEvent, FrameState, Kind, Outcome
from prewarm.state.jobs import WarmJob
from prewarm.warm.job import JobState
from tests.fixtures.services import ROOT
from tests.fixtures.studio import Studio
from tests.test_warm_redis import Sent, drain

MiB = 1 << 20

MANIFEST = """\
job: shot100_fx_v002
show: proj
shot: shot100
frames: 1-8
inputs:
  - /studio/proj/cache/fluid.####.vdb
  - /studio/proj/tex/big.tx
"""


def _register(r: redis.Redis, job: str = "job-1", frames: str = "1-8") -> None:
    live.register(r, job, parse_manifest(MANIFEST.replace("1-8", frames), "m.yaml"), [])


S, D, RQ, F, P = Kind.START, Kind.DONE, Kind.REQUEUE, Kind.FAIL, Kind.PROGRESS


@pytest.mark.parametrize(("events", "outcomes", "final"), [
    ([(S, 10, "a"), (D, 20, "a")], ["started", "done"], "done"),
    ([(S, 10, "a"), (S, 11, "a")], ["started", "duplicate"], "running"),
    ([(S, 10, "a"), (S, 11, "b")], ["started", "restarted"], "running"),
    ([(D, 20, "a"), (S, 10, "a")], ["done_without_start", "late_start"], "done"),
    ([(S, 10, "a"), (D, 20, "a"), (D, 21, "a")], ["started", "done", "duplicate"], "done"),
    ([(S, 10, "a"), (D, 20, "a"), (S, 30, "b")], ["started", "done", "restarted"], "running"),
    ([(S, 10, "a"), (RQ, 12, ""), (S, 13, "b")], ["started", "requeued", "started"], "running"),
    ([(S, 10, "a"), (F, 12, ""), (F, 13, "")], ["started", "failed", "duplicate"], "failed"),
    ([(RQ, 5, "")], ["duplicate"], None),
    ([(S, 10, "a"), (P, 11, "a"), (P, 12, "a"), (D, 20, "a")], ["started", "progress", "progress", "done"], "done"),
    ([(P, 5, "")], ["late_progress"], None),
    ([(S, 10, "a"), (D, 20, "a"), (P, 19, "a")], ["started", "done", "late_progress"], "done"),
])
@pytest.mark.integration
def test_events_are_applied_once_in_any_order(r: redis.Redis, events: list[tuple[Kind, float, str]],
                                             outcomes: list[str], final: str | None) -> None:
    _register(r)
    got = [fstate.apply(r, FrameEvent(k, "job-1", 3, at, node)).value for k, at, node in events]
    assert got == outcomes
    state = fstate.frames(r, "job-1")
    assert (state[3].state.value if 3 in state else None) == final
    assert sum(fstate.counters(r, "job-1").values()) == len(events)


@pytest.mark.integration
def test_a_frame_started_late_keeps_both_times(r: redis.Redis) -> None:
    _register(r)
    fstate.apply(r, FrameEvent(D, "job-1", 2, 50.0, "n1"))
    fstate.apply(r, FrameEvent(S, "job-1", 2, 20.0, "n1"))
    f = fstate.frames(r, "job-1")[2]
    assert (f.started, f.finished, f.node) == (20.0, 50.0, "n1")
    assert [e["outcome"] for e in fstate.odd_events(r, "job-1")] == ["late_start", "done_without_start"]


@pytest.mark.integration
def test_unknown_jobs_and_frames_are_refused_and_counted(r: redis.Redis) -> None:
    _register(r)
    assert fstate.apply(r, FrameEvent(S, "nobody", 1, 1.0)) is Outcome.UNKNOWN_JOB
    assert fstate.apply(r, FrameEvent(S, "job-1", 999, 1.0)) is Outcome.UNKNOWN_FRAME
    assert r.hget(keys.LIVE_REFUSED, "unknown_job") == b"1"
    assert not r.exists(keys.live("nobody", "meta")), "nothing is stored for a job nobody registered"
    assert fstate.frames(r, "job-1") == {}


@pytest.mark.integration
def test_a_flood_is_absorbed_in_bounded_memory(r: redis.Redis) -> None:
    _register(r, frames="1-100")
    kinds = (S, D, S, RQ, D)
    events = [FrameEvent(kinds[i % 5], "job-1", 1 + i % 150, float(i), f"n{i % 7}") for i in range(10_000)]
    outcomes = fstate.apply_many(r, events)
    assert len(outcomes) == 10_000
    assert r.hlen(keys.live("job-1", "frames")) <= 100, "one field per frame of the job, whatever the rate"
    assert r.llen(keys.live("job-1", "log")) == fstate.LOG_LINES
    assert sum(o is Outcome.UNKNOWN_FRAME for o in outcomes) == sum(1 + i % 150 > 100 for i in range(10_000))
    for n in range(5):
        live.report_event(r, Studio(Path("/nonexistent")).settings(), FrameEvent(D, "job-1", 1 + n, 1.0), now=1.0)
    assert r.zcard(keys.LIVE_DUE) == 1, "many finished frames ask for one re-plan"


def test_job_ids_are_checked() -> None:
    assert live.check_job_id("job-0123abcd") == "job-0123abcd"
    for bad in ("", "../x", "a b", "x" * 200, "-x"):
        with pytest.raises(live.InputError):
            live.check_job_id(bad)


def test_a_registered_manifest_text_is_read_by_the_one_job_loader() -> None:
    """What `prewarm plan` reads as a job's text, a re-plan reads: YAML, JSON, a bundle posted whole;
    a plan's text is no job to re-plan."""
    yaml_text = "job: shot010\nframes: 1-3\ninputs: [/studio/proj/a.blend]\n"
    assert live.load_manifest_text("manifest", yaml_text) == parse_manifest(yaml_text, "manifest")
    template = (ROOT / "sample_jobs" / "bundles" / "nuke_comp_chunked" / "template.yaml").read_text()
    values = {"parameterValues": [{"name": "Frames", "value": "1-2"},
                                  {"name": "NukeScriptFile", "value": "/studio/proj/comp.nk"}]}
    bundle = live.load_manifest_text("manifest", json.dumps({"template": template, "parameter_values": values}))
    assert bundle.frames == (1, 2) and "/studio/proj/comp.nk" in [i.path for i in bundle.inputs]
    with pytest.raises(ManifestError, match="a plan, not a job"):
        live.load_manifest_text("manifest", json.dumps({"job": "x", "ranges": []}))
    with pytest.raises(live.ConfigError, match="only the service can re-plan it"):
        live.load_manifest_text("submission", "{}")


# re-planning


def _tree(studio: Studio) -> None:
    for f in range(1, 9):
        studio.file(f"cache/fluid.{f:04d}.vdb", 2 * MiB)
    studio.file("tex/big.tx", 8 * MiB)


def _trace(tmp: Path, frame: int) -> str:
    """What frame `frame` read: the head of its own cache file and the first MiB of the texture."""
    lines = [{"path": f"/studio/proj/cache/fluid.{frame:04d}.vdb", "offset": 0, "length": 256 << 10, "frame": frame},
             {"path": "/studio/proj/tex/big.tx", "offset": 0, "length": MiB, "frame": frame}]
    p = tmp / f"frame.{frame}.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(p)


@pytest.fixture
def running(r: redis.Redis, studio: Studio, tmp_path: Path) -> tuple[live.Manifest, Sent, object]:
    _tree(studio)
    settings = studio.settings(trace_store=str(tmp_path / "store"), dispatch_window=1, throttle_bps=MiB)
    manifest = parse_manifest(MANIFEST, "m.yaml")
    plan = plan_manifest(manifest, None, settings)
    sent = Sent()
    ids = warming.submit_plan(r, plan, settings, sent, "plan").ids
    live.register(r, "job-1", manifest, ids, "manifest", MANIFEST)
    return manifest, sent, settings


@pytest.mark.integration
def test_finished_frames_replan_the_rest_and_drop_guesses(r: redis.Redis, studio: Studio, tmp_path: Path,
                                                         running: tuple[live.Manifest, Sent, object]) -> None:
    _, sent, settings = running
    first = json.loads(fstate.registered(r, "job-1")["warm"])  # type: ignore[index]
    before = WarmJob(r, first[0]).plan()
    assert {pr.reason for pr in before.ranges} == {Reason.FALLBACK}, "no traces yet: whole files"
    for f, node in ((1, "n1"), (2, "n2")):
        assert live.report_event(r, settings, FrameEvent(S, "job-1", f, 100.0, node)).outcome is Outcome.STARTED
    for f in (1, 2):
        rep = live.report_event(r, settings, FrameEvent(D, "job-1", f, 160.0), _trace(tmp_path, f))
        assert rep.to_json() == {"outcome": "done", "trace": "filed"}
    live.report_event(r, settings, FrameEvent(S, "job-1", 3, 161.0, "n1"))
    [done] = live.replan_due(r, settings, sent, now=1e12)
    assert done.frames == 5 and done.running == 1
    assert done.dropped_bytes > 0 and all(d["reason"] == "fallback" for d in done.dropped)
    new = WarmJob(r, done.warm[0]).plan()
    # The texture's head may have gone out with the first warm's batch (then the re-plan has nothing of it
    # left to add); its tail, a guess no finished frame read, is dropped either way.
    assert all(pr.end <= 2 * MiB for pr in new.ranges if pr.path.endswith("big.tx")), "the texture's tail is gone"
    assert any(str(d["path"]).endswith("big.tx") and int(str(d["offset"])) >= MiB for d in done.dropped)
    assert all(pr.frame is None or pr.frame >= 3 for pr in new.ranges)
    old = WarmJob(r, first[0])
    assert r.hget(old.key, "superseded_by") and r.zscore(keys.gateway("default", "jobs"), old.id) is None
    drain(r, studio, sent)
    assert old.state() in (JobState.DONE, JobState.CANCELLED) and WarmJob(r, done.warm[0]).state() is JobState.DONE
    live.report_event(r, settings, FrameEvent(S, "job-1", 4, 300.0, "n2"))
    report = live_report(r, "job-1", settings)
    assert report is not None
    warm_at = {f.frame: f.warm_at_start for f in report.frames}
    assert warm_at == {1: False, 2: False, 3: False, 4: True}, "1-3 started before any batch ran, 4 after all"
    assert report.started_before_warm == [1, 2, 3]
    ev = report.evaluation
    assert ev is not None and ev.overall is not None and ev.frames_traced == 2 and ev.overall.recall == 1.0
    shown = report.to_json()
    assert shown["started_before_warm"] == [1, 2, 3] and shown["evaluation"]["overall"]["recall"] == 1.0
    assert shown["frames"][0]["state"] == "done" and "evaluation" not in live_report(r, "job-1").to_json()
    sent_spans = fstate.covered(r, "job-1")
    for pr in new.ranges:  # the new warm never reads what the old one had sent
        assert not any(s < pr.end and e > pr.offset for s, e in sent_spans.get(pr.path, []))


@pytest.mark.integration
def test_running_frames_records_so_far_replan_within_minutes(r: redis.Redis, tmp_path: Path,
                                                             running: tuple[live.Manifest, Sent, object]) -> None:
    _, sent, settings = running
    for f in range(1, 5):
        live.report_event(r, settings, FrameEvent(S, "job-1", f, 100.0, f"n{f}"))
        rep = live.report_event(r, settings, FrameEvent(P, "job-1", f, 160.0), _trace(tmp_path, f))
        assert rep.to_json() == {"outcome": "progress", "trace": "filed"}
    assert fstate.evidence(r, "job-1") == 4 and r.zscore(keys.LIVE_DUE, "job-1") is not None
    [done] = live.replan_due(r, settings, sent, now=1e12)
    assert done.frames == 4 and done.running == 4, "frames 5-8 re-planned, the running ones not"
    assert any(str(d["path"]).endswith("big.tx") and "fallback" in str(d["why"]) for d in done.dropped), \
        "4 frames' records so far read only the texture's head: its whole-file guess is dropped"
    new = WarmJob(r, done.warm[0]).plan()
    assert {pr.path.rsplit("/", 1)[-1] for pr in new.ranges if pr.frame is not None} <= {
        f"fluid.{f:04d}.vdb" for f in range(5, 9)}
    # Late or unreadable records never replace a finished frame's trace, and never stop the job.
    store = tmp_path / "store" / "proj" / "shot100" / "shot100_fx_v002" / "frame.0001.jsonl.gz"
    live.report_event(r, settings, FrameEvent(D, "job-1", 1, 900.0), _trace(tmp_path, 1))
    filed = store.stat().st_mtime_ns
    late = live.report_event(r, settings, FrameEvent(P, "job-1", 1, 890.0), _trace(tmp_path, 1))
    assert late.outcome is Outcome.LATE_PROGRESS and late.trace is None and store.stat().st_mtime_ns == filed
    bad = tmp_path / "partial.jsonl"
    bad.write_text("not records\n")
    rep = live.report_event(r, settings, FrameEvent(P, "job-1", 2, 300.0), str(bad))
    assert rep.outcome is Outcome.PROGRESS and (rep.trace or "").startswith("not filed")
    assert fstate.odd_events(r, "job-1")[0]["finding"] == "trace not filed"


@pytest.mark.integration
def test_a_trace_that_cannot_be_read_is_a_finding(r: redis.Redis, tmp_path: Path,
                                                  running: tuple[live.Manifest, Sent, object]) -> None:
    _, sent, settings = running
    bad = tmp_path / "frame.4.jsonl"
    bad.write_text("this is not a trace\n")
    live.report_event(r, settings, FrameEvent(S, "job-1", 4, 1.0))
    rep = live.report_event(r, settings, FrameEvent(D, "job-1", 4, 2.0), str(bad))
    assert rep.outcome is Outcome.DONE and (rep.trace or "").startswith("not filed")
    assert fstate.odd_events(r, "job-1")[0]["finding"] == "trace not filed"
    [done] = live.replan_due(r, settings, sent, now=1e12)
    assert done.frames == 7 and done.warm, "the job warms on"


@pytest.mark.integration
def test_replan_skips_a_job_whose_frames_all_started(r: redis.Redis, running: tuple[live.Manifest, Sent, object]
                                                     ) -> None:
    _, sent, settings = running
    for f in range(1, 9):
        live.report_event(r, settings, FrameEvent(S, "job-1", f, 1.0, f"n{f}"))
    assert live.replan(r, settings, sent, "job-1").skipped == "every frame has started"


def test_eta_follows_farm_order_and_pace() -> None:
    st = {1: fstate.Frame(1, FrameState.DONE, "a", 0.0, 600.0), 2: fstate.Frame(2, FrameState.RUNNING, "a", 600.0),
          3: fstate.Frame(3, FrameState.RUNNING, "b", 600.0)}
    when = live.eta([5, 4, 6], st, 1000.0)
    assert when == {5: 1300.0, 4: 1300.0, 6: 1900.0}
    assert replace(st[1], node="x").node == "x"


@pytest.mark.integration
def test_the_frame_command(redis_url: str, r: redis.Redis, studio: Studio, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from prewarm.cli import main

    _tree(studio)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(MANIFEST)
    config = studio.config(tmp_path / "c.yaml", trace_store=str(tmp_path / "store"))
    base = ["--config", str(config), "frame"]
    assert main([*base, "register", "5f2a9c", str(manifest), "--warm", "abc123", "--redis", redis_url]) == 2
    assert "warm[0]: warm job abc123 is not a warm of job 'shot100_fx_v002'" in capsys.readouterr().err
    settings = studio.settings()
    [warm_id] = warming.submit_plan(r, plan_manifest(parse_manifest(MANIFEST, "m"), [], settings), settings, Sent(),
                                    "plan").ids
    assert main([*base, "register", "5f2a9c", str(manifest), "--warm", warm_id, "--redis", redis_url]) == 0
    assert main([*base, "start", "5f2a9c", "2", "--node", "n9", "--at", "10", "--redis", redis_url]) == 0
    assert main([*base, "progress", "5f2a9c", "2", "--at", "40", "--trace", _trace(tmp_path, 2), "--redis",
                 redis_url]) == 0
    assert "5f2a9c frame 2: progress; trace filed" in capsys.readouterr().err
    assert main([*base, "done", "5f2a9c", "2", "--at", "70", "--trace", _trace(tmp_path, 2), "--redis",
                 redis_url]) == 0
    assert "5f2a9c frame 2: done; trace filed" in capsys.readouterr().err
    assert main([*base, "done", "5f2a9c", "2", "--redis", redis_url]) == 0
    assert "duplicate" in capsys.readouterr().err
    assert main([*base, "start", "5f2a9c", "77", "--redis", redis_url]) == 2
    assert capsys.readouterr().err.strip() == "prewarm frame: 5f2a9c frame 77: refused: unknown frame"
    assert main([*base, "start", "5f2a9c", "two", "--redis", redis_url]) == 2
    assert main([*base, "show", "5f2a9c", "--json", "--redis", redis_url]) == 0
    shown = json.loads(capsys.readouterr().out)
    [row] = shown["frames"]
    assert row["warm_at_start"] is False and row["batches_missing_at_start"] > 0, "nothing ran its batches"
    assert {k: row[k] for k in ("frame", "state", "node", "started", "finished", "attempts")} == {
        "frame": 2, "state": "done", "node": "n9", "started": 10.0, "finished": 70.0, "attempts": 1}
    assert shown["evaluation"]["frames_traced"] == 1 and shown["evaluation"]["overall"]["recall"] == 1.0
    assert (tmp_path / "store" / "proj" / "shot100" / "shot100_fx_v002" / "frame.0002.jsonl.gz").exists()


def test_guesses_no_traced_frame_read_are_dropped_once_enough_frames_finished() -> None:
    from prewarm.plan.records import PlannedRange

    ranges = [PlannedRange("/s/a", 0, 10, 5, 1, Reason.TRACE), PlannedRange("/s/b", 0, 99, None, 1, Reason.FALLBACK),
              PlannedRange("/s/c", 0, 7, 6, 1, Reason.WHOLE), PlannedRange("/s/d", 0, 5, 6, 1, Reason.UNREAD_TILE)]
    assert live.without_unread(ranges, live.MIN_EVIDENCE - 1) == (ranges, [])
    keep, drop = live.without_unread(ranges, live.MIN_EVIDENCE)
    assert [r.path for r in keep] == ["/s/a", "/s/c", "/s/d"] and [r.path for r in drop] == ["/s/b"]


@pytest.mark.integration
def test_one_replan_of_a_job_at_a_time(r: redis.Redis, running: tuple[live.Manifest, Sent, object]) -> None:
    _, sent, settings = running
    held = r.lock(keys.live("job-1", "lock"), timeout=30)
    assert held.acquire()
    assert live.replan(r, settings, sent, "job-1").skipped == "another re-plan of the job is running"
    held.release()
    assert live.replan(r, settings, sent, "job-1").warm, "the lock is free again"


def _file(settings: object, tmp: Path, frame: int, reads: list[tuple[str, int, int]]) -> None:
    from prewarm.traces.store import import_traces

    p = tmp / f"f{frame}.jsonl"
    p.write_text("".join(json.dumps({"path": f"/studio/proj/{rel}", "offset": o, "length": n, "frame": frame}) + "\n"
                         for rel, o, n in reads))
    import_traces(settings, [str(p)], "proj", "shot100", "shot100_fx_v002", frame=frame)  # type: ignore[arg-type]


def _bytes(ranges: list[live.PlannedRange]) -> dict[str, list[tuple[int, int]]]:
    return live._spans((pr.path, pr.offset, pr.length) for pr in ranges)


def test_incremental_replans_predict_only_what_new_frames_change(studio: Studio, tmp_path: Path) -> None:
    _tree(studio)
    studio.file("tex/other.bin", 4 * MiB)
    settings = studio.settings(trace_store=str(tmp_path / "store"))
    manifest = parse_manifest(MANIFEST + "  - /studio/proj/tex/other.bin\n", "m.yaml")
    for f in (1, 2, 3, 4):
        _file(settings, tmp_path, f, [(f"cache/fluid.{f:04d}.vdb", 0, 256 << 10), ("tex/big.tx", 0, MiB),
                                      ("tex/other.bin", MiB, 64 << 10)])
    job = f"inc-{tmp_path.name}"
    live.replan_incrementally(settings, job, manifest, (5, 6, 7, 8))
    assert live.last_incremental[job].whole == "first re-plan of the job here"
    for f in (5, 6):  # a wave that reads more of the texture and none of other.bin
        _file(settings, tmp_path, f, [(f"cache/fluid.{f:04d}.vdb", 0, 512 << 10), ("tex/big.tx", 0, 2 * MiB)])
    second = live.replan_incrementally(settings, job, manifest, (7, 8))
    how = live.last_incremental[job]
    assert how.whole == "" and how.changed_files == 3, "fluid.0005, fluid.0006 and big.tx changed"
    assert how.planned_files == 7, "the fluid sequence (6 traced files, each borrows from its neighbours) and " \
                                   "big.tx; not other.bin"
    whole = plan_manifest(manifest, None, settings, live.PlanOptions(frames=(7, 8)))
    got, want = _bytes(list(second.ranges)), _bytes(list(whole.ranges))
    for path, spans in want.items():  # every byte the whole re-plan names, the incremental one names too
        assert not live.subtract(spans, got.get(path, [])), path
    assert got["/studio/proj/tex/other.bin"] == want["/studio/proj/tex/other.bin"], "reused as planned"
    assert got["/studio/proj/tex/big.tx"] == want["/studio/proj/tex/big.tx"], "re-predicted from the new frames"
    requeued = live.replan_incrementally(settings, job, manifest, (3, 7, 8))
    assert live.last_incremental[job].whole == "frames wait again that the last plan did not cover"
    assert "/studio/proj/cache/fluid.0003.vdb" in {pr.path for pr in requeued.ranges}


@pytest.mark.integration
def test_a_primed_job_is_replanned_incrementally_from_its_first_replan(
        r: redis.Redis, tmp_path: Path, running: tuple[live.Manifest, Sent, object]) -> None:
    _, sent, settings = running
    live.forget("job-1")
    assert live.prime(r, settings, "job-1") and not live.prime(r, settings, "job-1"), "once per job"
    assert not live.prime(r, settings, "nobody")
    for f in (1, 2):
        live.report_event(r, settings, FrameEvent(S, "job-1", f, 100.0, f"n{f}"))
        live.report_event(r, settings, FrameEvent(D, "job-1", f, 160.0), _trace(tmp_path, f))
    [done] = live.replan_due(r, settings, sent, now=1e12)
    assert done.planned is not None and done.planned.changed_files == 3, done.to_json()["planned"]
    assert done.planned.whole == "3 of 3 files' evidence changed", "compared with the primed plan (in a job this " \
                                                                   "small every file changed: planned whole)"
    assert done.frames == 6 and done.warm
