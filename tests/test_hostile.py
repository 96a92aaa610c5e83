"""The hostile suite: every way out of the roots, tried on the real processes, with strace as the witness.

Each test runs a real prewarm process (the CLI's embedded warm, a Celery worker, `prewarm
serve`, `prewarm watch`) under `strace -f -y` over the tree of `tests/fixtures/hostile.py`,
then checks two things: what the process said (findings, 4xx bodies, exit codes: the
studio path and what is wrong, never a local path of this machine, never a line of the
file) and what the kernel saw it do (no open, stat or listing of anything outside the
roots' local folders: `/etc/passwd`, `/etc`, the secret beside the root, the FIFO, the device).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from prewarm.testkit.services import free_port
from tests.fixtures.hostile import SECRET, Hostile, hostile_tree, start_traced, stop_traced, traced
from tests.fixtures.services import ROOT

pytestmark = pytest.mark.integration

STUDIO = "/studio/proj"
TOKEN = "hostile-token"
FORBIDDEN = ("/etc/passwd", "/etc/ssh", "/etc/shadow")


@pytest.fixture
def tree(tmp_path: Path) -> Hostile:
    return hostile_tree(tmp_path / "site")


def config(tmp_path: Path, tree: Hostile, **extra: object) -> Path:
    path = tmp_path / "prewarm.yaml"
    path.write_text(yaml.safe_dump({"path_map": [{"studio": STUDIO, "local": str(tree.root)}], "roots": [STUDIO],
                                    "in_flight": 4, **extra}))
    return path


def prewarm(*args: str) -> list[str]:
    return [sys.executable, "-m", "prewarm", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}


def assert_nothing_outside(run: object, tree: Hostile, evidence: Path | None = None) -> None:
    """Nothing outside was touched, and strace did see the process at work (below `evidence`)."""
    from tests.fixtures.hostile import Traced

    assert isinstance(run, Traced)
    seen = str(evidence or tree.root)
    assert any(p.startswith(seen) for p in run.touched()), f"strace saw nothing below {seen}: no evidence"
    run.assert_never(tree.outside, *FORBIDDEN)
    assert "/etc" not in run.listed(), "the /etc link was listed"
    assert not {str(tree.fifo), str(tree.device)} & run.opened(), "a FIFO or a device was opened"


def no_leak(text: str, tree: Hostile) -> None:
    assert SECRET.decode().strip() not in text and "root:x:0:0" not in text, "file content quoted"
    assert str(tree.root) not in text and str(tree.outside) not in text, "a local path of this machine shown"


def test_embedded_warm_of_a_hostile_tree_reads_only_inside(tree: Hostile, tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    inputs = [f"{STUDIO}/hostile/", *tree.refused, f"{STUDIO}/hostile/fifo.tx", f"{STUDIO}/hostile/null.tx",
              f"{STUDIO}/hostile/dangling.tx", f"{STUDIO}/hostile/latest/tex.tx"]
    manifest.write_text(yaml.safe_dump({"job": "hostile", "frames": "1-2", "inputs": inputs}))
    run = traced(prewarm("--config", str(config(tmp_path, tree)), "warm", str(manifest), "--json"),
                 tmp_path / "strace.log", cwd=ROOT, env=clean_env())
    assert run.proc.returncode == 1, run.proc.stderr  # partial: the refused inputs are missing to the render
    [report] = json.loads(run.proc.stdout)
    sizes = {p: 100_000 if "ok" in p or "abs" in p else 50_000 if "latest" in p else 10_000 for p in tree.ok}
    # every file inside, through `latest` and the absolute links too (v2/ is `latest`: walked once)
    assert report["state"] == "partial" and report["counters"]["inputs_missing"] == 16
    assert report["counters"]["bytes_done"] == sum(sizes.values()) == 360_000
    assert report["counters"]["files_done"] == len(tree.ok)
    for path in tree.refused:
        assert f"planner: missing input {path} (a symlink leads outside the allowed roots" in run.proc.stderr
    assert f"{STUDIO}/hostile/fifo.tx (not a regular file" in run.proc.stderr
    assert f"{STUDIO}/hostile/dangling.tx (not found" in run.proc.stderr
    no_leak(run.proc.stderr + run.proc.stdout, tree)
    assert_nothing_outside(run, tree)


def hostile_plan(tmp_path: Path, tree: Hostile) -> Path:
    """A plan naming every refused entry (a planner would not): the worker must refuse at open."""
    paths = [*tree.refused, f"{STUDIO}/hostile/fifo.tx", f"{STUDIO}/hostile/null.tx", f"{STUDIO}/hostile/ok.tx"]
    plan = {"job": "hostile", "frames": [1], "gateways": ["gwh"],
            "ranges": [{"path": p, "offset": 0, "length": 4096} for p in paths]}
    path = tmp_path / "hostile.plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_a_celery_worker_refuses_what_a_hostile_plan_names(tree: Hostile, tmp_path: Path, redis_url: str) -> None:
    cfg = config(tmp_path, tree, visibility_timeout_s=10)
    env = {**clean_env(), "PREWARM_CONFIG": str(cfg), "PREWARM_REDIS_URL": redis_url}
    celery = Path(sys.executable).with_name("celery")
    log, out = tmp_path / "worker.strace", tmp_path / "worker.log"
    worker = start_traced([str(celery), "-A", "workers", "worker", "-Q", "prewarm.gwh", "-P", "threads", "-c", "2",
                           "--without-mingle", "--without-gossip", "-l", "info", "-n", f"hostile-{os.getpid()}@%h"],
                          log, out, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 90
        while b" ready." not in out.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, out.read_text()[-2000:]
            time.sleep(0.1)
        done = subprocess.run(prewarm("--config", str(cfg), "warm", str(hostile_plan(tmp_path, tree)), "--redis",
                                      redis_url, "--json"), cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                              timeout=120)
    finally:
        stop_traced(worker)
    assert done.returncode == 1, done.stderr
    [report] = json.loads(done.stdout)
    kinds = {f["path"]: f["kind"] for f in report["findings"]}
    assert {kinds[p] for p in tree.refused} == {"outside-roots"}
    assert kinds[f"{STUDIO}/hostile/fifo.tx"] == kinds[f"{STUDIO}/hostile/null.tx"] == "changed"
    assert report["counters"]["bytes_done"] == 4096 and report["counters"]["files_done"] == 1
    assert report["counters"]["files_failed"] == len(tree.refused) + 2
    assert report["failed_ranges"] == 0, "refusals are final: nothing is offered to --retry"
    no_leak(done.stdout + done.stderr, tree)
    from tests.fixtures.hostile import Traced

    assert_nothing_outside(Traced(done, log.read_text(errors="replace")), tree)
    assert "Redis keeps no append-only file" in out.read_text(), "the worker warns about a Redis that keeps nothing"


@pytest.fixture
def traced_service(tree: Hostile, tmp_path: Path, redis_url: str):
    """`prewarm serve` under strace, with the hostile tree as /studio/proj."""
    cfg = config(tmp_path, tree, service_token=TOKEN, redis_url=redis_url)
    port = free_port()
    log, out = tmp_path / "serve.strace", tmp_path / "serve.log"
    proc = start_traced(prewarm("--config", str(cfg), "serve", "--port", str(port), "--header-timeout", "2"), log, out,
                        cwd=ROOT, env=clean_env())
    url = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-2000:]
            time.sleep(0.1)
    yield url, log, out
    stop_traced(proc)
    proc.wait(timeout=30)


def post(url: str, body: dict[str, object]) -> requests.Response:
    return requests.post(f"{url}/jobs", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_the_service_never_leaves_the_roots_nor_quotes_what_it_read(traced_service, tree: Hostile) -> None:
    url, log, out = traced_service
    traces = tree.root / "traces"
    traces.mkdir()
    (traces / "frame.0001.jsonl").write_text(json.dumps({"path": f"{STUDIO}/hostile/ok.tx", "offset": 0,
                                                         "length": 4096, "frame": 1}) + "\n")
    os.symlink("/etc/passwd", traces / "frame.0002.jsonl")
    (tree.root / "notatrace.txt").write_bytes(SECRET)
    (tree.root / "danglingtraces").mkdir()
    os.symlink("gone.jsonl", tree.root / "danglingtraces" / "frame.0003.jsonl")
    bundle = tree.root / "bundle"
    bundle.mkdir()
    os.symlink("/etc/passwd", bundle / "template.yaml")
    manifest = yaml.safe_dump({"job": "svc", "frames": "1", "inputs": [f"{STUDIO}/hostile/", *tree.refused]})
    cases = [
        ({"manifest": manifest, "traces": [f"{STUDIO}/traces"]}, 422, "traces[0]",
         f"{STUDIO}/traces/frame.0002.jsonl: a symlink leads outside the allowed roots"),
        ({"manifest": manifest, "traces": [f"{STUDIO}/notatrace.txt"]}, 422, f"{STUDIO}/notatrace.txt",
         "neither an strace log nor prewarm JSON Lines"),
        ({"manifest": manifest, "traces": [f"{STUDIO}/danglingtraces"]}, 422, "traces[0]",
         f"{STUDIO}/danglingtraces/frame.0003.jsonl: not found (a symlink that leads nowhere?)"),
        ({"manifest": manifest, "traces": [f"{STUDIO}/hostile/shadow.tx"]}, 422, "traces[0]",
         "a symlink leads outside the allowed roots"),
        ({"manifest": manifest, "traces": [f"{STUDIO}/hostile/fifo.tx"]}, 422, "traces[0]",
         "not a trace file or folder (a FIFO, device or socket)"),
        ({"bundle_path": f"{STUDIO}/bundle"}, 422, f"{STUDIO}/bundle/template.yaml",
         "cannot read: a symlink leads outside the allowed roots"),
        ({"bundle_path": f"{STUDIO}/hostile/etc"}, 422, f"{STUDIO}/hostile/etc",
         "a symlink leads outside the allowed roots"),
        ({"manifest": manifest.replace(STUDIO + "/hostile/", "/etc/", 1)}, 403, "manifest:3: inputs[0]",
         "outside the allowed roots"),
    ]
    for body, status, where, says in cases:
        r = post(url, body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["where"] == where and says in r.json()["error"], (body, r.json())
        no_leak(r.text, tree)
    ok = post(url, {"manifest": manifest, "traces": [f"{STUDIO}/traces/frame.0001.jsonl"]})
    assert ok.status_code == 202, ok.text
    missing = {m["path"]: m["reason"] for m in ok.json()["missing"]}
    assert all(missing[p].startswith("a symlink leads outside the allowed roots") for p in tree.refused)
    no_leak(ok.text, tree)
    report = requests.get(f"{url}/jobs/{ok.json()['ids'][0]}", timeout=10)
    assert report.status_code == 200 and str(tree.root) not in report.text
    time.sleep(0.5)  # let strace write its last lines
    from tests.fixtures.hostile import Traced

    assert_nothing_outside(Traced(subprocess.CompletedProcess([], 0, "", ""), log.read_text(errors="replace")), tree)
    assert "Redis keeps no append-only file" in out.read_text(), "the service warns about a Redis that keeps nothing"


def test_watch_folders_leave_links_fifos_and_devices_alone(tree: Hostile, tmp_path: Path) -> None:
    spool, drops, store = tmp_path / "spool", tmp_path / "drops", tmp_path / "store"
    for d in (spool, drops / "proj" / "sh" / "job"):
        d.mkdir(parents=True)
    planted = [spool / "evil.yaml", spool / "evil_dir", drops / "proj" / "sh" / "job" / "frame.0001.log",
               spool / "fifo.yaml", drops / "proj" / "sh" / "job" / "frame.0002.log"]
    os.symlink("/etc/passwd", planted[0])
    os.symlink("/etc", planted[1])
    os.symlink(str(tree.outside / "secret.txt"), planted[2])
    os.mkfifo(planted[3])
    os.mkfifo(planted[4])
    bundle = spool / "bundle"
    bundle.mkdir()
    os.symlink("/etc/passwd", bundle / "template.yaml")
    run = traced(prewarm("--config", str(config(tmp_path, tree)), "watch", "--spool", str(spool), "--traces",
                         str(drops), "--store", str(store), "--once", "--settle", "0.2"),
                 tmp_path / "watch.strace", cwd=ROOT, env=clean_env())
    assert run.proc.returncode == 1, run.proc.stderr  # the bundle failed, by name
    assert all(os.path.lexists(p) for p in planted), "a planted link or FIFO was moved"
    assert (spool / "failed" / "bundle.error.txt").read_text().startswith(
        "bundle/template.yaml: cannot read: a symlink leads outside the allowed roots")
    assert not list(store.rglob("*.gz")), "a link was filed in the trace store"
    no_leak(run.proc.stderr, tree)
    assert_nothing_outside(run, tree, spool)


def test_the_trace_store_is_listed_and_pruned_without_following_links(tree: Hostile, tmp_path: Path) -> None:
    from prewarm.plan.manifest import parse_manifest
    from prewarm.site.settings import Settings
    from prewarm.traces.catalogue import find_traces, list_traces, prune
    from prewarm.traces.store import import_traces

    store = tmp_path / "store"
    settings = Settings(trace_store=str(store), roots=(STUDIO,))
    trace = tmp_path / "frame.0001.jsonl"
    trace.write_text(json.dumps({"path": f"{STUDIO}/a.tx", "offset": 0, "length": 10}) + "\n")
    import_traces(settings, [str(trace)], "proj", "sh", "job_v001")
    victim = tree.outside / "victim" / "sh" / "job_v002"
    victim.mkdir(parents=True)
    (victim / "frame.0001.jsonl.gz").write_bytes(b"precious")
    os.symlink(str(tree.outside / "victim"), store / "evil")             # a show folder that is a link out
    os.symlink("/etc/passwd", store / "proj" / "sh" / "job_v001" / "frame.0002.jsonl.gz")
    os.symlink(str(tree.outside), store / "proj" / "outside")           # a shot folder that is a link out
    manifest = parse_manifest("job: job_v003\nframes: 1\ninputs: [/studio/proj/a.tx]\n", "m")
    assert [j.job for j in list_traces(settings)] == ["job_v001"]
    assert find_traces(settings, manifest) == [str(store / "proj" / "sh" / "job_v001")]
    assert list_traces(settings)[0].frames == 1, "the planted link is not a frame"
    prune(settings, keep_jobs=0)
    assert (victim / "frame.0001.jsonl.gz").read_bytes() == b"precious"
    assert not (store / "proj" / "sh").exists()
    with pytest.raises(Exception, match="a link or a file where a folder should be"):
        import_traces(settings, [str(trace)], "evil", "sh", "job_v009")  # the show folder is a link out
    assert not (tree.outside / "victim" / "sh" / "job_v009").exists()


def test_a_traces_folder_given_on_the_command_line_is_its_own_root(tree: Hostile, tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "frame.0001.jsonl").write_text(json.dumps({"path": f"{STUDIO}/hostile/ok.tx", "offset": 0,
                                                         "length": 10}) + "\n")
    os.symlink(str(tree.outside / "secret.txt"), traces / "frame.0002.jsonl")
    os.symlink(".", traces / "again")  # a loop: walked once
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({"job": "j", "frames": "1", "inputs": [f"{STUDIO}/hostile/ok.tx"]}))
    run = traced(prewarm("--config", str(config(tmp_path, tree)), "plan", str(manifest), "--traces", str(traces)),
                 tmp_path / "plan.strace", cwd=ROOT, env=clean_env())
    assert run.proc.returncode == 2
    assert run.proc.stderr.strip() == (f"prewarm plan: {traces}/frame.0002.jsonl: a symlink leads outside the "
                                       "allowed roots")
    assert_nothing_outside(run, tree, evidence=traces)


SWAP = """
import os, sys
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.guard import Guard, Refused
from prewarm.warm.reader import MountReader

