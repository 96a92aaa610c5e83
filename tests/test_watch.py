"""Watch folders on real files: the spool (settling, bad drops, duplicates, restarts, an outage)
and the trace drop folder; then the real watchdog watcher as a process, stopped and restarted."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prewarm.farm.spool import Spool, client_submitter, local_submitter
from prewarm.farm.tracedrop import TraceDrop
from prewarm.site.settings import Settings
from prewarm.traces.catalogue import list_traces
from prewarm.traces.files import read_traces
from tests.fixtures.studio import Studio

TRACES = Path(__file__).resolve().parents[1] / "sample_jobs" / "shot100" / "traces"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Counting:
    """The real in-process submitter (plans, warms embedded), counting what it was given."""

    def __init__(self, settings: Settings) -> None:
        self.inner = local_submitter(settings)
        self.seen: list[str] = []

    def __call__(self, path: Path) -> str:
        self.seen.append(path.read_text() if path.is_file() else path.name)
        return self.inner(path)


def _manifest(studio: Studio, job: str = "shot010_lighting_v001") -> str:
    path = studio.file("shot010/scene.bin", 300_000)
    return f"job: {job}\nframes: 1-2\ninputs:\n  - {path}\n"


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def _spool(folder: Path, submit: Callable[[Path], str], clock: Clock, **kw: float) -> Spool:
    return Spool(folder, submit, settle_s=1.0, retry_s=5.0, clock=clock, **kw)


def test_a_drop_is_read_only_once_settled_and_tmp_files_wait(studio: Studio, spool_dir: Path) -> None:
    clock, submit = Clock(), Counting(studio.settings())
    spool = _spool(spool_dir, submit, clock)
    text = _manifest(studio)
    (spool_dir / "a.yaml.tmp").write_text(_manifest(studio, "shot010_lighting_v002"))
    (spool_dir / "b.yaml").write_text(text[:20])              # the writer is still at it
    assert spool.poll() == []
    clock.t = 0.6
    with open(spool_dir / "b.yaml", "a") as fh:
        fh.write(text[20:])
    assert spool.poll() == []                                  # changed: settling starts again
    clock.t = 1.2
    assert spool.poll() == []
    clock.t = 2.0
    [outcome] = spool.poll()
    assert outcome.state == "done" and outcome.detail.startswith("local-")
    assert submit.seen == [text]                               # the whole file, never half of it
    assert (spool_dir / "done" / "b.yaml").exists() and (spool_dir / "done" / "b.yaml.result.txt").exists()
    assert (spool_dir / "a.yaml.tmp").exists()                 # ignored until renamed
    os.rename(spool_dir / "a.yaml.tmp", spool_dir / "a.yaml")
    spool.poll()
    clock.t = 4.0
    assert [o.state for o in spool.poll()] == ["done"]
    assert len(submit.seen) == 2


def test_invalid_drops_go_to_failed_with_the_reason(studio: Studio, spool_dir: Path) -> None:
    clock, submit = Clock(), Counting(studio.settings())
    spool = _spool(spool_dir, submit, clock)
    (spool_dir / "typo.yaml").write_text("job: x\nfames: 1-10\ninputs: [/studio/proj/a]\n")
    (spool_dir / "outside.yaml").write_text("job: y\nframes: 1\ninputs: [/etc/passwd]\n")
    (spool_dir / "notes.txt").write_text("hello")
    spool.poll()
    clock.t = 2.0
    outcomes = {o.name: o for o in spool.poll()}
    assert {n: o.state for n, o in outcomes.items()} == {"typo.yaml": "failed", "outside.yaml": "failed",
                                                         "notes.txt": "failed"}
    error = (spool_dir / "failed" / "typo.yaml.error.txt").read_text()
    assert error == "typo.yaml:2: fames: unknown key (did you mean 'frames'?)\n"
    assert "/etc/passwd" in (spool_dir / "failed" / "outside.yaml.error.txt").read_text()
    assert "not a job" in (spool_dir / "failed" / "notes.txt.error.txt").read_text()
    assert not list((spool_dir / "processing").iterdir())


def test_a_duplicate_drop_is_not_submitted_again(studio: Studio, spool_dir: Path) -> None:
    clock, submit = Clock(), Counting(studio.settings())
    spool = _spool(spool_dir, submit, clock)
    text = _manifest(studio)
    (spool_dir / "job.yaml").write_text(text)
    spool.poll()
    clock.t = 2.0
    assert [o.state for o in spool.poll()] == ["done"]
    (spool_dir / "job.yaml").write_text(text)                  # the same drop again, and under another name
    (spool_dir / "again.yaml").write_text(text)
    spool.poll()
    clock.t = 4.0
    assert sorted(o.state for o in spool.poll()) == ["duplicate", "duplicate"]
    assert len(submit.seen) == 1
    assert sorted(p.name for p in (spool_dir / "done").iterdir() if not p.name.endswith(".txt")) == [
        "again.yaml", "job-2.yaml", "job.yaml"]
    assert "same content as job.yaml" in (spool_dir / "done" / "again.yaml.result.txt").read_text()


def test_a_restarted_spool_finishes_claimed_drops_and_repeats_nothing(studio: Studio, spool_dir: Path) -> None:
    clock, submit = Clock(), Counting(studio.settings())
    spool = _spool(spool_dir, submit, clock)
    text = _manifest(studio)
    (spool_dir / "done.yaml").write_text(text)
    spool.poll()
    clock.t = 2.0
    spool.poll()
    # A watcher killed after recording a submission but before moving the drop on ...
    os.rename(spool_dir / "done" / "done.yaml", spool_dir / "processing" / "done.yaml")
    # ... and one killed right after claiming a drop, before submitting it.
    (spool_dir / "processing" / "claimed.yaml").write_text(_manifest(studio, "shot010_lighting_v002"))
    restarted = _spool(spool_dir, submit, Clock())
    states = {o.name: o.state for o in restarted.poll()}
    assert states == {"done.yaml": "duplicate", "claimed.yaml": "done"}
    assert len(submit.seen) == 2                               # each job submitted exactly once
    assert not list((spool_dir / "processing").iterdir())


def test_an_unreachable_service_keeps_the_drop_until_it_answers(studio: Studio, spool_dir: Path) -> None:
    clock = Clock()
    down = _spool(spool_dir, client_submitter("http://127.0.0.1:9", None), clock)   # nothing listens on 9
    (spool_dir / "job.yaml").write_text(_manifest(studio))
    down.poll()
    clock.t = 2.0
    [outcome] = down.poll()
    assert outcome.state == "waiting" and "cannot reach" in outcome.detail
    assert (spool_dir / "processing" / "job.yaml").exists()
    clock.t = 3.0
    assert down.poll() == []                                   # not before the retry time
    submit = Counting(studio.settings())
    back = _spool(spool_dir, submit, Clock())                  # restarted, now submitting in-process
    assert [o.state for o in back.poll()] == ["done"]
    assert len(submit.seen) == 1


def _drop(folder: Path, rel: str, source: Path = TRACES / "frame.0001.strace.gz") -> Path:
    dest = folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, dest)
    return dest


def test_dropped_traces_are_filed_by_place_sidecar_or_records(tmp_path: Path) -> None:
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",))
    clock, folder = Clock(), tmp_path / "drop"
    drop = TraceDrop(folder, settings, settle_s=1.0, clock=clock)
    _drop(folder, "proj/shot100/shot100_lighting_v001/frame.0001.strace.gz")
    _drop(folder, "node7/render.log.gz", TRACES / "frame.0002.strace.gz")
    (folder / "node7" / "render.log.gz.prewarm.json").write_text(
        json.dumps({"job": "shot100_lighting_v001", "show": "proj", "shot": "shot100", "frame": 2}))
    jsonl = folder / "frame.0003.jsonl"
    jsonl.write_text(json.dumps({"path": "/studio/proj/a.tx", "offset": 0, "length": 10, "job": "shot200_fx_v001"})
                     + "\n")
    (folder / "stray.strace").write_text((TRACES.parent / "manifest.yaml").read_text())
    (folder / "half.strace.part").write_text("1 00:00:00.000001 read(")
    drop.poll()
    clock.t = 2.0
    outcomes = {o.name: o.state for o in drop.poll()}
    assert outcomes == {"proj/shot100/shot100_lighting_v001/frame.0001.strace.gz": "done",
                        "node7/render.log.gz": "done", "frame.0003.jsonl": "done", "stray.strace": "failed"}
    jobs = {j.job: j for j in list_traces(settings)}
    assert jobs["shot100_lighting_v001"].frames == 2 and jobs["shot100_lighting_v001"].shot == "shot100"
    assert {a.frame for a in read_traces([jobs["shot100_lighting_v001"].path])} == {1, 2}
    assert jobs["shot200_fx_v001"].shot == "_"
    assert "whose trace?" in (folder / "failed" / "stray.strace.error.txt").read_text()
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "half.strace.part", "stray.strace", "stray.strace.error.txt"]


def test_a_loose_trace_is_read_as_the_import_reads_it_and_a_sidecar_within_the_request_limit(tmp_path: Path) -> None:
    """A gzip JSON Lines trace named like plain text is told by its content (the one trace opener, through
    the drop's guard) and filed under the job its records name; a sidecar larger than the site's
    max_request_bytes is refused by that setting, not by a limit of the watcher's own."""
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",), max_request_bytes=200)
    clock, folder = Clock(), tmp_path / "drop"
    drop = TraceDrop(folder, settings, settle_s=1.0, clock=clock)
    folder.joinpath("render.log").write_bytes(gzip.compress(json.dumps(
        {"path": "/studio/proj/a.tx", "offset": 0, "length": 10, "frame": 4, "job": "shot300_fx_v002"}).encode()))
    _drop(folder, "node7/render.log.gz", TRACES / "frame.0002.strace.gz")
    (folder / "node7" / "render.log.gz.prewarm.json").write_text(json.dumps({"job": "x", "note": "n" * 300}))
    drop.poll()
    clock.t = 2.0
    assert {o.name: o.state for o in drop.poll()} == {"render.log": "done", "render.log.gz": "failed"}
    assert [j.job for j in list_traces(settings)] == ["shot300_fx_v002"]
    assert "larger than 200 bytes (the site's max_request_bytes)" in (
        folder / "failed" / "render.log.gz.error.txt").read_text()


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _watcher(config: Path, spool: Path, drop: Path, store: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "prewarm", "--config", str(config), "watch", "--spool", str(spool),
                             "--traces", str(drop), "--store", str(store), "--settle", "0.3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err.decode()


@pytest.mark.integration
def test_the_watcher_process_with_watchdog_across_a_restart(studio: Studio, tmp_path: Path) -> None:
    config = studio.config(tmp_path / "config.yaml")
    spool, drop, store = tmp_path / "spool", tmp_path / "drop", tmp_path / "store"
    spool.mkdir()
    drop.mkdir()
    proc = _watcher(config, spool, drop, store)
    try:
        text = _manifest(studio)
        (spool / "job.yaml.tmp").write_text(text)
        os.rename(spool / "job.yaml.tmp", spool / "job.yaml")
        _drop(drop, "proj/shot100/shot100_lighting_v001/frame.0001.strace.gz")
        _wait_for(lambda: (spool / "done" / "job.yaml.result.txt").exists())
        _wait_for(lambda: not (drop / "proj/shot100/shot100_lighting_v001/frame.0001.strace.gz").exists())
    finally:
        err = _stop(proc)
    assert "job.yaml: done: local-" in err
    assert [j.job for j in list_traces(Settings(trace_store=str(store)))] == ["shot100_lighting_v001"]
    proc = _watcher(config, spool, drop, store)
    try:
        (spool / "again.yaml").write_text(text)
        _wait_for(lambda: (spool / "done" / "again.yaml.result.txt").exists())
    finally:
        err = _stop(proc)
    assert "again.yaml: duplicate" in err
    assert sorted(p.name for p in (spool / "done").iterdir()) == [
        "again.yaml", "again.yaml.result.txt", "job.yaml", "job.yaml.result.txt"]
