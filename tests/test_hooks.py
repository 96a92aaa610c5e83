"""Submitter hooks run as the farm runs them: a subprocess fed its stdin or files, against the
live service on loopback, a dead port and a server that never answers (give up fast, exit 0).

Deadline 10 itself is not available here: its event plugin runs in a subprocess under a
minimal stand-in of the two Deadline modules it imports (`Deadline.Events`,
`Deadline.Scripting`), driven the way Deadline drives event plugins.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.service import STUDIO, TOKEN, LiveService
from tests.fixtures.services import ROOT, free_port

pytestmark = pytest.mark.integration

HOOKS = ROOT / "hooks"
HOOK = HOOKS / "prewarm_hook.py"
PLUGIN = HOOKS / "deadline10" / "PrewarmEvents"
SCENE = f"{STUDIO}/shot100/shot100_lighting_v001.blend"
INPUTS = [SCENE, f"{STUDIO}/shot100/cache/crate_anim.abc", f"{STUDIO}/assets/tex/crate_diff.<UDIM>.png",
          f"{STUDIO}/assets/tex/studio_hdri.exr", f"{STUDIO}/shot100/anim_tex/monitor.####.png"]
BOUND_S = 5.0
"""Generous bound on a hook that must give up within 2 s (behaviour, not a benchmark)."""

TEMPLATE = """\
specificationVersion: 'jobtemplate-2023-09'
name: shot100_cloud
parameterDefinitions:
- name: Frames
  type: STRING
  default: 1-24
- name: SceneFile
  type: PATH
  objectType: FILE
  dataFlow: IN
steps:
- name: Render
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "{{Param.Frames}}"
  script:
    actions:
      onRun:
        command: blender
        args: ["-b", "{{Param.SceneFile}}", "-f", "{{Task.Param.Frame}}"]