root, outside = sys.argv[1], sys.argv[2]
reader = MountReader(Guard(("/studio/proj",), PathMap((Prefix("/studio/proj", (), root),))))
reader.open("/studio/proj/swap/a.tx").close()  # the folder's resolution is now cached
os.rename(root + "/swap", root + "/swap.old")
os.symlink(outside, root + "/swap")  # swapped for a link out, after the check
try:
    reader.open("/studio/proj/swap/secret.txt")
except Refused as exc:
    print(exc)
"""


def test_a_folder_swapped_for_a_link_after_the_check_is_refused_before_anything_beyond_is_opened(
        tree: Hostile, tmp_path: Path) -> None:
    (tree.root / "swap").mkdir()
    (tree.root / "swap" / "a.tx").write_bytes(b"a" * 10)
    script = tmp_path / "swap.py"
    script.write_text(SWAP)
    run = traced([sys.executable, str(script), str(tree.root), str(tree.outside)], tmp_path / "swap.strace",
                 cwd=ROOT, env=clean_env())
    # the kept folder descriptor now names swap.old: forgotten, and the path resolved again from the root
    assert run.proc.stdout.strip() == f"{STUDIO}/swap/secret.txt: a symlink leads outside the allowed roots"
    assert_nothing_outside(run, tree)
    assert f"{tree.root}/swap/a.tx" in run.opened()


def _deep(n: int) -> object:
    value: object = 1
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("body, status", [
    ({"bundle": {"template": _deep(900)}}, 400),
    ({"bundle": {"template": "a: " + "[" * 20000 + "]" * 20000}}, 422),
    ({"bundle": {"template": {"specificationVersion": "jobtemplate-2023-09", "name": "x" * 100,
                              "steps": [{"name": "s", "script": _deep(150)}]}}}, 422),
    ({"manifest": "job: j\nframes: 1\ninputs: " + "[" * 30000 + "]" * 30000}, 422),
    ({"manifest": "job: j\nframes: 1-10\ngranule: 1e400\ninputs: [/studio/proj/a]\n"}, 422),
    ({"manifest": "job: j\nframes: 1\ngateway: [" + ",".join(f"g{i}" for i in range(5000)) + "]\n"
                  "inputs: [/studio/proj/a]\n"}, 422),
    ({"manifest": "job: j\nframes: 1\ninputs: [/studio/proj/a]\n", "traces": ["/studio/proj/a\u0000/b"]}, 403),
    ({"manifest": "job: j\nframes: 1\ninputs: [/studio/proj/" + "d/" * 2000 + "x]\n"}, 202),
    ({"manifest": "job: j\nframes: 1\ninputs: [/studio/proj/" + "n" * 4000 + "]\n"}, 202),
    ({"manifest": "job: j\nframes: 1\ninputs: ['/studio/proj/\u2215..\u2215etc\u2215passwd', "
                  "'/studio/proj/\uff0e\uff0e/x']\n"}, 202),
    ({"manifest": "\x00\x01\x02binary\xff"}, 422),
])
def test_hostile_requests_get_a_4xx_or_findings_never_a_500(live_service, body: dict[str, object],
                                                            status: int) -> None:
    r = requests.post(f"{live_service.url}/api/v1/jobs", json=body, timeout=60,
                      headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == status, r.text[:500]
    if status >= 400:
        assert set(r.json()) == {"error", "where"} and "\n" not in r.json()["error"]
    else:
        assert all(m["reason"] for m in r.json()["missing"]), "an impossible path is a finding"


# -- names that are not UTF-8 (issue 20, item 1) ---------------------------------------------------------------

BAD = b"bad\xff\xfe.tx"
"""A legal Linux file name that is not UTF-8, as filers written from other systems hold."""


def mixed_folder(tree: Hostile) -> str:
    """`hostile/mixed/`: two good files, one badly named, and a badly named folder with a file in it."""
    folder = os.fsencode(tree.root / "mixed")
    os.makedirs(folder + b"/dir\xe9", exist_ok=True)
    for name, size in ((b"good.tx", 8192), (b"also.tx", 4096), (BAD, 12288), (b"dir\xe9/inner.tx", 4096)):
        with open(folder + b"/" + name, "wb") as fh:
            fh.write(b"p" * size)
    return f"{STUDIO}/mixed/"


def test_a_name_that_is_not_utf8_is_one_finding_and_the_rest_is_warmed_through_celery(
        tree: Hostile, tmp_path: Path, redis_url: str, celery_worker) -> None:
    cfg = config(tmp_path, tree, redis_url=redis_url, queue="gwu", visibility_timeout_s=10)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({"job": "bytes", "frames": "1-2", "inputs": [mixed_folder(tree)]}))
    celery_worker(cfg, "prewarm.gwu", concurrency=2)
    plan_file = tmp_path / "plan.json"
    planned = subprocess.run(prewarm("--config", str(cfg), "plan", str(manifest), "-o", str(plan_file)), cwd=ROOT,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(plan_file.read_text())
    assert sorted(plan["files"]) == [f"{STUDIO}/mixed/also.tx", f"{STUDIO}/mixed/good.tx"]
    assert {m["path"]: m["reason"] for m in plan["missing"]} == {
        f"{STUDIO}/mixed/bad\\xff\\xfe.tx": "the name is not UTF-8 (its bytes shown as \\xNN): not planned, "
                                           "rename it on the filer",
        f"{STUDIO}/mixed/dir\\xe9": "the name is not UTF-8 (its bytes shown as \\xNN): not planned, "
                                   "rename it on the filer"}
    run = traced(prewarm("--config", str(cfg), "warm", str(plan_file), "--redis", redis_url, "--json"),
                 tmp_path / "warm.strace", cwd=ROOT, env=clean_env(), timeout=90)
    assert run.proc.returncode == 1, run.proc.stderr  # partial: two inputs are missing to the render
    [report] = json.loads(run.proc.stdout)
    assert report["state"] == "partial"
    assert report["counters"]["files_done"] == 2 and report["counters"]["bytes_done"] == 8192 + 4096
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_url)
    assert r.hget(f"prewarm:job:{report['id']}", "state") == b"partial"
    assert all(b"\xed" not in k and b"\\x" not in k for k in r.keys("*")), "no key holds the bad name"
    embedded = config(tmp_path, tree)  # the worker has read its settings: this file is now the embedded warm's
    again = subprocess.run(prewarm("--config", str(embedded), "warm", str(manifest), "--json"), cwd=ROOT,
                           env=clean_env(), capture_output=True, text=True, timeout=60)  # one-step, embedded
    assert again.returncode == 1 and json.loads(again.stdout)[0]["counters"]["files_done"] == 2, again.stderr
    assert "bad\\xff\\xfe.tx (the name is not UTF-8" in again.stderr


def test_a_plan_naming_a_file_that_is_not_utf8_is_refused_in_one_line(tree: Hostile, tmp_path: Path) -> None:
    plan = tmp_path / "old.plan.json"  # what `prewarm plan -o` wrote before names were checked
    plan.write_text(json.dumps({"job": "j", "frames": [1], "ranges": [
        {"path": f"{STUDIO}/mixed/good.tx", "offset": 0, "length": 4096},
        {"path": f"{STUDIO}/mixed/bad\udcff\udcfe.tx", "offset": 0, "length": 4096}]}))
    done = subprocess.run(prewarm("--config", str(config(tmp_path, tree)), "warm", str(plan)), cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "old.plan.json" in done.stderr and "Traceback" not in done.stderr
    from prewarm.errors import PlanFileError
    from prewarm.plan.model import Plan

    with pytest.raises(PlanFileError, match=r"ranges\[1\]\.path: the name is not UTF-8: .*bad\\xff\\xfe\.tx"):
        Plan.from_json(json.loads(plan.read_text()), where="plan")  # as a plan held in Redis is loaded


def test_the_service_plans_a_folder_with_a_name_that_is_not_utf8(traced_service, tree: Hostile) -> None:
    url, _, _ = traced_service
    manifest = yaml.safe_dump({"job": "svcbytes", "frames": "1", "inputs": [mixed_folder(tree)]})
    r = post(url, {"manifest": manifest})
    assert r.status_code == 202, r.text
    assert f"{STUDIO}/mixed/bad\\xff\\xfe.tx" in {m["path"] for m in r.json()["missing"]}
    for route in ("", "/report", "/report.html"):
        got = requests.get(f"{url}/jobs/{r.json()['ids'][0]}{route}", timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert got.status_code == 200, (route, got.text[:300])


def test_every_studio_path_has_a_redis_key_and_no_two_share_one() -> None:
    from prewarm.state import keys

    bad, text = "/studio/proj/bad\udcff\udcfe.tx", "/studio/proj/bad\\xff\\xfe.tx"
    made = {keys.dedupe("gw", p) for p in (bad, text, "/studio/proj/é.tx")}
    assert len(made) == 3 and all(k.encode("utf-8") for k in made)
    assert keys.dedupe("gw", bad) == "prewarm:dd:gw:b64:L3N0dWRpby9wcm9qL2JhZP_-LnR4"


def test_a_scene_dependency_whose_name_is_not_utf8_is_a_finding() -> None:
    from prewarm.plan.manifest import parse_manifest
    from prewarm.plan.scenes import SceneDep, SceneDeps, expand_scenes

    manifest = parse_manifest("job: j\nframes: 1\ninputs: [/studio/proj/s.blend]\n", "m")
    found = SceneDeps(deps=(SceneDep("/studio/proj/tex/bad\udcff.png", "/studio/proj/s.blend"),
                            SceneDep("/studio/proj/tex/ok.png", "/studio/proj/s.blend")))
    expansion = expand_scenes(manifest, lambda request: found)
    assert [s.path for s in expansion.manifest.inputs] == ["/studio/proj/s.blend", "/studio/proj/tex/ok.png"]
    assert [(f.path, f.reason.startswith("the name is not UTF-8")) for f in expansion.findings] == [
        ("/studio/proj/tex/bad\\xff.png", True)]


# -- negative offsets (issue 20, item 5) ------------------------------------------------------------------------

NEGATIVE = """\
100 10:00:00.000001 openat(AT_FDCWD, "{root}/a.bin", O_RDONLY) = 3<{root}/a.bin>
100 10:00:00.000002 pread64(3<{root}/a.bin>, "..."..., 4096, -4096) = 4096
100 10:00:00.000003 preadv2(3<{root}/a.bin>, [{{iov_base="...", iov_len=4096}}], 1, -8192, 0) = 4096
100 10:00:00.000004 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3<{root}/a.bin>, -0x1000) = 0x7f0000000000
100 10:00:00.000005 pread64(3<{root}/a.bin>, "..."..., 4096, 8192) = 4096
"""


def test_a_negative_offset_in_a_trace_never_enters_a_plan(tree: Hostile, tmp_path: Path) -> None:
    (tree.root / "a.bin").write_bytes(b"a" * 65536)
    trace = tmp_path / "frame.1.strace"
    trace.write_text(NEGATIVE.format(root=tree.root))
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({"job": "neg", "frames": "1-2", "inputs": [f"{STUDIO}/a.bin"]}))
    cfg = config(tmp_path, tree)
    plan_file = tmp_path / "plan.json"
    planned = subprocess.run(prewarm("--config", str(cfg), "plan", str(manifest), "--traces", str(trace), "--alias",
                                     f"{tree.root}={STUDIO}", "-o", str(plan_file)), cwd=ROOT, env=clean_env(),
                             capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(plan_file.read_text())
    assert [(r["offset"], r["length"]) for r in plan["ranges"]] == [(8192, 4096)]
    assert plan["summary"]["trace_lines_skipped"] == 3
    warmed = subprocess.run(prewarm("--config", str(cfg), "warm", str(plan_file), "--json"), cwd=ROOT,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert warmed.returncode == 0, warmed.stderr  # the warm side takes the planner's own plan


def test_the_planner_and_a_loaded_plan_share_one_check() -> None:
    from prewarm.plan.model import Plan
    from prewarm.plan.records import FileInfo, PlannedRange

    def made(offset: int, path: str = f"{STUDIO}/a.bin") -> Plan:
        return Plan(job="j", frames=(1,), ranges=[PlannedRange(path, offset, 4096)],
                    files={path: FileInfo(path, 65536, 0.0)})

    assert made(8192).limit_problem() is None
    assert made(-4096).limit_problem() == ("ranges[0]", "offset -4096 and length 4096: not a range of a file")
    assert made(0, f"{STUDIO}/b\udcff").limit_problem() == (
        "ranges[0].path", f"the name is not UTF-8: {STUDIO}/b\\xff (rename it on the filer)")


# -- a scene swapped for a link after the guard's check (issue 20, item 2) -------------------------------------

SCENE_SWAP = """
import json, sys
from prewarm.formats.scenes import SceneReader, to_json
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.plan.scenes import SceneKind, SceneLimits, SceneRequest
from prewarm.site.guard import Guard

