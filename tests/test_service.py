"""The warm service on loopback with real Redis (and a real Celery worker for the end-to-end warm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from prewarm.errors import InputError
from prewarm.farm.client import PrewarmClient
from prewarm.farm.service import connect, create_app
from tests.fixtures.service import (
    SHOT100,
    TOKEN,
    TRACES,
    LiveService,
    manifest_text,
    run_server,
    wait_final,
)
from tests.fixtures.services import ROOT, StartWorker, free_port

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(svc: LiveService, path: str, **kw: object) -> requests.Response:
    headers = {**AUTH, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return requests.post(f"{svc.url}/api/v1{path}", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def test_sample_job_warms_end_to_end_and_a_resubmission_reuses_it(
        live_service: LiveService, celery_worker: StartWorker) -> None:
    celery_worker(live_service.config, "prewarm.prewarm", redis_url=live_service.settings.redis_url)
    client = live_service.client(timeout=30)
    result = client.submit_manifest(manifest_text(), traces=[f"{TRACES}/shot100"])
    assert not result["duplicate"] and len(result["ids"]) == 1
    assert result["job"] == "shot100_lighting_v001" and result["plan"]["bytes"] > 0
    info = wait_final(client, result["ids"][0])
    assert info["state"] == "done", info["findings"]
    assert info["counters"]["bytes_done"] + info["counters"]["bytes_skipped"] == info["bytes_planned"] > 0

    second = client.submit_manifest(manifest_text(), traces=[f"{TRACES}/shot100"])
    assert second["duplicate"] and second["ids"] == result["ids"]
    assert [j["id"] for j in client.recent()] == result["ids"]


def test_yaml_body_and_duplicates_while_queued(live_service: LiveService) -> None:
    body = manifest_text(job="shot100_yaml")
    first = post(live_service, "/jobs", data=body, headers={"Content-Type": "application/yaml"})
    assert first.status_code == 202, first.text
    second = post(live_service, "/jobs", data=body, headers={"Content-Type": "application/yaml"})
    assert second.status_code == 200 and second.json()["ids"] == first.json()["ids"]
    job_id = first.json()["ids"][0]
    assert live_service.client().status(job_id)["state"] == "queued"
    cancelled = live_service.client().cancel(job_id)
    assert cancelled == {"id": job_id, "cancelled": True, "state": "cancelled"}
    third = post(live_service, "/jobs", data=body, headers={"Content-Type": "application/yaml"})
    assert third.status_code == 202 and third.json()["ids"] != [job_id]


def test_changes_need_the_token_reads_do_not(live_service: LiveService) -> None:
    url = f"{live_service.url}/api/v1"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = requests.post(f"{url}/jobs", json={"manifest": manifest_text()}, headers=headers, timeout=10)
        assert r.status_code == 401 and "Bearer" in r.json()["error"]
        assert requests.post(f"{url}/jobs/abc/cancel", headers=headers, timeout=10).status_code == 401
    assert live_service.r.zcard("prewarm:jobs") == 0
    assert requests.get(f"{url}/health", timeout=10).json() == {"ok": True, "redis": "ok"}
    assert requests.get(f"{url}/jobs", timeout=10).json() == []


def test_oversize_bodies_get_413_with_or_without_a_length(live_service: LiveService) -> None:
    big = "# " + "x" * (70 * 1024) + "\n" + manifest_text()
    r = post(live_service, "/jobs", data=big, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    chunks = (big[i:i + 8192].encode() for i in range(0, len(big), 8192))
    r = post(live_service, "/jobs", data=chunks, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413
    assert live_service.r.zcard("prewarm:jobs") == 0


@pytest.mark.parametrize("body, where", [
    ({"manifest": "job: x\nframes: 1-2\ninputs:\n  - /etc/passwd\n"}, "manifest:4: inputs[0]"),
    ({"bundle_path": "/home/someone/bundle"}, "bundle_path"),
    ({"manifest": manifest_text(), "traces": ["/var/log"]}, "traces[0]"),
])
def test_paths_outside_the_roots_are_refused_by_name(live_service: LiveService, body: dict[str, object],
                                                     where: str) -> None:
    r = post(live_service, "/jobs", json=body)
    assert r.status_code == 403, r.text
    assert r.json()["where"] == where and "outside the allowed roots" in r.json()["error"]
    assert live_service.r.zcard("prewarm:jobs") == 0


@pytest.mark.parametrize("kw, status, where, says", [
    ({"json": {"manifest": "job: x\nframes: 1-\ninputs: [/studio/proj/a]\n"}}, 422, "manifest:2", "frame"),
    ({"json": {"manifest": "job: [unclosed"}}, 422, "manifest", "YAML"),
    ({"json": {}}, 400, "body", "exactly one of"),
    ({"json": {"manifest": "a", "bundle_path": "/studio/proj/b"}}, 400, "body", "exactly one of"),
    ({"json": {"manifest": 7}}, 422, "manifest", "string"),
    ({"json": {"manifesto": "x"}}, 422, "manifesto", "Extra inputs"),
    ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "body", "JSON"),
    ({"json": {"manifest": "job: x\nframes: 1\ninputs:\n  - /studio/proj/../../etc/shadow\n"}}, 422, "manifest:4",
     ".. components"),
    ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/yaml"}}, 400, "body", "UTF-8"),
    ({"data": b"x", "headers": {"Content-Type": "image/png"}}, 415, "", "content type"),
    ({"json": {"manifest": manifest_text(), "traces": [f"{TRACES}/none"]}}, 422, "traces[0]",
         f"{TRACES}/none: no such trace file or folder"),
])
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(live_service: LiveService, kw: dict[str, object],
                                                        status: int, where: str, says: str) -> None:
    r = post(live_service, "/jobs", **kw)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    if where:
        assert r.json()["where"].startswith(where)


def test_unknown_jobs_are_404(live_service: LiveService) -> None:
    url = f"{live_service.url}/api/v1"
    for job_id in ("0123abcd", "not-hex", "x" * 64):
        assert requests.get(f"{url}/jobs/{job_id}", timeout=10).status_code == 404
        assert requests.post(f"{url}/jobs/{job_id}/cancel", headers=AUTH, timeout=10).status_code == 404
    assert requests.get(f"{url}/jobs", params={"limit": 0}, timeout=10).status_code == 422


@pytest.fixture
def service_without_redis(live_service: LiveService) -> Iterator[str]:
    sender = live_service.sender
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")
    url, stop = run_server(create_app(live_service.settings, dead, sender.send, sender.revoke, TOKEN))
    yield url
    stop()


def test_redis_down_is_503_not_500(service_without_redis: str) -> None:
    url = f"{service_without_redis}/api/v1"
    assert requests.get(f"{url}/health", timeout=10).status_code == 503
    assert requests.get(f"{url}/jobs/abc", timeout=10).status_code == 503
    r = requests.post(f"{url}/jobs", json={"manifest": manifest_text(), "traces": []}, headers=AUTH, timeout=30)
    assert r.status_code == 503 and "Redis" in r.json()["error"]


def test_submit_cli(live_service: LiveService, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(manifest_text(job="shot100_cli"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}

    def submit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "prewarm", "submit", *args, "--server", live_service.url],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)

    done = submit(str(manifest), "--token", TOKEN, "--traces", f"{TRACES}/shot100")
    assert done.returncode == 0, done.stderr
    [job_id] = done.stdout.split()
    assert live_service.client().status(job_id)["name"] == "shot100_cli"
    refused = submit(str(manifest), "--token", "nope")
    assert refused.returncode == 2 and "401" in refused.stderr and "Traceback" not in refused.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: x\nframes: 1-2\ninputs:\n  - /etc/passwd\n")
    refused = submit(str(bad), "--token", TOKEN)
    assert refused.returncode == 2 and "manifest:4: inputs[0]" in refused.stderr and "/etc/passwd" in refused.stderr
    from tests.test_hooks import SCENE, TEMPLATE

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "template.yaml").write_text(TEMPLATE)
    given = submit(str(bundle), "--token", TOKEN, "-p", f"SceneFile={SCENE}", "-p", "Frames=1-3", "--traces",
                   f"{TRACES}/shot100")       # as `deadline bundle submit -p` takes them
    assert given.returncode == 0, given.stderr
    [bundle_id] = given.stdout.split()
    assert live_service.client().status(bundle_id)["name"] == "shot100_cloud"


def test_client_raises_input_errors_at_once(live_service: LiveService) -> None:
    client = live_service.client(retries=5, backoff=1.0)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="outside the allowed roots"):
        client.submit_manifest("job: x\nframes: 1\ninputs: [/etc/passwd]\n")
    assert time.monotonic() - t0 < 5  # no retry, no backoff on a 4xx
    with pytest.raises(InputError, match="no warm job"):
        client.status("abcdef")
    assert json.loads(json.dumps(client.health())) == {"ok": True, "redis": "ok"}


def test_bundles_and_deadline_jobs_are_planned_like_manifests(live_service: LiveService, tmp_path: Path) -> None:
    from tests.test_hooks import INPUTS, SCENE, TEMPLATE

    bundle = tmp_path / "traces" / "bundle"
    bundle.mkdir()
    (bundle / "template.yaml").write_text(TEMPLATE)
    (bundle / "parameter_values.yaml").write_text(f"parameterValues:\n- name: SceneFile\n  value: {SCENE}\n")
    (bundle / "asset_references.yaml").write_text(
        "assetReferences:\n  inputs:\n    filenames:\n" + "".join(f"    - {p}\n" for p in INPUTS[1:2]))
    client = live_service.client(timeout=30)
    sent = client.submit_bundle(bundle, traces=[])
    by_path = client.submit_bundle(f"{TRACES}/bundle", traces=[], remote=True)
    assert not sent["duplicate"] and by_path["duplicate"] and by_path["ids"] == sent["ids"]
    assert sent["job"] == "shot100_cloud" and sent["plan"]["files"] == 2
    job_info = tmp_path / "job.txt"
    job_info.write_text("Plugin=Blender\nName=shot100_dl\nFrames=1-24x2\nPriority=40\n")
    plugin_info = tmp_path / "plugin.txt"
    plugin_info.write_text(f"SceneFile={SCENE}\nOutputFile=/studio/proj/out/f_####.exr\n")
    dl = client.submit_deadline(job_info, plugin_info, extra_inputs=INPUTS[3:4], traces=[])
    info = client.status(dl["ids"][0])
    assert info["name"] == "shot100_dl" and info["priority"] == 40 and dl["plan"]["frames"] == 12
    with pytest.raises(InputError, match="Frames"):
        client.submit_deadline("Name=x\n", f"SceneFile={SCENE}\n")
    with pytest.raises(InputError, match="template"):
        client._submit({"bundle": {"parameter_values": {}}}, None)


def test_serve_command_refuses_without_a_token_and_serves_with_one(
        live_service: LiveService, tmp_path: Path) -> None:
    from tests.fixtures.services import stop_pid

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")},
           "PREWARM_CONFIG": str(live_service.config), "PREWARM_REDIS_URL": str(live_service.settings.redis_url)}
    port = free_port()
    cmd = [sys.executable, "-m", "prewarm", "serve", "--port", str(port)]
    refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "service_token" in refused.stderr and "Traceback" not in refused.stderr
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "PREWARM_SERVICE_TOKEN": "cli-token"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = PrewarmClient(f"http://127.0.0.1:{port}", token="cli-token", retries=40, backoff=0.05, timeout=5)
        assert client.health() == {"ok": True, "redis": "ok"}
        assert client.submit_manifest(manifest_text(job="shot100_served"), traces=[])["ids"]
        with pytest.raises(InputError, match="401"):
            PrewarmClient(f"http://127.0.0.1:{port}", token="wrong").cancel("abc")
    finally:
        stop_pid(proc.pid)
        proc.wait(10)


def test_without_traces_a_job_plans_from_the_trace_store(live_service: LiveService, tmp_path: Path) -> None:
    from dataclasses import replace

    from prewarm.traces.store import import_traces

    settings = replace(live_service.settings, trace_store=str(tmp_path / "store"))
    import_traces(settings, [str(SHOT100 / "traces")], "proj", "shot100", "shot100_lighting_v001")
    sender = live_service.sender
    url, stop = run_server(create_app(settings, live_service.r, sender.send, sender.revoke, TOKEN))
    try:
        client = PrewarmClient(url, token=TOKEN, timeout=30)
        from_store = client.submit_manifest(manifest_text(job="shot100_lighting_v002"))
        bare = live_service.client(timeout=30).submit_manifest(manifest_text(job="shot100_lighting_v002"), traces=[])
    finally:
        stop()
    assert from_store["plan"]["trace_records"] > 0 and bare["plan"]["trace_records"] == 0


def test_a_hook_payload_warms_every_input_it_names_under_its_job_name(live_service: LiveService) -> None:
    """The Deadline Cloud client's payload (flat asset references) with the bundle's template, as the hook sends it;
    the service says which of the job's queues no worker consumes."""
    from tests.test_hooks import INPUTS, SCENE, TEMPLATE

    payload = {"jobName": "shot100 from the cloud submitter",
               "parameters": [{"name": "SceneFile", "value": SCENE}, {"name": "Frames", "value": "1-4"}],
               "assetReferences": {"inputFilenames": INPUTS[1:2], "inputDirectories": [],
                                   "outputDirectories": ["/studio/proj/shot100/render"],
                                   "referencedPaths": INPUTS[3:4]}}
    settings = live_service.settings
    sender = live_service.sender
    url, stop = run_server(create_app(settings, live_service.r, sender.send, sender.revoke, TOKEN,
                                      served=lambda: frozenset({"prewarm.gw-z"})))
    try:
        r = requests.post(f"{url}/api/v1/jobs", headers=AUTH, timeout=30,
                          json={"hook": payload, "bundle": {"template.yaml": TEMPLATE}, "traces": []})
    finally:
        stop()
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["job"] == "shot100 from the cloud submitter" and answer["unserved"] == ["prewarm.prewarm"]
    plan = json.loads(live_service.r.get(f"prewarm:job:{answer['ids'][0]}:plan") or b"{}")
    assert {SCENE, INPUTS[1], INPUTS[3]} <= set(plan["files"])


@pytest.mark.parametrize("body, status, says", [
    ({"hook": {"jobName": "x", "assetReferences": ["/studio/proj/a"]}, "bundle": {"template": {}}}, 422,
     "assetReferences: expected"),
    ({"hook": {"jobName": "x", "jobBundleDir": "/etc"}}, 422, "outside the allowed roots"),
    ({"hook": {"jobName": "x"}, "bundle": {"template": "{" * 3000}}, 422, "template"),
    ({"hook": {"jobName": "x", "parameters": [{"name": "Frames", "value": "1" * 40_000}]},
      "bundle": {"template": {}}}, 422, "more than a parameter value may have"),
    ({"hook": {"jobName": "x", "parameters": [{"name": "Frames", "value": "1" * (1 << 20)}]}}, 413, ""),
    ({"hook": ["not", "a", "payload"]}, 422, "hook"),
])
def test_a_payload_of_the_wrong_shape_gets_a_4xx(live_service: LiveService, body: dict[str, object], status: int,
                                                 says: str) -> None:
    r = post(live_service, "/jobs", json=body)
    assert r.status_code == status, r.text
    assert says in r.text and "Traceback" not in r.text
