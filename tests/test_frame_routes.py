"""The service's frame-event routes on loopback with real Redis: each farm's payloads, written from
its documentation (AWS Deadline Cloud's EventBridge events; OpenCue's monitoring events as
Cuebot's KafkaEventPublisher prints them, proto field names kept; Deadline 10's event plugin
and Post-Task script through the generic routes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from prewarm.farm.service import create_app
from prewarm.state import frames as fstate
from prewarm.state import keys
from prewarm.state.jobs import WarmJob
from tests.fixtures.service import TOKEN, run_server
from tests.fixtures.studio import Studio
from tests.test_live import MANIFEST, _trace, _tree
from tests.test_warm_redis import Sent

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLOUD_JOB = "job-" + "0123456789abcdef" * 2
HEX = "fedcba9876543210" * 2


@dataclass
class Svc:
    url: str
    r: redis.Redis
    sent: Sent
    studio: Studio

    def post(self, path: str, body: Any, auth: bool = True) -> requests.Response:
        return requests.post(f"{self.url}/api/v1{path}", json=body, headers=AUTH if auth else {}, timeout=30)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}/api/v1{path}", timeout=30)

    def register(self, job: str) -> dict[str, Any]:
        resp = self.post("/live/jobs", {"job": job, "submission": {"manifest": MANIFEST, "traces": []}})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture
def svc(r: redis.Redis, studio: Studio, tmp_path: Path) -> Iterator[Svc]:
    _tree(studio)
    settings = studio.settings(trace_store=str(tmp_path / "store"), service_token=TOKEN, dispatch_window=1,
                               throttle_bps=1 << 20)
    sent = Sent()
    app = create_app(settings, r, sent, lambda ids: None, TOKEN)
    url, stop = run_server(app)
    yield Svc(url, r, sent, studio)
    stop()
    loop = getattr(app.state, "live_loop", None)
    if loop is not None:
        loop.stop()


def test_generic_events_with_a_trace_and_what_is_refused(svc: Svc) -> None:
    reg = svc.register("render-42")
    assert reg["frames"] == 8 and len(reg["ids"]) == 1
    trace = _trace(svc.studio.root, 1)  # lies under the studio root, so the service may read it
    studio_trace = "/studio/proj/" + Path(trace).name
    body = {"events": [
        {"job": "render-42", "frame": 1, "event": "start", "node": "n1", "at": 100},
        {"job": "render-42", "frame": 1, "event": "progress", "at": 130, "trace": studio_trace},
        {"job": "render-42", "frame": 1, "event": "done", "at": 160, "trace": studio_trace},
        {"job": "render-42", "frame": 1, "event": "done", "at": 161},
        {"job": "render-42", "frame": 99, "event": "start"},
        {"job": "nobody", "frame": 1, "event": "start"},
    ]}
    assert svc.post("/frames", body, auth=False).status_code == 401
    resp = svc.post("/frames", body)
    assert resp.status_code == 202, resp.text
    assert [x["outcome"] for x in resp.json()["results"]] == ["started", "progress", "done", "duplicate",
                                                              "unknown_frame", "unknown_job"]
    assert [x["trace"] for x in resp.json()["results"][1:3]] == ["filed", "filed"] and resp.json()["refused"] == 2
    state = svc.get("/live/jobs/render-42").json()
    [row] = state["frames"]
    assert row["batches_missing_at_start"] > 0, "nothing ran the warm's batches before the frame started"
    assert {**row, "batches_missing_at_start": 0} == {"frame": 1, "state": "done", "node": "n1", "started": 100.0,
                                                      "finished": 160.0, "attempts": 1, "warm_at_start": False,
                                                      "batches_missing_at_start": 0}
    assert state["started_before_warm"] == [1] and "evaluation" not in state
    evaluated = svc.get("/live/jobs/render-42?evaluate=true").json()["evaluation"]
    assert evaluated["frames_traced"] == 1 and evaluated["overall"]["recall"] == 1.0
    assert state["events"] == {"started": 1, "progress": 1, "done": 1, "duplicate": 1, "unknown_frame": 1}
    deadline = time.monotonic() + 60  # the service's own loop re-plans, a debounce after the event
    while (state := svc.get("/live/jobs/render-42").json())["replans"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state["replans"] == 1 and state["last_replan"]["frames"] == 7, state["last_replan"]
    assert state["warm"] != reg["ids"] and svc.r.hget(keys.job(reg["ids"][0]), "superseded_by")


def test_a_bad_submission_is_a_422_naming_its_field(svc: Svc) -> None:
    resp = svc.post("/live/jobs", {"job": "j", "submission": {"manifest": 3}})
    assert resp.status_code == 422 and resp.json()["where"] == "submission.manifest", resp.text
    resp = svc.post("/live/jobs", {"job": "j", "submission": {"": None}})
    assert resp.status_code == 422 and resp.json()["where"].startswith("submission"), resp.text
    assert fstate.registered(svc.r, "j") is None
    other = svc.register("other")["ids"][0]
    resp = svc.post("/live/jobs", {"job": "j", "submission": {"manifest": MANIFEST.replace("shot100_fx_v002", "x")},
                                   "warm": [other]})
    assert resp.status_code == 422 and resp.json()["where"] == "warm[0]", "never another job's warm"
    assert fstate.registered(svc.r, "j") is None


@pytest.mark.parametrize(("body", "where"), [
    ({"events": [{"job": "j", "frame": "one", "event": "start"}]}, "events.0.frame"),
    ({"events": [{"job": "../etc", "frame": 1, "event": "start"}]}, "events.0.job"),
    ({"events": [{"job": "j", "frame": 1, "event": "exploded"}]}, "events.0.event"),
    ({"events": [{"job": "j", "frame": 1, "event": "start"}] * 1001}, "events"),
    ({"events": [{"job": "j", "frame": 1, "event": "start"},
                 {"job": "j", "frame": 1, "event": "done", "trace": "/etc/passwd"}]}, "events[1].trace"),
])
def test_bad_events_are_one_line_4xx(svc: Svc, body: dict[str, Any], where: str) -> None:
    svc.register("j")
    resp = svc.post("/frames", body)
    assert resp.status_code in (403, 422) and resp.json()["where"] == where, resp.text
    assert fstate.frames(svc.r, "j") == {}


def _cloud(detail_type: str, **detail: Any) -> dict[str, Any]:
    """An event as EventBridge delivers it (the envelope of the EventBridge user guide's event
    structure reference; `detail` as Deadline Cloud's events detail reference lists it). Checked
    against aws-deadline/deadline-cloud (which has no EventBridge code): ids as its tests' mocks
    (`task-<32 hex>-2`), a task's `runStatus` and a job's `taskRunStatus` with the statuses of its
    `taskRunStatusCounts`, and GetTask's `parameters` as `{"Frame": {"int": "7"}}`."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": detail_type,
            "source": "aws.deadline", "account": "111122223333", "time": "2026-12-07T21:00:00Z",
            "region": "us-west-2", "resources": [],
            "detail": {"farmId": "farm-" + HEX, "queueId": "queue-" + HEX, "jobId": CLOUD_JOB, **detail}}