root, wrapper, path, kind = sys.argv[1:5]
guard = Guard(("/studio/proj",), PathMap((Prefix("/studio/proj", (), root),)))
found = SceneReader(guard, python=wrapper)(SceneRequest(path, SceneKind(kind), (1,), SceneLimits()))
print(json.dumps(to_json(found)))
"""

GOOD_STAGE = '#usda 1.0\n(\n    subLayers = [@./inside.usda@]\n)\n'
EVIL_STAGE = ('#usda 1.0\n(\n    subLayers = [@/studio/proj/only_evil.usda@]\n)\n'
              'def "X"\n{\n    asset a = @/studio/proj/only_evil.tx@\n}\n')


@pytest.mark.parametrize("kind", ["usd", "blend"])
def test_a_scene_swapped_for_a_link_after_the_guards_check_is_not_read_outside(
        tree: Hostile, tmp_path: Path, kind: str) -> None:
    from tests.fixtures.scenes import BLEND_DATA

    scene = tree.root / "scene"
    scene.mkdir()
    for rel in ("only_evil.usda", "only_evil.tx", "scene/inside.usda"):
        (tree.root / rel).write_text("#usda 1.0\n")
    if kind == "usd":
        name, evil = "t.usda", tree.outside / "evil.usda"
        (scene / name).write_text(GOOD_STAGE)
        evil.write_text(EVIL_STAGE)
    else:  # the shot links the library; the library alone, swapped in, names what the shot does not
        name, evil = "t.blend", tree.outside / "evil.blend"
        (scene / name).write_bytes((BLEND_DATA / "lib" / "cycle_a.blend").read_bytes())
        evil.write_bytes((BLEND_DATA / "shot" / "shot.blend").read_bytes())
    wrapper = tmp_path / "swap-then-read.sh"  # the parent has checked the scene; then it becomes a link out
    wrapper.write_text(f"#!/bin/sh\nmv '{scene / name}' '{scene / name}.old'\nln -s '{evil}' '{scene / name}'\n"
                       f"exec '{sys.executable}' \"$@\"\n")
    wrapper.chmod(0o755)
    script = tmp_path / "read.py"
    script.write_text(SCENE_SWAP)
    run = traced([sys.executable, str(script), str(tree.root), str(wrapper), f"{STUDIO}/scene/{name}", kind],
                 tmp_path / "scene.strace", cwd=ROOT, env=clean_env())
    assert run.proc.returncode == 0, run.proc.stderr[-2000:]
    found = json.loads(run.proc.stdout)
    assert not [d for d in found["deps"] if "only_evil" in d[0] or "lib/" in d[0]], found
    assert found["error"] and "outside the allowed roots" in found["error"], found
    no_leak(run.proc.stdout, tree)
    assert str(evil) not in run.opened(), "the swapped-in scene outside the roots was opened"


CONFINED = """
import os, sys
from prewarm.formats.confine import confine

