"""`prewarm record`: run a render command under strace and file its reads in the trace store.

What a farm wrapper puts in front of the render command. The render must never suffer
for it: the command's exit status is returned as is, and a trace that cannot be filed
is reported on stderr, not turned into a failed task.

strace flags: `-f` (renderers are multi-threaded and fork helpers), `-tt` time stamps,
`-T` call durations, `-y` descriptor paths (so `read(3</p/tex.tx>, ...)` names its
file), and only the calls that read data or metadata. Reads through `mmap` are
invisible to strace; renderers read textures and caches with read/pread.

A pyenv shim (a shell script that picks an interpreter at run time) would be traced
with bash and `pyenv` itself; the shim is resolved to the real interpreter first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prewarm.errors import ConfigError, InputError, ServiceError
from prewarm.site.settings import Settings
from prewarm.traces.store import ImportResult, import_traces, store_root

__all__ = ["STRACE_CALLS", "RecordResult", "record", "resolve_command", "strace_argv"]

STRACE_CALLS = "openat,read,pread64,preadv,preadv2,lseek,newfstatat,statx,getdents64"
"""Opens (set a descriptor's position to 0), reads, seeks (move it), stats and listings."""

EXIT_NOT_FOUND = 127
"""What a shell returns for a command it cannot find: farms already read it that way."""


@dataclass
class RecordResult:
    returncode: int
    stored: ImportResult | None
    error: str | None = None
    """Why the trace was not filed (the render itself may still have succeeded)."""


def resolve_command(argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
    """`argv` with its program made a real executable path: PATH looked up, a pyenv shim
    replaced by the interpreter it would run. ConfigError when there is no such program."""
    env = dict(os.environ if env is None else env)
    prog = shutil.which(argv[0], path=env.get("PATH"))
    if prog is None:
        raise ConfigError(argv[0], "command not found")
    real = _pyenv_target(prog, env)
    return [real or prog, *argv[1:]]


def _pyenv_target(prog: str, env: dict[str, str]) -> str | None:
    try:
        with open(prog, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if not head.startswith(b"#!") or b"pyenv" not in head + prog.encode():
        return None
    pyenv = shutil.which("pyenv", path=env.get("PATH")) or str(Path(prog).parent.parent / "bin" / "pyenv")
    try:
        out = subprocess.run([pyenv, "which", Path(prog).name], capture_output=True, text=True, env=env,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    target = out.stdout.strip()
    return target if target and os.access(target, os.X_OK) else None


def strace_argv(trace_file: str, argv: Sequence[str]) -> list[str]:
    strace = shutil.which("strace")
    if strace is None:
        raise ServiceError("strace is not installed (apt-get install strace): cannot record")
    return [strace, "-f", "-tt", "-T", "-y", "-qq", "-e", f"trace={STRACE_CALLS}", "-o", trace_file, "--", *argv]


def record(settings: Settings, argv: Sequence[str], job: str, show: str | None = None, shot: str | None = None,
           frame: int | None = None, keep_raw: str | None = None) -> RecordResult:
    """Run `argv` under strace, then import its trace (reads under the roots only) into the store.

    The raw log is written next to the store (same file system, no copy of a big log
    through /tmp) and removed after the import unless `keep_raw` names where to keep it.
    """
    root = store_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    try:
        command = resolve_command(argv)
    except ConfigError as exc:
        print(f"prewarm record: {exc}", file=sys.stderr)
        return RecordResult(EXIT_NOT_FOUND, None, str(exc))
    fd, raw = tempfile.mkstemp(prefix=".record-", suffix=".strace", dir=root)
    os.close(fd)
    try:
        returncode = _run(strace_argv(raw, command))
        try:
            stored = import_traces(settings, [raw], show, shot, job, frame)
        except InputError as exc:  # the render's status matters more than its trace
            return RecordResult(returncode, None, f"trace not filed: {exc}")
        except OSError as exc:
            return RecordResult(returncode, None, f"trace not filed: {exc.strerror or type(exc).__name__}")
        return RecordResult(returncode, stored)
    finally:
        if keep_raw:
            shutil.move(raw, keep_raw)
        else:
            Path(raw).unlink(missing_ok=True)


def _run(argv: list[str]) -> int:
    """Run strace and the command; SIGINT/SIGTERM sent to this wrapper go to strace, which
    passes them on, so a farm cancelling the task stops the render, not only the wrapper."""
    proc = subprocess.Popen(argv)
    forwarded = {s: signal.signal(s, lambda signum, _f: proc.send_signal(signum))
                 for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = proc.wait()
    finally:
        for s, old in forwarded.items():
            signal.signal(s, old)
    # strace returns the traced command's status; a command killed by a signal is -N here.
    return returncode if returncode >= 0 else 128 - returncode