def test_deadline_cloud_task_run_status_changes(svc: Svc) -> None:
    svc.register(CLOUD_JOB)
    task = {"stepId": "step-" + HEX, "taskId": f"task-{HEX}-2"}
    for status, previous, want in (("STARTING", "ASSIGNED", "ignored"), ("RUNNING", "STARTING", "started"),
                                   ("RUNNING", "STARTING", "duplicate"), ("SUCCEEDED", "RUNNING", "done")):
        resp = svc.post("/events/deadline-cloud", _cloud("Task Run Status Change", **task, runStatus=status,
                                                         previousRunStatus=previous))
        assert resp.status_code == 200 and resp.json()["result"] == want, resp.text
    frame3 = fstate.frames(svc.r, CLOUD_JOB)[3]
    assert frame3.state.value == "done" and frame3.started == frame3.finished == 1796677200.0, \
        "task 2 is the third frame of 1-8"
    with_param = _cloud("Task Run Status Change", **{**task, "taskId": f"task-{HEX}-0"}, runStatus="RUNNING",
                        parameters={"Frame": {"int": "7"}})
    assert svc.post("/events/deadline-cloud", with_param).json()["frame"] == 7
    other = _cloud("Task Run Status Change", **task, runStatus="RUNNING")
    other["detail"]["jobId"] = "job-" + HEX
    assert svc.post("/events/deadline-cloud", other).status_code == 404
    odd = _cloud("Task Run Status Change", **task, runStatus="RUNNING")
    odd["detail"]["jobId"] = "job:../x"
    assert svc.post("/events/deadline-cloud", odd).json()["where"] == "detail.jobId"
    bad = _cloud("Task Run Status Change", stepId="s", taskId="task-x", runStatus="RUNNING")
    assert svc.post("/events/deadline-cloud", bad).json()["where"] == "detail.taskId"
    running = _cloud("Job Run Status Change", previousTaskRunStatus="READY", taskRunStatus="RUNNING",
                     taskRunStatusCounts={"RUNNING": 1, "READY": 7, "SUCCEEDED": 0})
    assert svc.post("/events/deadline-cloud", running).json()["result"] == "recorded"
    ended = svc.post("/events/deadline-cloud", _cloud("Job Run Status Change", previousTaskRunStatus="RUNNING",
                                                      taskRunStatus="SUCCEEDED"))
    assert ended.json()["result"].startswith("ended")
    assert fstate.registered(svc.r, CLOUD_JOB)["state"] == "finished"  # type: ignore[index]