inside, link = sys.argv[1], sys.argv[2]
confine([os.path.dirname(inside)], [])
print(open(inside).read().strip())
for path in (link, "/etc/passwd"):
    try:
        open(path).read()
        print("read", path)
    except PermissionError:
        print("refused")
"""


def test_a_confined_reader_cannot_open_a_link_out_of_the_roots_whatever_the_race(tree: Hostile,
                                                                                 tmp_path: Path) -> None:
    """The scene child's confinement (Landlock): a check made earlier cannot be raced."""
    inside = tree.root / "confined" / "layer.usda"
    inside.parent.mkdir()
    inside.write_text("inside\n")
    os.symlink(tree.outside / "secret.txt", inside.parent / "swapped.usda")  # as if swapped in after the check
    script = tmp_path / "confined.py"
    script.write_text(CONFINED)
    run = traced([sys.executable, str(script), str(inside), str(inside.parent / "swapped.usda")],
                 tmp_path / "confined.strace", cwd=ROOT, env=clean_env())
    assert run.proc.stdout.split() == ["inside", "refused", "refused"], run.proc.stderr
    assert str(tree.outside / "secret.txt") not in run.opened() and "/etc/passwd" not in run.opened()
    assert f'"{inside.parent / "swapped.usda"}", O_RDONLY|O_CLOEXEC) = -1 EACCES' in run.log


