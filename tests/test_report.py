"""The warm report: data from a job's real state (embedded and in Redis), the command, the page in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ijson
import pytest
import redis

from prewarm.errors import PlanFileError
from prewarm.plan.model import Plan
from prewarm.plan.ranges import ByteRange
from prewarm.plan.records import FileInfo, PlannedRange
from prewarm.report import build as report
from prewarm.report import html as report_html
from prewarm.report.model import CoverageRow, Tally
from prewarm.state import runner
from prewarm.state.jobs import WarmJob
from prewarm.warm import embedded
from prewarm.warm.batches import Batch, Reads
from prewarm.warm.job import JobInfo, JobState
from prewarm.warm.results import FileFinding, FindingKind, Snapshot
from prewarm.warm.timeline import Point, Sampler, merged
from tests.fixtures.services import ROOT
from tests.fixtures.studio import Studio

MiB = 1 << 20


class Sent(list[tuple[str, str, int]]):
    def __call__(self, gateway: str, job_id: str, index: int) -> None:
        self.append((gateway, job_id, index))


def test_sampler_emits_one_point_a_second_and_the_rest_on_flush() -> None:
    """A second's point holds the bytes read within it: those read between two calls that straddle
    its end are shared by time (5 of the 10 read from 100.75 to 101.25 are second 100's)."""
    now = [100.25]
    points: list[Point] = []
    s = Sampler(points.append, clock=lambda: now[0])
    for t, done, flying in [(100.5, 10, 4), (100.75, 20, 5), (101.25, 30, 6), (101.75, 45, 2), (103.25, 63, 1)]:
        now[0] = t
        s(Snapshot(done, {}, flying))
    s.flush()
    assert points == [Point(100, 25, 6), Point(101, 23, 1), Point(102, 12, 1), Point(103, 3, 0)]
    now[0] = 103.5
    s.flush()
    assert len(points) == 4 and sum(p.bytes for p in points) == 63  # nothing new since


def test_a_steady_warm_reads_at_its_rate_in_every_sample_the_first_and_last_too() -> None:
    """The first rate sample of a report: a warm reading 1 MB/s that starts 0.8 s into a second, and
    one whose reads each take 3 s (a call only as each ends), show 1 MB/s in every second they ran,
    from t=0: not a fifth of it for the first second (it ran 0.2 s of it), nor three times it
    for the second a three-second read was counted in."""
    for every in (0.1, 3.0):
        now = [500.8]
        points: list[Point] = []
        s = Sampler(points.append, clock=lambda now=now: now[0])
        done = 0
        while now[0] < 509.3 - 1e-9:
            now[0] = min(now[0] + every, 509.3)
            done = round((now[0] - 500.8) * 1e6)
            s(Snapshot(done, {}, 4))
        s.flush()
        info = _info(started=500.8, finished=509.3, bytes_planned=done)
        series = report.build(info, None, None, points=points).series
        assert series[0].t == 0.0 and len(series) == 10
        assert [round(p.bytes_per_s / 1e6, 2) for p in series] == [1.0] * 10, (every, series)


def test_points_of_concurrent_batches_add_up_per_second_and_gaps_are_zero() -> None:
    assert merged([Point(5, 10, 2), Point(7, 1, 1), Point(5, 5, 3)]) == [Point(5, 15, 5), Point(6, 0, 0),
                                                                          Point(7, 1, 1)]


def _info(**kw: object) -> JobInfo:
    info = JobInfo(id="j1", name="shot010", gateway="gw1", state=JobState.PARTIAL, created=1000.0, started=1000.0,
                   finished=1010.0, bytes_planned=40 * MiB, files_planned=3, batches=2, batches_done=2)
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def test_report_summary_coverage_retry_and_readiness() -> None:
    a, b, c = "/studio/proj/a.tx", "/studio/proj/b.tx", "/studio/proj/gone.tx"
    plan = Plan(job="shot010", frames=(1001, 1002), start=1020.0, ranges=(
        PlannedRange(a, 0, 4 * MiB, frame=None), PlannedRange(b, 0, 6 * MiB, frame=1001),
        PlannedRange(c, 0, 10 * MiB, frame=1002), PlannedRange(b, 6 * MiB, 20 * MiB, frame=1002)))
    batches = [Batch(0, reads=Reads.of((ByteRange(a, 0, 4 * MiB), ByteRange(b, 0, 6 * MiB)))),
               Batch(1, reads=Reads.of((ByteRange(c, 0, 10 * MiB), ByteRange(b, 6 * MiB, 20 * MiB))))]
    info = _info(findings=[FileFinding(c, FindingKind.MISSING, "No such file or directory")], failed_ranges=1)
    info.counters.update(bytes_done=29 * MiB, files_done=2, bytes_failed=11 * MiB, files_failed=1)
    points = [Point(1000 + i, 4 * MiB, 8) for i in range(10)]
    rep = report.build(info, plan, report.Progress.of(batches, {0, 1}), [ByteRange(b, 8 * MiB, MiB)], points,
                       throttle_bps=8 * MiB, now=1030.0)
    s = rep.summary
    assert s.planned == Tally(40 * MiB, 3, meta=0)
    assert s.missing == Tally(10 * MiB, 1, inputs=0)
    assert s.failed.ranges == 1
    assert [row.path for row in rep.coverage] == [b, c, a]  # largest first
    assert rep.coverage[0].warmed == 25 * MiB and rep.coverage[1].warmed == 0
    assert rep.timing.ideal_s == 5.0 and rep.timing.elapsed_s == 10.0
    assert rep.retry.command == "prewarm warm --retry j1"
    ready = rep.readiness
    # frame 1001 needs a and the first 6 MiB of b: the first quarter of the plan, warm after ~3 s of 10
    assert ready.first_frame == 1001 and ready.ready is True
    assert ready.ready_at == 1003.0 and ready.margin_s == 17.0
    assert [p.kind for p in rep.problems] == ["missing"]
    data = json.loads(json.dumps(rep.to_json()))    # the JSON keeps its shape: each summary line its own keys
    assert list(data) == ["job", "summary", "timing", "readiness", "series", "coverage", "problems", "retry",
                          "evaluation"]
    assert data["summary"]["planned"] == {"bytes": 40 * MiB, "files": 3, "meta": 0}
    assert data["summary"]["skipped"] == {"bytes": 0, "files": 0}
    assert data["summary"]["missing"] == {"bytes": 10 * MiB, "files": 1, "inputs": 0}
    assert data["readiness"]["late"] is False and data["series"][0] == {"t": 0.0, "bytes_per_s": 4 * MiB,
                                                                         "in_flight": 8}
    assert report.build(_info(), None, None).to_json()["readiness"] == {
        "first_frame": None, "ready": None, "ready_at": None, "start": None, "margin_s": None}


def test_coverage_says_what_share_of_each_file_was_planned() -> None:
    from dataclasses import replace

    from prewarm.plan.records import FileInfo

    tex = [f"/studio/proj/tex/t.{1001 + i}.tx" for i in range(3)]
    plan = Plan(job="s", frames=(1,), ranges=tuple(PlannedRange(p, 0, MiB, frame=1) for p in tex),
                files={p: FileInfo(p, 8 * MiB, 1.0) for p in tex})
    batch = Batch(0, reads=Reads.of(ByteRange(p, 0, MiB) for p in tex))
    rep = report.build(replace(_info()), plan, report.Progress.of([batch], {0}))
    [row] = rep.coverage                                      # the tile set folds into one input
    assert (row.files, row.planned, row.file_bytes) == (3, 3 * MiB, 24 * MiB)
    assert row.planned_share == 0.125 and row.saved_bytes == 21 * MiB
    assert "12% of the files (25.2 MB)" in report_html.render(rep)


def test_first_frame_blocked_by_a_failed_file_is_not_ready() -> None:
    a = "/studio/proj/a.tx"
    plan = Plan(job="s", frames=(1,), start=2000.0, ranges=(PlannedRange(a, 0, MiB, frame=1),))
    info = _info(findings=[FileFinding(a, FindingKind.DENIED, "Permission denied")], state=JobState.FAILED)
    rep = report.build(info, plan, report.Progress.of([Batch(0, reads=Reads.of((ByteRange(a, 0, MiB),)))], {0}))
    assert rep.readiness.ready is False and rep.readiness.blocked_by == [a]
    assert rep.coverage == [CoverageRow(a, MiB, 0, 1, MiB, 1.0, 0)]  # no size in the plan: the planned bytes
    assert "Not ready for frame 1" in report_html.render(rep)


def test_embedded_warm_records_its_time_series(studio: Studio) -> None:
    paths = [studio.file(f"t{i}.tx", 3 * MiB) for i in range(4)]
    plan = studio.whole(paths)
    s = studio.settings(throttle_bps=8 * MiB, in_flight=4)
    info = embedded.run_embedded(plan, s)
    assert info.state is JobState.DONE
    assert sum(p.bytes for p in info.samples) == info.counters["bytes_done"] == 12 * MiB
    assert len(info.samples) >= 2 and max(p.in_flight for p in info.samples) >= 1
    rep = report.build(info, plan, report.Progress.of([Batch(0, reads=Reads.of(
        ByteRange(r.path, r.offset, r.length) for r in plan.ranges))], {0}), (), info.samples, s.throttle_bps)
    assert rep.series and all(row.warmed == row.planned for row in rep.coverage)


def _redis_job(r: redis.Redis, studio: Studio, with_missing: bool) -> str:
    paths = [studio.file(f"t{i}.tx", 2 * MiB) for i in range(6)]
    plan = studio.whole(paths, start=time.time() + 3600)
    failing: list[str] = []
    if with_missing:
        gone = studio.file("gone.tx", MiB)
        failing = [studio.file("flaky.tx", MiB)]  # an I/O error: the one kind --retry re-reads
        plan = studio.whole([*paths, gone, *failing], start=time.time() + 3600)
        os.unlink(studio.local(gone))
    sent = Sent()
    s = studio.settings(throttle_bps=16 * MiB)
    job = runner.submit(r, plan, s, sent, "gw1")
    while sent:
        _, job_id, index = sent.pop(0)
        runner.run_batch(r, s, job_id, index, sent, studio.reader(failing))
    return job.id


def test_report_from_redis_has_samples_and_coverage(r: redis.Redis, studio: Studio) -> None:
    from prewarm.report import load as report_redis

    job_id = _redis_job(r, studio, with_missing=True)
    assert sum(p.bytes for p in WarmJob(r, job_id).points()) == 12 * MiB
    rep = report_redis.load(r, job_id)
    assert rep.job.state == "partial"
    assert rep.summary.warmed.bytes == 12 * MiB and rep.series
    gone = [row for row in rep.coverage if row.path.endswith("gone.tx")]
    assert gone == [CoverageRow("/studio/proj/gone.tx", MiB, 0, 1, MiB, 1.0, 0)]
    assert CoverageRow("/studio/proj/t#.tx", 12 * MiB, 12 * MiB, 6, 12 * MiB, 1.0, 0) in rep.coverage
    assert rep.readiness.ready is False and rep.readiness.margin_s is None


def chromium(page: Path, tmp: Path) -> tuple[str, str]:
    """Render a page in headless Chromium: (the DOM after load, Chromium's log with console messages)."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("needs Debian's chromium: run scripts/system-deps.sh")
    out = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'chromium'}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, out.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_the_console_check_sees_an_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); nope();</script></body></html>")
    _, log = chromium(page, tmp_path)
    assert console_errors(log)


def test_report_command_writes_a_page_that_renders_with_its_plots(r: redis.Redis, redis_url: str, studio: Studio,
                                                                   tmp_path: Path) -> None:
    job_id = _redis_job(r, studio, with_missing=True)
    page = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    out = subprocess.run([sys.executable, "-m", "prewarm", "report", job_id, "--redis", redis_url, "--json",
                          "--html", str(page)], cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["job"]["id"] == job_id
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing to fetch
    assert f"<code>prewarm warm --retry {job_id}</code>" in html  # re-reads what failed with an I/O error
    dom, log = chromium(page, tmp_path)
    assert console_errors(log) == []
    for chart in ("throughput", "in-flight", "coverage"):
        assert f'data-chart="{chart}"' in dom
    assert dom.count("<polyline") == 2 and dom.count("<rect") == 2 * 3  # t0-t5.tx fold into one input; gone, flaky
    assert "gone.tx" in dom and "missing" in dom
    text = subprocess.run([sys.executable, "-m", "prewarm", "report", job_id, "--redis", redis_url], cwd=ROOT,
                          env=env, check=False, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and f"warm {job_id} (test) on gw1: partial" in text.stdout
    assert "first frame 1: not ready" in text.stdout and f"prewarm warm --retry {job_id}" in text.stdout


def test_report_of_an_unknown_job_is_one_line_exit_2(redis_url: str) -> None:
    out = subprocess.run([sys.executable, "-m", "prewarm", "report", "nope", "--redis", redis_url], cwd=ROOT,
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "nope" in out.stderr


def test_missing_inputs_the_first_frame_reads_make_the_headline_red_and_agree_with_the_table() -> None:
    """A frame-1 plate and a texture that do not exist: the first frame is not ready, in red, whatever the
    warm did; the summary's missing files are the table's."""
    from prewarm.plan.records import Finding

    a = "/studio/proj/a.tx"
    plan = Plan(job="s", frames=(1, 2), start=2000.0, ranges=(PlannedRange(a, 0, MiB, frame=None),),
                missing=(Finding("/studio/proj/plate.####.exr", "no such file", 4, count=1, frames="1"),
                         Finding("/studio/proj/tex/wood.tx", "no such file", 5),
                         Finding("/studio/proj/plate.####.exr", "no such file", 4, count=9, frames="2"),
                         Finding("/studio/proj/extra.tx", "no such file", 6, optional=True)))
    info = _info(state=JobState.DONE)
    info.counters.update(bytes_done=MiB, files_done=1)
    rep = report.build(info, plan, report.Progress.of([Batch(0, reads=Reads.of((ByteRange(a, 0, MiB),)))], {0}),
                       now=1000.0)
    ready = rep.readiness
    assert ready.ready is False
    assert ready.missing_inputs == ["/studio/proj/plate.####.exr", "/studio/proj/tex/wood.tx"]
    table = [p for p in rep.problems if p.kind == "missing-input"]
    assert rep.summary.missing.files == 12 == sum(p.get("count", 1) for p in plan.to_json()["missing"])
    assert len(table) == 4
    page = report_html.render(rep)
    assert '<div class="verdict bad">Not ready for frame 1: it reads inputs that do not exist' in page
    assert "Ready for frame" not in page.replace("Not ready for frame", "")


def test_coverage_labels_keep_the_digits_an_input_does_not_vary() -> None:
    """Only the frame number of a sequence becomes `#`; the shot and version stay; a lone file keeps its name."""
    seq = [f"/studio/proj/shot100/cache/shot100_fx_v003.{1001 + i}.vdb" for i in range(3)]
    blend = "/studio/proj/shot100/shot100_lighting_v001.blend"
    plan = Plan(job="s", frames=(1,), ranges=tuple(PlannedRange(p, 0, MiB, frame=1) for p in [*seq, blend]))
    batch = Batch(0, reads=Reads.of(ByteRange(p, 0, MiB) for p in [*seq, blend]))
    rep = report.build(_info(), plan, report.Progress.of([batch], {0}))
    assert [row.path for row in rep.coverage] == ["/studio/proj/shot100/cache/shot100_fx_v003.####.vdb", blend]


def test_coverage_rows_are_the_manifests_inputs_as_it_writes_them(tmp_path: Path) -> None:
    """A plan keeps its manifest's inputs and each file's input: the report names a row by the input
    (`<UDIM>`, `####`, a folder) and sums its files; a file of no input, and every file of a plan
    written before plans kept their inputs, is folded by name as before."""
    tiles = [f"/studio/proj/tex/diffuse.{1001 + i}.tx" for i in range(3)]
    frames = [f"/studio/proj/cache/fx.{1 + i:04d}.vdb" for i in range(2)]
    lib = ["/studio/proj/lib/a.abc", "/studio/proj/lib/b.abc"]
    traced = "/studio/proj/other/x.bin"
    paths = [*tiles, *frames, *lib, traced]
    inputs = ("/studio/proj/tex/diffuse.<UDIM>.tx", "/studio/proj/cache/fx.####.vdb", "/studio/proj/lib/")
    plan = Plan(job="s", frames=(1,), ranges=tuple(PlannedRange(p, 0, MiB, frame=1) for p in paths),
                files={p: FileInfo(p, 2 * MiB, 1.0) for p in paths}, inputs=inputs,
                input_of={**dict.fromkeys(tiles, 0), **dict.fromkeys(frames, 1), **dict.fromkeys(lib, 2)})
    text = "".join(plan.json_text())
    loaded = Plan.from_json(json.loads(text))
    assert loaded.inputs == inputs and loaded.input_of == plan.input_of
    assert Plan.from_events(ijson.parse(text.encode(), use_float=True)).input_of == plan.input_of
    batch = Batch(0, reads=Reads.of(ByteRange(p, 0, MiB) for p in paths))
    rows = {r.path: r.files for r in report.build(_info(), loaded, report.Progress.of([batch], {0})).coverage}
    assert rows == {inputs[0]: 3, inputs[1]: 2, inputs[2]: 2, traced: 1}

    old = json.loads(text)
    del old["inputs"]
    for entry in old["files"].values():
        entry.pop("input", None)
    rows = {r.path: r.files for r in report.build(_info(), Plan.from_json(old), report.Progress.of([batch], {0})).coverage}
    assert rows == {"/studio/proj/tex/diffuse.####.tx": 3, "/studio/proj/cache/fx.####.vdb": 2,
                    "/studio/proj/lib/a.abc": 1, "/studio/proj/lib/b.abc": 1, traced: 1}

    bad = json.loads(text)
    bad["files"][tiles[0]]["input"] = 3
    with pytest.raises(PlanFileError, match=r"diffuse.1001.tx'\]\.input: 3 is not the index of one of the plan's"):
        Plan.from_json(bad)


def test_a_planned_manifest_names_each_files_input(studio: Studio) -> None:
    """`prewarm plan` keeps the manifest's inputs as written, and each planned file's index among them."""
    from prewarm.flow.planning import plan_manifest
    from prewarm.plan.manifest import parse_manifest

    studio.file("shot/plate.0001.exr", 4096)
    studio.file("shot/plate.0002.exr", 4096)
    studio.file("shot/scene.blend", 8192)
    manifest = parse_manifest("job: j\nframes: 1-2\ninputs:\n- /studio/proj/shot/scene.blend\n"
                              "- /studio/proj/shot/plate.####.exr\n", "m")
    plan = plan_manifest(manifest, [], studio.settings())
    assert plan.inputs == ("/studio/proj/shot/scene.blend", "/studio/proj/shot/plate.####.exr")
    assert plan.input_of == {"/studio/proj/shot/scene.blend": 0, "/studio/proj/shot/plate.0001.exr": 1,
                             "/studio/proj/shot/plate.0002.exr": 1}