"""


def run_hook(args: list[str], stdin: str = "", timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(HOOK), *args], input=stdin, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done, time.monotonic() - t0


def jobs(svc: LiveService) -> list[str]:
    return [i["name"] for i in svc.client().recent()]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers: a hung service."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def cloud_input(tmp_path: Path) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "template.yaml").write_text(TEMPLATE)
    return json.dumps({
        "jobName": "shot100_cloud", "jobBundleDir": str(bundle),
        "parameters": [{"name": "SceneFile", "value": SCENE}, {"name": "Frames", "value": "1-24"},
                       {"name": "deadline:priority", "value": 60}],
        "assetReferences": {"inputFilenames": INPUTS[1:2] + INPUTS[3:4], "inputDirectories": [],
                            "outputDirectories": ["/studio/proj/shot100/render"], "referencedPaths": []}})


def test_deadline_cloud_hook_submits_the_bundle(live_service: LiveService, tmp_path: Path) -> None:
    done, _ = run_hook(["--server", live_service.url, "--token", TOKEN, "--give-up", "3.5", "--print-ids", "deadline-cloud"],
                          cloud_input(tmp_path))
    assert done.returncode == 0, done.stderr
    [job_id] = done.stdout.split()
    info = live_service.client().status(job_id)
    assert info["name"] == "shot100_cloud" and info["bytes_planned"] > 0
    plan = json.loads(live_service.r.get(f"prewarm:job:{job_id}:plan") or b"{}")
    assert {SCENE, INPUTS[1], INPUTS[3]} <= set(plan["files"]) and plan["priority"] == 60


def test_deadline_cloud_hook_leaves_the_submission_unchanged(live_service: LiveService, tmp_path: Path) -> None:
    """Run as the client runs it (payload on stdin, stdout read as changes to the submission): it prints
    nothing on stdout, so the submission goes on as it was, and returns within its give-up time."""
    done, took = run_hook(["--server", live_service.url, "--token", TOKEN, "--give-up", "3.5", "deadline-cloud"], cloud_input(tmp_path))
    assert done.returncode == 0 and done.stdout == "" and took < BOUND_S
    assert "warming shot100_cloud" in done.stderr


@pytest.mark.parametrize("server", ["dead", "silent"])
def test_hooks_give_up_fast_and_exit_0_when_the_service_is_away(
        server: str, silent_server: str, tmp_path: Path) -> None:
    url = silent_server if server == "silent" else f"http://127.0.0.1:{free_port()}"
    done, took = run_hook(["--server", url, "--token", TOKEN, "deadline-cloud"], cloud_input(tmp_path))
    assert done.returncode == 0 and took < BOUND_S
    assert "submission goes on" in done.stderr


def test_bad_hook_input_or_a_refusal_never_fails_the_submission(live_service: LiveService, tmp_path: Path) -> None:
    for args, stdin in ((["deadline-cloud"], "{not json"), (["deadline-cloud"], '{"jobBundleDir": "/nope"}'),
                        (["job", "--name", "x", "--frames", "1-3", "--input", "/etc/passwd"], ""),
                        (["no-such-kind"], "")):
        done, took = run_hook(["--server", live_service.url, "--token", TOKEN, *args], stdin)
        assert done.returncode == 0 and took < BOUND_S, done.stderr
        assert "submission goes on" in done.stderr
    done, _ = run_hook(["--server", live_service.url, "--token", TOKEN, "--give-up", "3.5", "job", "--name", "x", "--frames", "1",
                        "--input", "/etc/passwd"])
    assert "outside the allowed roots" in done.stderr
    assert jobs(live_service) == []


def test_generic_and_opencue_wrappers(live_service: LiveService, tmp_path: Path) -> None:
    inputs = [a for p in INPUTS for a in ("--input", p)]
    done, _ = run_hook(["--server", live_service.url, "--token", TOKEN, "--give-up", "3.5", "--print-ids", "job", "--name", "shot100_any",
                        "--frames", "1-24", *inputs])
    assert done.returncode == 0 and len(done.stdout.split()) == 1, done.stderr
    spec = tmp_path / "job.xml"
    spec.write_text(textwrap.dedent("""\
        <?xml version="1.0"?>
        <spec><facility>local</facility><show>proj</show><shot>shot100</shot><user>artist</user>
          <job name="proj-shot100-artist_lighting">
            <layers>
              <layer name="render" type="Render"><cmd>blender -b scene.blend -f #IFRAME#</cmd>
                <range>1-24x2</range><chunk>1</chunk></layer>
              <layer name="odd" type="Render"><cmd>blender -b scene.blend -f #IFRAME#</cmd>
                <range>2-24x2</range><chunk>1</chunk></layer>
            </layers>
          </job>
        </spec>"""))
    done, _ = run_hook(["--server", live_service.url, "--token", TOKEN, "--give-up", "3.5", "opencue", str(spec), *inputs])
    assert done.returncode == 0, done.stderr
    assert sorted(jobs(live_service)) == ["proj-shot100-artist_lighting", "shot100_any"]
    [cue] = [i for i in live_service.client().recent() if i["name"].startswith("proj-")]
    plan = json.loads(live_service.r.get(f"prewarm:job:{cue['id']}:plan") or b"{}")
    assert plan["frames"] == list(range(1, 25, 2)) + list(range(2, 25, 2))


STANDIN = {
    "Deadline/__init__.py": "",
    "Deadline/Events.py": '''
class _Event:
    def __init__(self):
        self.handlers = []
    def __iadd__(self, handler):
        self.handlers.append(handler)
        return self
    def __call__(self, *args):
        for h in self.handlers:
            h(*args)

class DeadlineEventListener:
    config = {}
    def __init__(self):
        for name in ("Submitted", "Started", "Finished", "Requeued", "Failed", "Suspended", "Resumed", "Deleted"):
            setattr(self, "OnJob%sCallback" % name, _Event())
    def GetConfigEntryWithDefault(self, key, default):
        return self.config.get(key, default)
    def GetBooleanConfigEntryWithDefault(self, key, default):
        value = self.config.get(key)
        return default if value is None else value.lower() == "true"
    def LogInfo(self, message):
        print("INFO", message, flush=True)
    def LogWarning(self, message):
        print("WARNING", message, flush=True)
''',
    "Deadline/Scripting.py": '''
class RepositoryUtils:
    @staticmethod
    def GetJobAuxiliaryPath(job):
        return job.aux_folder
''',
}

DRIVER = '''
import importlib.util, json, sys, time
from Deadline.Events import DeadlineEventListener

class Job:
    JobId = "5f0c0ffee"
    JobName = "shot100_dl10"
    JobFrames = "1-24"
    JobPlugin = "Blender"
    JobPriority = 55
    JobBatchName = "shot100"
    JobAuxiliarySubmissionFileNames = ["shot100_lighting_v001.blend"]
    aux_folder = "/studio/proj/shot100"
    def GetJobExtraInfoKeys(self):
        return ["prewarm_shot"]
    def GetJobExtraInfoKeyValue(self, key):
        return "shot100"
    def GetJobPluginInfoKeys(self):
        return ["SceneFile", "OutputFile", "Threads"]
    def GetJobPluginInfoKeyValue(self, key):
        return {"SceneFile": "/studio/proj/shot100/shot100_lighting_v001.blend",
                "OutputFile": "/studio/proj/shot100/render/f_####.exr", "Threads": "0"}[key]

DeadlineEventListener.config = json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("PrewarmEvents", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
listener = module.GetDeadlineEventListener()
t0 = time.monotonic()
listener.OnJobSubmittedCallback(Job())
print("TOOK", time.monotonic() - t0, flush=True)
module.CleanupDeadlineEventListener(listener)
'''


def run_plugin(tmp_path: Path, config: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    standin = tmp_path / "deadline-standin"
    for rel, text in STANDIN.items():
        (standin / rel).parent.mkdir(parents=True, exist_ok=True)
        (standin / rel).write_text(text)
    (standin / "driver.py").write_text(DRIVER)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}, "PYTHONPATH": str(standin)}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(standin / "driver.py"), str(PLUGIN / "PrewarmEvents.py"),
                           json.dumps(config)], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    return done, time.monotonic() - t0


def test_deadline10_event_plugin_submits_the_job(live_service: LiveService, tmp_path: Path) -> None:
    config = {"Server": live_service.url, "Token": TOKEN, "ExtraInputs": ";".join(INPUTS[1:])}
    done, _ = run_plugin(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert "PrewarmEvents: job 5f0c0ffee -> warm" in done.stdout, done.stdout + done.stderr
    [info] = live_service.client().recent()
    assert info["name"] == "shot100_dl10" and info["priority"] == 55
    plan = json.loads(live_service.r.get(f"prewarm:job:{info['id']}:plan") or b"{}")
    assert SCENE in plan["files"] and INPUTS[1] in plan["files"]
    assert plan["frames"] == list(range(1, 25))


def test_deadline10_event_plugin_gives_up_on_a_hung_service(silent_server: str, tmp_path: Path) -> None:
    done, took = run_plugin(tmp_path, {"Server": silent_server, "Token": TOKEN})
    assert done.returncode == 0 and took < BOUND_S, done.stderr
    assert "did not answer within" in done.stderr and "no warm for job 5f0c0ffee" in done.stdout


def test_the_plugin_ships_the_same_hook_module() -> None:
    assert (PLUGIN / "prewarm_hook.py").read_bytes() == HOOK.read_bytes()


def test_the_hook_says_it_gave_up_when_the_socket_timeout_fires_before_its_deadline(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """On a loaded node the socket's own timeout can fire just before the join's deadline: the same
    give-up, in the same words (a farm admin greps for them), not a bare TimeoutError."""
    import importlib.util
    import urllib.error
    import urllib.request

    spec = importlib.util.spec_from_file_location("prewarm_hook_timeout", HOOK)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    def urlopen(*_: object, **__: object) -> object:
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with caplog.at_level("WARNING"):
        assert hook.post_json("http://127.0.0.1:9", "/live/jobs", {}, give_up_s=0.5) is None
    assert "did not answer within 0.5s" in caplog.text