def test_usd_reader_errors_name_studio_paths_and_quote_nothing(tree: Hostile, tmp_path: Path) -> None:
    from prewarm.formats.scenes import SceneReader
    from prewarm.plan.pathmap import PathMap, Prefix
    from prewarm.plan.scenes import SceneKind, SceneLimits, SceneRequest
    from prewarm.site.guard import Guard

    (tree.root / "bad.usda").write_text('#usda 1.0\ndef "X" {\n  custom int root_secret_value = 1 2\n}\n')
    guard = Guard((STUDIO,), PathMap((Prefix(STUDIO, (), str(tree.root)),)))
    found = SceneReader(guard)(SceneRequest(f"{STUDIO}/bad.usda", SceneKind.USD, (1,), SceneLimits()))
    assert found.error is not None and found.error.startswith(f"{STUDIO}/bad.usda:"), found.error
    assert "root_secret_value" not in found.error and "X" not in found.error.replace("...", "")
    no_leak(found.error, tree)


# -- traces without bounds (issue 20, item 3) -------------------------------------------------------------------

def plan_with_trace(tmp_path: Path, tree: Hostile, trace: Path) -> subprocess.CompletedProcess[str]:
    (tree.root / "a.bin").write_bytes(b"a" * 65536)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({"job": "t", "frames": "1", "inputs": [f"{STUDIO}/a.bin"]}))
    return subprocess.run(prewarm("--config", str(config(tmp_path, tree)), "plan", str(manifest), "--traces",
                                  str(trace), "-o", str(tmp_path / "plan.json")), cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


RECORD = json.dumps({"path": f"{STUDIO}/a.bin", "offset": 0, "length": 4096, "frame": 1}).encode() + b"\n"


def test_a_gzip_of_blank_lines_is_refused_in_one_line(tree: Hostile, tmp_path: Path) -> None:
    import gzip

    from prewarm.plan.limits import MAX_TRACE_LINES

    trace = tmp_path / "frame.1.jsonl.gz"
    with gzip.open(trace, "wb", compresslevel=9) as fh:  # 21 MB of newlines in 20 KB
        for _ in range(MAX_TRACE_LINES // 1_000_000 + 1):
            fh.write(b"\n" * 1_000_000)
        fh.write(RECORD)
    done = plan_with_trace(tmp_path, tree, trace)
    assert done.returncode == 2 and not (tmp_path / "plan.json").exists()
    assert done.stderr == (f"prewarm plan: {trace}: more than {MAX_TRACE_LINES:,} lines (prewarm.plan.limits): "
                           "not one frame's trace\n")


def test_a_trace_of_too_many_distinct_paths_is_refused_in_one_line(tree: Hostile, tmp_path: Path) -> None:
    from prewarm.plan.limits import MAX_TRACE_PATHS

    trace = tmp_path / "frame.1.jsonl"
    with trace.open("wb") as fh:
        for i in range(MAX_TRACE_PATHS + 1):
            fh.write(b'{"path": "/studio/proj/p/%d", "offset": 0, "length": 1}\n' % i)
    done = plan_with_trace(tmp_path, tree, trace)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr == (f"prewarm plan: {trace}: the traces name more than {MAX_TRACE_PATHS:,} distinct paths "
                           "(prewarm.plan.limits): not a render's trace, or too many traces at once\n")


@pytest.mark.parametrize("kind", ["jsonl", "strace"])
def test_leading_blank_lines_are_counted_not_kept_and_lines_keep_their_numbers(tmp_path: Path, kind: str) -> None:
    from prewarm.traces.files import ImportStats, read_batches

    trace = tmp_path / f"frame.1.{kind}"
    good = (RECORD if kind == "jsonl" else
            b'1 10:00:00.000001 pread64(3</studio/proj/a.bin>, "...", 4096, 0) = 4096\n')
    trace.write_bytes(b"\n \n\t\n" + good + b"garbage\n" + good)
    stats = ImportStats()
    records = [r for batch in read_batches([str(trace)], stats=stats) for r in batch]
    assert len(records) == 2 and stats.skipped_lines == 1 and stats.lines == 6
    assert stats.first_skipped == f"{trace}:5"


def test_decompressed_bytes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from prewarm.errors import TraceError
    from prewarm.traces import files

    monkeypatch.setattr(files, "MAX_TRACE_BYTES", 1 << 20)  # the real 4 GiB takes a minute to inflate
    trace = tmp_path / "frame.1.jsonl.gz"
    with gzip.open(trace, "wb") as fh:
        fh.write(RECORD + b"\0" * (3 << 20))
    with pytest.raises(TraceError, match=r"frame\.1\.jsonl\.gz: more than 1,048,576 bytes decompressed"):
        list(files.read_batches([str(trace)]))


# -- sizes of work (issue 20, item 6) ---------------------------------------------------------------------------

def plan_manifest_file(tmp_path: Path, tree: Hostile, text: str, **settings: object) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(text)
    return subprocess.run(prewarm("--config", str(config(tmp_path, tree, **settings)), "plan", str(manifest), "-o",
                                  str(tmp_path / "plan.json")), cwd=ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=300)


def test_missing_inputs_count_against_the_file_limit(tree: Hostile, tmp_path: Path) -> None:
    from prewarm.plan.limits import MAX_FILES

    inputs = [f"{STUDIO}/gone/{name}.####.exr" for name in "abc"]  # 300,000 frames of files that are not there
    done = plan_manifest_file(tmp_path, tree, yaml.safe_dump({"job": "j", "frames": "1-100000", "inputs": inputs}))
    assert done.returncode == 2 and not (tmp_path / "plan.json").exists()
    assert done.stderr.startswith(f"prewarm plan: {tmp_path / 'job.yaml'}:")
    assert f"the inputs resolve to more than {MAX_FILES:,} files, missing ones included" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_manifest_file_is_read_no_larger_than_the_services_body_limit(tree: Hostile, tmp_path: Path) -> None:
    text = "job: j\nframes: 1\ninputs: [/studio/proj/a]\n" + "# padding\n" * 2000
    done = plan_manifest_file(tmp_path, tree, text, max_request_bytes=16384)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"prewarm plan: {tmp_path / 'job.yaml'}: larger than 16,384 bytes (the site's "
                           "max_request_bytes): a job description is kilobytes; list folders or patterns\n")


def test_a_manifest_of_too_many_values_stops_being_read_there(tree: Hostile, tmp_path: Path) -> None:
    from prewarm.plan.limits import MAX_YAML_NODES

    text = "job: j\nframes: 1\ninputs:\n" + "".join(f"  - /studio/proj/m/{i}\n" for i in range(MAX_YAML_NODES))
    done = plan_manifest_file(tmp_path, tree, text)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"not valid YAML: more than {MAX_YAML_NODES:,} values (prewarm.plan.limits)" in done.stderr


def test_the_service_refuses_a_manifest_of_too_many_inputs_with_a_4xx(traced_service) -> None:
    """6 MB of missing inputs, under the 8 MiB body limit: refused while being read, not stat-ed."""
    url, _, _ = traced_service
    manifest = "job: j\nframes: 1\ninputs:\n" + "".join(f"  - /studio/proj/missing/f{i:07d}.tx\n"
                                                         for i in range(150_000))
    r = post(url, {"manifest": manifest})
    assert r.status_code == 422, r.text[:500]
    assert "more than 100,000 values" in r.json()["error"]


# -- smaller ones (issue 20, item 7) ----------------------------------------------------------------------------

def test_a_client_that_trickles_its_headers_is_disconnected(traced_service) -> None:
    import socket
    from urllib.parse import urlparse

    url, _, _ = traced_service
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=60) as slow:
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert slow.recv(1024) == b"", "the server closed the connection"
    with socket.create_connection((where.hostname, where.port), timeout=60) as idle:
        assert idle.recv(1024) == b"", "a connection that sends nothing is closed too"
    assert requests.get(f"{url}/health", timeout=10).status_code == 200, "prompt clients are served as before"


