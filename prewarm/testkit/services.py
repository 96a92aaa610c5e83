"""A redis-server and Celery workers of our own, started and stopped by PID.

For tests, benchmarks and the demo, which must start what they need on a bare
machine and leave nothing behind. Production runs its own Redis and workers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from prewarm.errors import ServiceError

CELERY = Path(sys.executable).with_name("celery")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Running, and not a zombie (PID 1 in a container may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; returns once the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.02)


@dataclass
class RedisServer:
    """A redis-server on a free loopback port; `persist` turns the append-only file on."""

    dir: Path
    persist: bool = False
    port: int = field(default_factory=free_port)
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServiceError("redis-server not found: apt-get install -y redis-server (or ./scripts/system-deps.sh)")
        pidfile = self.dir / "redis.pid"
        pidfile.unlink(missing_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        subprocess.run([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
                        "--save", "", *persistence, "--dir", str(self.dir), "--pidfile", str(pidfile),
                        "--logfile", str(self.dir / "redis.log")], check=True)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise ServiceError(f"redis-server did not start: see {self.dir / 'redis.log'}") from None
                    time.sleep(0.02)
        finally:
            client.close()
        self.pid = int(pidfile.read_text())

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            self.pid = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def project_root() -> Path:
    """Where the `workers` package lives: Celery's `-A workers` is resolved from there."""
    spec = importlib.util.find_spec("workers")
    if spec is None or spec.origin is None:
        raise ServiceError("the 'workers' package is not importable: pip install -e . in the project")
    return Path(spec.origin).resolve().parents[1]


@dataclass
class Worker:
    """A `celery -A workers worker` subprocess with a threads pool."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"celery worker exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.05)
        raise ServiceError(f"celery worker not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=15)
            self.proc.wait(timeout=10)


def start_prewarm_worker(config: Path, log: Path, gateways: tuple[str, ...] = (), redis_url: str | None = None,
                         concurrency: int = 2) -> Worker:
    """A worker started the way the README says: `prewarm --config FILE worker [--gateway NAME]...`."""
    argv = [sys.executable, "-m", "prewarm", "--config", str(config), "worker", "-c", str(concurrency)]
    argv += [a for g in gateways for a in ("--gateway", g)]
    if redis_url:
        argv += ["--redis", redis_url]
    env = {k: v for k, v in os.environ.items() if k not in ("PREWARM_REDIS_URL", "PREWARM_CONFIG")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT)
    return Worker(proc, log)


def start_worker(config: Path, queue: str, log: Path, name: str, concurrency: int = 4,
                 redis_url: str | None = None, loglevel: str = "info") -> Worker:
    """Start a worker (not waiting for it: see `Worker.wait_ready`); its log goes to `log`.

    `-l info` or lower is needed for `wait_ready`, which looks for Celery's " ready." line.
    """
    env = {**os.environ, "PREWARM_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    if redis_url:
        env["PREWARM_REDIS_URL"] = redis_url
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(CELERY), "-A", "workers", "worker", "-Q", queue, "-P", "threads", "-c", str(concurrency),
             "--without-mingle", "--without-gossip", "-l", loglevel, "-n", f"{name}@%h"],
            cwd=project_root(), env=env, stdout=out, stderr=subprocess.STDOUT)
    return Worker(proc, log)