def _cue(event_type: str, frame: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """A monitoring event as Cuebot's KafkaEventPublisher prints it (JsonFormat, proto field
    names kept, int64 as strings; see proto/src/monitoring.proto)."""
    body: dict[str, Any] = {"header": {"event_id": "1f0c", "event_type": event_type, "timestamp": "1796677200000",
                                       "source_cuebot": "cuebot-1", "correlation_id": ""},
                            "job_id": "9a3e", "job_name": "proj-shot100-artist_fx", "show": "proj", **more}
    if frame is not None:
        body["frame"] = frame
    return body


def test_opencue_frame_and_job_events(svc: Svc) -> None:
    svc.register("proj-shot100-artist_fx")
    started = _cue("FRAME_STARTED", {"id": "f1", "name": "0004-render", "layer_name": "render", "state": "RUNNING",
                                     "retry_count": 0, "start_time": 1796677200}, host_name="node-7",
                   previous_state="WAITING")
    resp = svc.post("/events/opencue", started)
    assert resp.status_code == 200 and resp.json() == {"job": "proj-shot100-artist_fx", "frame": 4,
                                                       "result": "started"}
    done = _cue("FRAME_COMPLETED", {"id": "f1", "name": "0004-render", "number": 4, "state": "SUCCEEDED",
                                    "exit_status": 0}, host_name="node-7", run_time=1200)
    assert svc.post("/events/opencue", done).json()["result"] == "done"
    assert fstate.frames(svc.r, "proj-shot100-artist_fx")[4].node == "node-7"
    assert svc.post("/events/opencue", _cue("HOST_BOOT")).json()["result"] == "ignored"
    killed = _cue("JOB_KILLED", job={"id": "9a3e", "name": "proj-shot100-artist_fx", "state": "FINISHED"})
    assert svc.post("/events/opencue", killed).json()["result"].startswith("ended")


def test_deadline10_job_events_requeue_and_end(svc: Svc) -> None:
    reg = svc.register("5f2a9c")
    svc.post("/frames", {"events": [{"job": "5f2a9c", "frame": f, "event": "start", "node": "n"} for f in (1, 2)]})
    resp = svc.post("/live/jobs/5f2a9c/events", {"event": "requeued"})
    assert resp.json()["result"] == "2 frame(s) requeued"
    assert {f.state.value for f in fstate.frames(svc.r, "5f2a9c").values()} == {"waiting"}
    assert svc.post("/live/jobs/5f2a9c/events", {"event": "suspended"}).json()["result"] == "suspended"
    assert svc.post("/live/jobs/5f2a9c/events", {"event": "deleted"}).json()["result"] == "ended; 1 warm(s) stopped"
    warm = WarmJob(svc.r, reg["ids"][0])
    assert svc.r.zscore(keys.gateway("default", "jobs"), warm.id) is None, "a deleted job's warm sends no more"
    assert svc.post("/live/jobs/nobody/events", {"event": "started"}).status_code == 404
    assert svc.get("/live/jobs/5f2a9c").json()["warm"] == reg["ids"]


DL10_DRIVER = '''
import importlib.util, json, sys
from Deadline.Events import DeadlineEventListener
from Deadline.Scripting import RepositoryUtils

config = json.loads(sys.argv[2])

class Job:
    JobId = "5f0c0ffee0000000000000aa"
    JobName = "shot100_fx_v002"
    JobFrames = "1-8"
    JobPlugin = "Blender"
    JobPriority = 50
    JobBatchName = ""
    JobAuxiliarySubmissionFileNames = []
    JobPreTaskScript = ""
    JobPostTaskScript = ""
    extra = {"prewarm_show": "proj", "prewarm_shot": "shot100",
             "prewarm_inputs": "/studio/proj/cache/fluid.####.vdb",
             "prewarm_trace": "/studio/proj/frame.####.jsonl"}
    def GetJobExtraInfoKeys(self):
        return list(self.extra)
    def GetJobExtraInfoKeyValue(self, key):
        return self.extra[key]
    def GetJobPluginInfoKeys(self):
        return ["SceneFile"]
    def GetJobPluginInfoKeyValue(self, key):
        return "/studio/proj/tex/big.tx"

class Task:
    TaskFrameList = [3, 4]

class Plugin:
    def GetJob(self):
        return JOB
    def GetCurrentTask(self):
        return Task()
    def GetSlaveName(self):
        return "node-3"
    def LogInfo(self, m):
        print("INFO", m, flush=True)
    def LogWarning(self, m):
        print("WARNING", m, flush=True)

class Config:
    def GetConfigEntryWithDefault(self, key, default):
        return config.get(key, default)

RepositoryUtils.GetEventPluginConfig = staticmethod(lambda name: Config())
RepositoryUtils.saved = []
RepositoryUtils.SaveJob = staticmethod(lambda job: RepositoryUtils.saved.append(job.JobId))
DeadlineEventListener.config = config

def load(path):
    spec = importlib.util.spec_from_file_location(path.rsplit("/", 1)[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

JOB = Job()
plugin_dir = sys.argv[1]
events = load(plugin_dir + "/PrewarmEvents.py")
listener = events.GetDeadlineEventListener()
listener.OnJobSubmittedCallback(JOB)
print("SCRIPTS", JOB.JobPreTaskScript.rsplit("/", 1)[-1], JOB.JobPostTaskScript.rsplit("/", 1)[-1],
      RepositoryUtils.saved, flush=True)
listener.OnJobStartedCallback(JOB)
load(plugin_dir + "/PrewarmPreTask.py").__main__(Plugin())
load(plugin_dir + "/PrewarmPostTask.py").__main__(Plugin())
if config.get("end"):
    listener.OnJobFinishedCallback(JOB)
'''


def test_deadline10_plugin_and_task_scripts_report_the_job_and_its_frames(svc: Svc, tmp_path: Path) -> None:
    from tests.test_hooks import PLUGIN, STANDIN

    _trace(svc.studio.root, 3)
    (svc.studio.root / "frame.3.jsonl").rename(svc.studio.root / "frame.0003.jsonl")
    standin = tmp_path / "deadline-standin"
    for rel, text in STANDIN.items():
        (standin / rel).parent.mkdir(parents=True, exist_ok=True)
        (standin / rel).write_text(text)
    (standin / "driver.py").write_text(DL10_DRIVER)
    config = {"Server": svc.url, "Token": TOKEN, "TaskScripts": "true", "AuxiliaryFiles": "false", "end": "1"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}, "PYTHONPATH": str(standin)}
    done = subprocess.run([sys.executable, str(standin / "driver.py"), str(PLUGIN), json.dumps(config)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "SCRIPTS PrewarmPreTask.py PrewarmPostTask.py ['5f0c0ffee0000000000000aa']" in done.stdout, done.stdout
    job = "5f0c0ffee0000000000000aa"
    state = fstate.frames(svc.r, job)
    assert {f: (s.state.value, s.node) for f, s in state.items()} == {3: ("done", "node-3"), 4: ("done", "node-3")}
    meta = fstate.registered(svc.r, job) or {}
    assert meta["traces_filed"] == "1" and meta["traces_unreadable"] == "1", "frame 4 left no trace: a finding"
    assert meta["state"] == "finished" and meta["name"] == "shot100_fx_v002"
    assert "INFO prewarm: job 5f0c0ffee0000000000000aa frames 3-4 done on node-3" in done.stdout