@pytest.mark.parametrize("job_id", ["abc%0a", "abc%0A", "0%0a", "ABC", "abc%00"])
def test_job_ids_are_checked_in_full_before_redis_is_asked(traced_service, job_id: str) -> None:
    url, _, _ = traced_service
    for route in ("", "/report", "/report.html"):
        r = requests.get(f"{url}/jobs/{job_id}{route}", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404 and "ids are hexadecimal" in r.json()["error"], (route, r.text)
    r = requests.post(f"{url}/jobs/{job_id}/cancel", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404 and "ids are hexadecimal" in r.json()["error"], r.text


def test_a_newline_in_a_job_name_cannot_forge_status_lines(tmp_path: Path, redis_url: str) -> None:
    from prewarm.plan.model import Plan
    from prewarm.state.client import connect
    from prewarm.state.jobs import WarmJob

    forged = "shot\nprewarm ffffffffffff forged state=done 100.0% \x1b[2J"
    job = WarmJob.create(connect(redis_url), Plan(job=forged, frames=(1,), ranges=[]), [], "gw", 4096)
    outputs = [subprocess.run(prewarm("status", *extra, "--redis", redis_url), cwd=ROOT, env=clean_env(),
                              capture_output=True, text=True, timeout=60).stdout
               for extra in ((), ("--oneline",), (job.id,), (job.id, "--oneline"))]
    for out in outputs:
        assert "\nprewarm ffffffffffff" not in out and "\x1b" not in out, out
        assert "shot\\nprewarm ffffffffffff forged state=done 100.0% \\x1b[2J" in out, out
    assert len(outputs[1].strip().splitlines()) == 1 and len(outputs[0].strip().splitlines()) == 1


def test_a_full_disk_under_the_trace_store_says_so(tmp_path: Path) -> None:
    from prewarm.errors import ConfigError
    from prewarm.site.settings import Settings
    from prewarm.traces.store import import_traces

    store = tmp_path / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(store)], check=True)  # CI runs as root
    try:
        trace = tmp_path / "frame.0001.jsonl"
        with trace.open("w") as fh:  # 4 MB of distinct reads: more than 256 KiB however well it compresses
            for i in range(40_000):
                fh.write(json.dumps({"path": f"{STUDIO}/f{os.urandom(8).hex()}.tx", "offset": i * 4096,
                                     "length": 4096}) + "\n")
        with pytest.raises(ConfigError) as caught:
            import_traces(Settings(trace_store=str(store), roots=(STUDIO,)), [str(trace)], "proj", "sh", "job_v001")
        assert "No space left on device (the disk is full: free space, or `prewarm traces prune`" in str(caught.value)
        assert "where a folder should be" not in str(caught.value)
    finally:
        subprocess.run(["umount", str(store)], check=True)


