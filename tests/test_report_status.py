"""`prewarm status`: live bars on a terminal (a real pty), one plain line per job in logs."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
import time

import redis

from prewarm.state import runner
from tests.fixtures.services import ROOT
from tests.fixtures.studio import Studio

MiB = 1 << 20


class Sent(list[tuple[str, str, int]]):
    def __call__(self, gateway: str, job_id: str, index: int) -> None:
        self.append((gateway, job_id, index))


def status(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    return subprocess.Popen([sys.executable, "-m", "prewarm", "status", *args], cwd=ROOT, env=env, text=True,
                            **kw)  # type: ignore[call-overload]


def slow_job(r: redis.Redis, studio: Studio) -> tuple[str, threading.Thread]:
    """A job of 4 files warmed at 4 MiB/s by a worker thread in this process: about two seconds."""
    paths = [studio.file(f"t{i}.tx", 2 * MiB) for i in range(4)]
    settings = studio.settings(throttle_bps=4 * MiB)
    sent = Sent()
    job = runner.submit(r, studio.whole(paths), settings, sent, "gw1")

    def work() -> None:
        while sent:
            _, job_id, index = sent.pop(0)
            runner.run_batch(r, settings, job_id, index, sent)

    return job.id, threading.Thread(target=work)


def test_follow_in_logs_prints_a_line_per_job_until_it_ends(r: redis.Redis, redis_url: str, studio: Studio) -> None:
    job_id, worker = slow_job(r, studio)
    proc = status(job_id, "--follow", "--every", "0.3", "--redis", redis_url, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    worker.start()
    out, err = proc.communicate(timeout=60)
    worker.join()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) >= 3 and all(line.startswith(f"prewarm {job_id} test state=") for line in lines)
    assert "state=running" in out
    assert lines[-1].startswith(f"prewarm {job_id} test state=done 100.0% bytes={8 * MiB}/{8 * MiB} files=4/4")
    assert any("rate=" in line and "rate=0.0MB/s" not in line for line in lines[1:-1])


def test_follow_on_a_terminal_draws_a_bar_per_job(r: redis.Redis, redis_url: str, studio: Studio) -> None:
    job_id, worker = slow_job(r, studio)
    leader, follower = pty.openpty()
    proc = status("--follow", "--redis", redis_url, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    worker.start()
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the pty
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    worker.join()
    assert proc.wait(timeout=10) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert job_id in screen and "files 4/4" in screen and "done" in screen
    assert "\u2501" in screen  # rich's bar
    assert "8.4/8.4 MB" in screen


def test_oneline_once_for_a_finished_job(r: redis.Redis, redis_url: str, studio: Studio) -> None:
    job_id, worker = slow_job(r, studio)
    worker.start()
    worker.join()
    proc = status(job_id, "--oneline", "--redis", redis_url, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == (f"prewarm {job_id} test state=done 100.0% bytes={8 * MiB}/{8 * MiB} files=4/4 "
                   f"rate=0.0MB/s in_flight=0 eta=- failed_files=0 overdue=0\n")
