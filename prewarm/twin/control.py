"""Start and stop gateway twin processes; clean mounts left behind by a killed twin.

Used by `prewarm twin` and by the `gateway_twin` pytest fixture. The twin always runs
as a separate process (`python -m prewarm.twin`): a process reading a FUSE mount it
serves itself can deadlock. Each twin is known by its mountpoint; its state lives in
`state_dir` as `<key>.json` (pid, stats URL, written by the twin once its HTTP port
is bound), `<key>.pid` (written once the mount is live) and `<key>.log` (its stderr).

A SIGKILLed twin leaves its mount behind: every access then fails with ENOTCONN
until `fusermount3 -u`. `start_twin` does that cleanup before mounting again.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import prewarm
from prewarm.errors import ConfigError, ServiceError
from prewarm.twin.gateway import TwinConfig


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$PREWARM_TWIN_STATE_DIR`, else `$XDG_RUNTIME_DIR/prewarm-twin`, else `/tmp/prewarm-twin`."""
    env = os.environ if env is None else env
    if env.get("PREWARM_TWIN_STATE_DIR"):
        return Path(env["PREWARM_TWIN_STATE_DIR"])
    return Path(env.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "prewarm-twin"


def fuse_missing() -> str | None:
    """What must be installed before a twin can mount, or None when FUSE is usable."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: load the fuse module (modprobe fuse) or run the container with --device /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not found: apt-get install -y fuse3"
    if importlib.util.find_spec("mfusepy") is None:
        return "mfusepy is not installed: pip install -e '.[twin]'"
    return None


@dataclass(frozen=True, slots=True)
class TwinInfo:
    """What a running twin wrote about itself."""

    pid: int
    url: str
    mountpoint: str
    origin: str
    cache_dir: str


class TwinHandle:
    """A running twin: where it is mounted and how to read and reset its counters."""

    def __init__(self, info: TwinInfo, state_dir: Path, process: subprocess.Popen[bytes] | None = None) -> None:
        self.info = info
        self.mount = Path(info.mountpoint)
        self.url = info.url
        self.pid = info.pid
        self.state_dir = state_dir
        self._process = process

    def stats(self) -> dict[str, Any]:
        """The twin's own counters (`GET /stats`)."""
        stats: dict[str, Any] = http_json(self.url + "/stats")
        return stats

    def mount_stats(self) -> dict[str, Any]:
        """The knfsd agent's view (`GET /api/v1/mountStats`)."""
        stats: dict[str, Any] = http_json(self.url + "/api/v1/mountStats")
        return stats

    def reads(self) -> list[tuple[str, int, int]]:
        """Client reads (path inside the mount, offset, length) since the last reset; needs `log_reads`."""
        return [(p, o, n) for p, o, n in http_json(self.url + "/reads")["reads"]]

    def reset(self) -> None:
        http_json(self.url + "/reset", method="POST")

    def drop_cache(self) -> None:
        http_json(self.url + "/drop", method="POST")

    def restart(self) -> None:
        """A gateway restart keeping its cache disk: attributes and dentries cold, data warm, `age` from 0."""
        http_json(self.url + "/restart", method="POST")

    def node_info(self) -> dict[str, Any]:
        """The knfsd agent's view of which proxy this is (`GET /api/v1/nodeInfo`)."""
        info: dict[str, Any] = http_json(self.url + "/api/v1/nodeInfo")
        return info

    def inject(self, prefix: str, errno: str, count: int = 1, delay_s: float = 0.0) -> None:
        """The next `count` reads under `prefix` (a path inside the mount) fail with `errno` (a name)."""
        body = {"prefix": prefix, "errno": errno, "count": count, "delay_s": delay_s}
        http_json(self.url + "/faults", method="POST", body=body)

    def faults(self) -> list[dict[str, Any]]:
        return list(http_json(self.url + "/faults")["faults"])

    def clear_faults(self) -> list[dict[str, Any]]:
        return list(http_json(self.url + "/faults", method="DELETE")["cleared"])

    def stop(self) -> None:
        stop_twin(self.mount, state_dir=self.state_dir)
        if self._process is not None:
            self._process.wait(timeout=10)


def http_json(url: str, method: str = "GET", timeout: float = 10.0,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object from the twin's counter server (every route answers one)."""
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            # the agent's endpoints are always gzip-encoded, as the real agent's are
            answer = json.loads(gzip.decompress(raw) if resp.headers.get("Content-Encoding") == "gzip" else raw)
    except OSError as exc:
        raise ServiceError(f"gateway twin at {url}: {exc}") from exc
    if not isinstance(answer, dict):
        raise ServiceError(f"gateway twin at {url}: answered something other than a JSON object")
    return answer


def _key(mountpoint: Path) -> str:
    return hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]


def _state_paths(mountpoint: Path, state_dir: Path) -> tuple[Path, Path, Path]:
    base = state_dir / _key(mountpoint)
    return base.with_suffix(".json"), base.with_suffix(".pid"), base.with_suffix(".log")


def read_info(mountpoint: Path, state_dir: Path | None = None) -> TwinInfo | None:
    """The state a twin wrote for `mountpoint`, or None if there is none."""
    info_file = _state_paths(Path(mountpoint), state_dir or default_state_dir())[0]
    try:
        return TwinInfo(**json.loads(info_file.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"{info_file}: corrupt twin state ({exc}); remove it") from exc


def _unescape_mount(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_mounted(mountpoint: Path) -> bool:
    """Whether anything is mounted there, a dead FUSE mount included (os.path.ismount says no to those)."""
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mounts") as fh:
        return any(_unescape_mount(line.split()[1]) == target for line in fh if line.strip())


def is_stale(mountpoint: Path) -> bool:
    """A FUSE mount whose server is gone: stat fails with ENOTCONN."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def unmount(mountpoint: Path, attempts: int = 5) -> None:
    """`fusermount3 -u`, retried while busy, then lazily (`-z`) as a last resort."""
    for _ in range(attempts):
        if not is_mounted(mountpoint):
            return
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        if not is_mounted(mountpoint):
            return
        time.sleep(0.2)
    res = subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, text=True)
    if is_mounted(mountpoint):
        raise ServiceError(f"{mountpoint}: cannot unmount: {res.stderr.strip()}")


def process_alive(pid: int) -> bool:
    """Any of its threads still running: a zombie leader whose threads are still exiting
    keeps the FUSE connection open, so the state of the leader alone is not enough."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
    return False


def _is_twin(pid: int) -> bool:
    """Guards against killing an unrelated process that reused a stale PID."""
    try:
        return b"prewarm.twin" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return not process_alive(pid)


def cleanup_stale_mount(mountpoint: Path, state_dir: Path | None = None) -> bool:
    """Unmount what a dead twin left at `mountpoint`; True if there was something to clean.

    Refuses (ServiceError) when a live twin serves it, or when the mount is alive and not ours.
    """
    state_dir = state_dir or default_state_dir()
    info = read_info(mountpoint, state_dir)
    if info is not None and process_alive(info.pid) and _is_twin(info.pid):
        raise ServiceError(f"{mountpoint}: a gateway twin already serves it (pid {info.pid}); "
                           f"run: prewarm twin stop {mountpoint}")
    cleaned = False
    if is_mounted(mountpoint):
        if not is_stale(mountpoint):
            raise ServiceError(f"{mountpoint}: something else is mounted there")
        unmount(mountpoint)
        cleaned = True
    for path in _state_paths(mountpoint, state_dir):
        path.unlink(missing_ok=True)
    return cleaned


@contextmanager
def running_twin(origin: Path, work: Path, config: TwinConfig) -> Iterator[TwinHandle]:
    """A twin of `origin` mounted at `work/mnt` (cache and state in `work`) for a `with` block: the demo
    and the end-to-end bench run one per cache model."""
    missing = fuse_missing()
    if missing:
        raise ServiceError(f"the gateway twin needs FUSE: {missing} (./scripts/system-deps.sh installs it)")
    twin = start_twin(origin, work / "mnt", config, cache_dir=work / "cache", state_dir=work / "state")
    try:
        yield twin
    finally:
        twin.stop()


def start_twin(origin: Path, mountpoint: Path, config: TwinConfig | None = None, *,
               cache_dir: Path | None = None, http_port: int = 0, state_dir: Path | None = None,
               detach: bool = False, timeout_s: float = 20.0) -> TwinHandle:
    """Mount a twin of `origin` at `mountpoint` and return once the mount is live.

    `detach=True` starts it in its own session, to outlive the caller (the CLI);
    otherwise it stays the caller's child, reaped by `TwinHandle.stop()`.
    """
    missing = fuse_missing()
    if missing:
        raise ServiceError(missing)
    config = config or TwinConfig()
    origin, mountpoint = Path(origin).resolve(), Path(os.path.abspath(mountpoint))
    if not origin.is_dir():
        raise ConfigError(str(origin), "origin must be a directory")
    state_dir = state_dir or default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    cleanup_stale_mount(mountpoint, state_dir)
    mountpoint.mkdir(parents=True, exist_ok=True)
    info_file, pid_file, log_file = _state_paths(mountpoint, state_dir)
    cache_dir = Path(cache_dir) if cache_dir else info_file.with_suffix(".cache")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prewarm.twin", str(origin), str(mountpoint), "--config", json.dumps(asdict(config)),
           "--cache-dir", str(cache_dir), "--http-port", str(http_port), "--state-file", str(info_file)]
    env = dict(os.environ)
    root = str(Path(prewarm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=detach, cwd="/")
    info = _wait_live(proc, mountpoint, state_dir, log_file, timeout_s)
    pid_file.write_text(f"{proc.pid}\n")
    return TwinHandle(info, state_dir, None if detach else proc)


def _wait_live(proc: subprocess.Popen[bytes], mountpoint: Path, state_dir: Path, log_file: Path,
               timeout_s: float) -> TwinInfo:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"gateway twin exited with status {proc.returncode} before mounting "
                               f"{mountpoint}: {_tail(log_file)}")
        if os.path.ismount(mountpoint):
            info = read_info(mountpoint, state_dir)
            if info is not None and info.pid == proc.pid:
                return info
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    if is_mounted(mountpoint):
        unmount(mountpoint)
    raise ServiceError(f"gateway twin did not mount {mountpoint} within {timeout_s:.0f} s: {_tail(log_file)}")


def _tail(log_file: Path, limit: int = 2000) -> str:
    try:
        text = log_file.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


def stop_twin(mountpoint: Path, *, state_dir: Path | None = None, timeout_s: float = 10.0) -> bool:
    """Unmount and end the twin serving `mountpoint`; True if there was one.

    Unmounting first lets the twin exit by itself; SIGTERM and then SIGKILL, by PID,
    only if it does not.
    """
    mountpoint = Path(os.path.abspath(mountpoint))
    state_dir = state_dir or default_state_dir()
    info_file, pid_file, _ = _state_paths(mountpoint, state_dir)
    info = read_info(mountpoint, state_dir)
    pid = info.pid if info else None
    if pid is None and pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0) or None
    found = pid is not None or is_mounted(mountpoint)
    unmount(mountpoint)
    if pid is not None and _is_twin(pid) and not _wait_gone(pid, timeout_s / 2):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s / 2):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout_s)
    for path in (info_file, pid_file):
        path.unlink(missing_ok=True)
    return found