def test_a_scene_renamed_over_while_it_is_read_is_not_believed(tree: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the roots Landlock allows the swap; the child checks the scene's identity after the read."""
    from prewarm.formats import child

    scene, other = tree.root / "t.usda", tree.root / "other.usda"
    scene.write_text(GOOD_STAGE)
    other.write_text(EVIL_STAGE)

    def swapped_while_reading(request: object, local: str, guard: object, deadline: float) -> dict[str, object]:
        os.replace(other, scene)  # what the reader then read is another file
        return {"deps": [[f"{STUDIO}/only_evil.tx", f"{STUDIO}/t.usda", None, False]]}

    monkeypatch.setattr(child, "_read", swapped_while_reading)
    answer = child.read({"path": f"{STUDIO}/t.usda", "kind": "usd", "frames": [1], "seconds": 10,
                         "limits": {"max_deps": 100, "blur": 1.0}, "roots": [STUDIO],
                         "path_map": [{"studio": STUDIO, "local": str(tree.root)}]})
    assert answer["error"] == "not read: changed while being read (a symlink swapped in?)" and not answer["deps"]


def test_a_worker_warms_a_batch_holding_a_name_that_is_not_utf8(tree: Hostile, tmp_path: Path, redis_url: str,
                                                                  celery_worker) -> None:
    """A batch stored before names were checked (or by another writer): the piece is keyed, the batch is
    warmed, the job ends; never a batch redelivered for ever."""
    from prewarm.plan.model import Plan
    from prewarm.plan.records import FileInfo, PlannedRange
    from prewarm.site.settings import Settings
    from prewarm.state import runner
    from prewarm.state.celery_app import CelerySender
    from prewarm.state.client import connect
    from prewarm.state.jobs import WarmJob

    mixed_folder(tree)
    cfg = config(tmp_path, tree, redis_url=redis_url, queue="gwb", visibility_timeout_s=10)
    celery_worker(cfg, "prewarm.gwb", concurrency=2)
    settings = Settings.load(env={}, path=str(cfg))
    sizes = {"good.tx": 8192, "also.tx": 4096, os.fsdecode(BAD): 12288}
    paths = {f"{STUDIO}/mixed/{name}": size for name, size in sizes.items()}
    folder = os.fsencode(tree.root / "mixed") + b"/"
    plan = Plan(job="bytes", frames=(1,), ranges=[PlannedRange(p, 0, n) for p, n in paths.items()],
                files={p: FileInfo(p, n, os.stat(folder + os.fsencode(p.rpartition("/")[2])).st_mtime)
                       for p, n in paths.items()})
    r = connect(redis_url)
    job = runner.submit(r, plan, settings, CelerySender(settings).send, "gwb")
    deadline = time.monotonic() + 90
    while not (info := WarmJob(r, job.id).info()) or not info.state.final:
        assert time.monotonic() < deadline, "the job never ended (a poisoned batch redelivered?)"
        time.sleep(0.2)
    assert info.counters["files_done"] == 3 and info.counters["bytes_done"] == 8192 + 4096 + 12288, info


def test_the_confined_reader_is_never_given_its_working_folder_or_the_root_of_all(tree: Hostile,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from prewarm.formats.confine import program_folders

    for cwd in ("/", str(tree.outside)):
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "path", [cwd, *sys.path])  # as `python -m` started there puts it
        folders = program_folders()
        assert "/" not in folders and str(tree.outside) not in folders, folders
        assert os.path.realpath(Path(__file__).parents[1] / "prewarm") in folders


KEPT = """
import os, shutil, sys
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.guard import Guard
from prewarm.warm.reader import MountReader

root, outside, case = sys.argv[1], sys.argv[2], sys.argv[3]
guard = Guard(("/studio/proj",), PathMap((Prefix("/studio/proj", (), root),)))
reader = MountReader(guard)
reader.open("/studio/proj/kept/a.tx").close()  # the folder's descriptor is now kept by the guard
if case == "moved-out":
    os.rename(root + "/kept", outside + "/kept")
elif case == "moved-out-racing":  # moved right after the kept folder's name was checked, before the lookup
    name_of = os.readlink
    def racing(path):
        name = name_of(path)
        if name == root + "/kept" and not os.path.islink(name):
            os.rename(name, outside + "/kept")
            os.symlink(outside + "/kept", name)
        return name
    os.readlink = racing
elif case == "recreated":
    shutil.rmtree(root + "/kept")
    os.mkdir(root + "/kept")
    with open(root + "/kept/b.tx", "wb") as f:
        f.write(b"new" * 7)
elif case == "file-to-link":
    os.remove(root + "/kept/b.tx")
    os.symlink(outside + "/secret.txt", root + "/kept/b.tx")
try:
    f = reader.open("/studio/proj/kept/b.tx")
except OSError as exc:
    print(type(exc).__name__, exc)
else:
    print("opened", f.size, os.fstat(f.fd).st_ino == os.stat(root + "/kept/b.tx").st_ino)
"""


@pytest.mark.parametrize("case, said", [
    ("moved-out", "FileNotFoundError"),
    ("moved-out-racing", "Refused /studio/proj/kept/b.tx: a symlink leads outside the allowed roots"),
    ("file-to-link", "Refused /studio/proj/kept/b.tx: a symlink leads outside the allowed roots"),
    ("recreated", "opened 21 True"),
])
def test_a_kept_folder_descriptor_never_leads_a_read_outside_the_roots(
        tree: Hostile, tmp_path: Path, case: str, said: str) -> None:
    """The guard keeps a descriptor per folder (`Guard.open_file`): a folder moved out of the roots (before
    the lookup, or racing it and swapped for a link out), a file swapped for a link out, or a folder removed
    and made again must be refused or read from what the path names now, never from outside."""
    kept = tree.root / "kept"
    kept.mkdir()
    (kept / "a.tx").write_bytes(b"a" * 10)
    (kept / "b.tx").write_bytes(SECRET)
    script = tmp_path / "kept.py"
    script.write_text(KEPT)
    run = traced([sys.executable, str(script), str(tree.root), str(tree.outside), case],
                 tmp_path / "kept.strace", cwd=ROOT, env=clean_env())
    assert run.proc.stdout.strip().startswith(said), run.proc.stderr[-2000:]
    assert f"{tree.root}/kept/a.tx" in run.opened()
    assert not any(p.startswith(str(tree.outside)) for p in run.opened()), "a file outside the roots was opened"
    if case == "moved-out-racing":
        # the only thing done outside: the name looked up (O_PATH, nothing opened) in the moved folder
        assert {p for p in run.touched() if p.startswith(str(tree.outside))} <= \
            {f"{tree.outside}/kept", f"{tree.outside}/kept/b.tx"}
    else:
        assert_nothing_outside(run, tree)
