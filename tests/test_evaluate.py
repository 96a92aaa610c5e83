"""Prediction quality: a plan scored against the reads of the frames that rendered, misses explained,
kept beside the plan or the warm job, and shown in the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from prewarm.plan.access import Access
from prewarm.plan.aggregate import aggregate
from prewarm.plan.evaluate import BLOCK, Evaluation, Training, evaluate, input_of
from prewarm.plan.model import Plan
from prewarm.plan.records import PlannedRange
from prewarm.report import load as report_redis
from prewarm.state import runner
from prewarm.state.jobs import WarmJob
from prewarm.traces.jsonl import access_to_json
from tests.fixtures.services import ROOT
from tests.fixtures.studio import Studio

K = 1024


def reads(*items: tuple[str, int, int, int]) -> list[Access]:
    return [Access(p, offset=o, length=n, frame=f) for p, o, n, f in items]


def test_inputs_fold_frame_and_tile_numbers_of_the_name_only() -> None:
    assert input_of("/p/shot010/cache/fluid.1001.vdb") == "/p/shot010/cache/fluid.####.vdb"
    assert input_of("/p/tex/diffuse.1012.tx") == input_of("/p/tex/diffuse.1001.tx")


def test_recall_overfetch_per_input_and_why_each_miss() -> None:
    tex, vdb, new = "/p/tex/a.tx", "/p/cache/fluid.0050.vdb", "/p/tex/brand_new.tx"
    plan = Plan(job="s", frames=(10, 11, 50), ranges=(
        PlannedRange(tex, 0, 4 * BLOCK), PlannedRange(vdb, 0, BLOCK)))
    rendered = aggregate(reads((tex, 0, 2 * BLOCK, 10), (tex, 8 * BLOCK, BLOCK, 11), (vdb, 0, 100, 50),
                               (vdb, 4 * BLOCK, BLOCK, 50), (new, 0, BLOCK, 10)))
    training = Training.of(aggregate(reads((tex, 0, BLOCK, 9), (tex, 0, BLOCK, 12))))
    e = evaluate(plan, rendered, training)
    o = e.overall
    assert o.needed_bytes == 6 * BLOCK and o.hit_bytes == 3 * BLOCK
    assert (o.recall, o.overfetch) == (0.5, round(5 / 6, 3))
    per = {row.input: row for row in e.per_input}
    assert per["/p/tex/a.tx"].recall == round(2 / 3, 4) and per["/p/tex/a.tx"].overfetch == round(4 / 3, 3)
    why = {(m.path, m.why) for m in e.missed}
    assert why == {(tex, "region outside the prediction"),
                   (vdb, "frame with no neighbours in the training traces"),
                   (new, "pattern never seen in the training traces")}
    assert sum(e.missed_by_reason.values()) == 3 * BLOCK
    assert Evaluation.from_json(json.loads(json.dumps(e.to_json()))) == e    # kept as JSON, read back whole


def test_without_training_traces_an_unplanned_file_is_never_seen() -> None:
    plan = Plan(job="s", frames=(1,), ranges=(PlannedRange("/p/a", 0, BLOCK),))
    e = evaluate(plan, aggregate(reads(("/p/b", 0, 10, 1))))
    assert [m.why for m in e.missed] == ["never seen: the plan has nothing of this file"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.run([sys.executable, "-m", "prewarm", *args], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


def write_traces(path: Path, accesses: list[Access]) -> Path:
    path.write_text("".join(json.dumps(access_to_json(a)) + "\n" for a in accesses))
    return path


def test_evaluate_a_plan_file_keeps_the_result_beside_it(studio: Studio, tmp_path: Path) -> None:
    a = studio.file("a.tx", 16 * BLOCK)
    plan_file = tmp_path / "shot.json"
    plan_file.write_text(json.dumps(studio.plan([(a, 0, 4 * BLOCK)]).to_json()))
    traces = write_traces(tmp_path / "frame.0001.jsonl", reads((a, 0, 2 * BLOCK, 1), (a, 10 * BLOCK, 2 * BLOCK, 1)))
    out = cli("evaluate", str(plan_file), "--traces", str(traces))
    assert out.returncode == 0, out.stderr
    assert "recall 50.0%, over-fetch 1.00x" in out.stdout
    kept = json.loads((tmp_path / "shot.evaluation.json").read_text())
    assert kept["overall"]["recall"] == 0.5 and kept["missed"][0]["why"] == "region outside the prediction"


def test_evaluate_a_warm_job_is_kept_in_redis_and_shown_in_its_report(
        r: redis.Redis, redis_url: str, studio: Studio, tmp_path: Path) -> None:
    a = studio.file("a.tx", 16 * BLOCK)
    plan = studio.plan([(a, 0, 8 * BLOCK)], job="shot010")
    sent: list[tuple[str, str, int]] = []
    job = runner.submit(r, plan, studio.settings(), lambda g, j, i: sent.append((g, j, i)), "gw1")
    traces = write_traces(tmp_path / "f.jsonl", reads((a, 0, 4 * BLOCK, 1)))
    out = cli("evaluate", job.id, "--traces", str(traces), "--redis", redis_url, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["overall"] == {"recall": 1.0, "overfetch": 2.0, "needed_bytes": 4 * BLOCK,
                                                 "planned_bytes": 8 * BLOCK, "hit_bytes": 4 * BLOCK}
    evaluation = report_redis.load(r, job.id).evaluation
    assert evaluation is not None and evaluation.overall.recall == 1.0
    r.set(WarmJob(r, job.id).part("evaluation"), json.dumps({"overall": {"recall": 1.0}}))  # another version's
    assert report_redis.load(r, job.id).evaluation is None
    [history] = r.lrange("prewarm:shot:shot010:evaluations", 0, -1)
    assert json.loads(history)["warm_job"] == job.id


def test_traces_with_no_frames_read_are_refused_in_one_line(studio: Studio, tmp_path: Path) -> None:
    plan_file = tmp_path / "p.json"
    plan_file.write_text(json.dumps(studio.plan([(studio.file("a.tx", K), 0, K)]).to_json()))
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    out = cli("evaluate", str(plan_file), "--traces", str(empty))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--traces" in out.stderr
    assert not (tmp_path / "p.evaluation.json").exists()
