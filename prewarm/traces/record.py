"""`prewarm record`: run a render command under eBPF or strace and file its reads in the trace store.

Two recorders, one record: the eBPF recorder (`prewarm.traces.ebpf`, a program on the raw
`sys_enter` tracepoint loaded by libbpf, reads counted in kernel maps) costs a render little,
and is used where the machine allows it (root or CAP_BPF and CAP_PERFMON, BTF, tracefs, clang
and libbpf);
strace works anywhere but stops the render twice per call it follows. Either way the
record is filed through the store's `import_traces`, so what the store holds does not
depend on which one ran. A recorder that cannot load its program says why in one line
and the render runs under strace instead.

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
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prewarm.errors import ConfigError, InputError, ServiceError
from prewarm.plan.pathmap import PathMap
from prewarm.site.settings import Settings
from prewarm.traces.catalogue import store_root
from prewarm.traces.ebpf import RECORDERS, EbpfRecorder, EbpfUnavailable
from prewarm.traces.store import ImportResult, StructureOf, import_traces, under_roots

__all__ = ["RECORDERS", "STRACE_CALLS", "Progress", "RecordResult", "choose", "record", "resolve_command",
           "strace_argv"]

STRACE_CALLS = "openat,openat2,read,readv,pread64,preadv,preadv2,lseek,newfstatat,statx,getdents64,mmap"
"""Opens (set a descriptor's position to 0), reads, seeks (move it), stats, listings and
mappings: the same calls the eBPF recorder counts, so both records hold the same blocks."""

EXIT_NOT_FOUND = 127
"""What a shell returns for a command it cannot find: farms already read it that way."""


@dataclass
class RecordResult:
    returncode: int
    stored: ImportResult | None
    error: str | None = None
    """Why the trace was not filed (the render itself may still have succeeded)."""
    recorder: str = "strace"
    """Which recorder ran the render."""
    notes: list[str] = field(default_factory=list)
    """One line each: which recorder and why, a fallback, what eBPF could not account for."""


@dataclass(frozen=True)
class Progress:
    """Post a running render's records so far every `every_s` seconds: `post(path)` is given a file
    of the complete records the recorder has written up to then (all of them, each time: the store
    files a frame's records again by replacing them). A render reads most of its data in its first
    minutes; a live job learns from them long before the frame ends (`prewarm frame progress`).
    Whatever `post` raises is its own line on stderr, never the render's failure."""

    every_s: float
    post: Callable[[str], None]


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


def choose(wanted: str | None) -> tuple[str, str]:
    """The recorder to use and the one line that says why: `wanted` if given, else eBPF where it can run."""
    from prewarm.traces.ebpf import available

    if wanted == "strace":
        return "strace", "strace (asked for)"
    why = available()
    if wanted == "ebpf":
        return ("ebpf", "eBPF (asked for)") if why is None else ("strace", f"eBPF cannot run: {why}; using strace")
    return ("ebpf", "eBPF (libbpf on the raw syscall tracepoint)") if why is None else \
        ("strace", f"strace ({why} for eBPF)")


def record(settings: Settings, argv: Sequence[str], job: str, show: str | None = None, shot: str | None = None,
           frame: int | None = None, keep_raw: str | None = None, recorder: str | None = None,
           file: bool = True, structures: StructureOf | None = None, progress: Progress | None = None
           ) -> RecordResult:
    """Run `argv` under a recorder (`recorder`: "ebpf", "strace", or None to choose), then import
    its record (reads under the roots only) into the store, unless `file` is false (the caller
    keeps the raw record at `keep_raw`, e.g. for a watch folder). `structures` reads the textures the
    record names, so that the store files them in tiles with their identity (`prewarm.flow.filing`).
    `progress` posts the records so far while the render runs.

    The raw record is written beside where it goes (the store, or `keep_raw`'s folder: same
    file system, no copy of a big log through /tmp) and removed after the import unless
    `keep_raw` names where to keep it. No store configured: the render still runs, and the
    reason it was not filed is the result's `error`.
    """
    root = Path(keep_raw).parent if keep_raw and not file else _raw_folder(settings)
    try:
        command = resolve_command(argv)
    except ConfigError as exc:
        print(f"prewarm record: {exc}", file=sys.stderr)
        return RecordResult(EXIT_NOT_FOUND, None, str(exc))
    kind, note = choose(recorder)
    notes = [note]
    raw = ""
    try:
        if kind == "ebpf":
            fd, raw = tempfile.mkstemp(prefix=".record-", suffix=".jsonl", dir=root)
            try:
                returncode, ebpf_notes = _run_ebpf(settings, command, fd, raw, progress)
                notes += ebpf_notes
            except EbpfUnavailable as exc:
                notes.append(f"{exc}; using strace")
                Path(raw).unlink(missing_ok=True)
                kind = "strace"
        if kind == "strace":
            fd, raw = tempfile.mkstemp(prefix=".record-", suffix=".strace", dir=root)
            os.close(fd)
            with _posting(raw, progress):
                returncode = _run(strace_argv(raw, command))
        if not file:
            return RecordResult(returncode, None, None, kind, notes)
        return _file(settings, raw, returncode, (show, shot, job, frame), kind, notes, structures)
    finally:
        if raw and keep_raw:
            shutil.move(raw, keep_raw)
        elif raw:
            Path(raw).unlink(missing_ok=True)


def _raw_folder(settings: Settings) -> Path:
    """The store's folder (made if missing), or the temporary folder when there is no store or it
    cannot be made: then the record is not filed, and `_file` says why."""
    try:
        root = store_root(settings)
        root.mkdir(parents=True, exist_ok=True)
    except (ConfigError, OSError):
        return Path(tempfile.gettempdir())
    return root


def _file(settings: Settings, raw: str, returncode: int, names: tuple[str | None, str | None, str, int | None],
          kind: str, notes: list[str], structures: StructureOf | None) -> RecordResult:
    """The record filed in the store under `names` (show, shot, job, frame); a record that cannot be
    is a line, never the render's failure."""
    show, shot, job, frame = names
    try:
        stored = import_traces(settings, [raw], show, shot, job, frame, structures=structures)
    except (InputError, ConfigError) as exc:  # the render's status matters more than its trace
        return RecordResult(returncode, None, f"trace not filed: {exc}", kind, notes)
    except OSError as exc:
        return RecordResult(returncode, None, f"trace not filed: {exc.strerror or type(exc).__name__}", kind, notes)
    return RecordResult(returncode, stored, None, kind, notes)


def _run_ebpf(settings: Settings, command: list[str], fd: int, raw: str, progress: Progress | None
              ) -> tuple[int, list[str]]:
    """Run the command under the eBPF recorder, its JSON Lines written to `fd` (the file `raw`);
    EbpfUnavailable (before the command ran) if the program cannot be loaded."""
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        rec = EbpfRecorder(out, _keeper(settings))
        proc = rec.start(command)
        try:
            with _posting(raw, progress, out):
                returncode = _wait(proc)
        finally:
            stats = rec.stop()
    lost = [f"{n} {what}" for n, what in ((stats.lost_runs, "reads a full kernel map dropped"),
                                          (stats.lost_events, "events a full ring dropped")) if n]
    return returncode, ([f"eBPF could not account for {', '.join(lost)}"] if lost else [])


@contextmanager
def _posting(raw: str, progress: Progress | None, out: IO[bytes] | None = None) -> Iterator[None]:
    """While the render runs, every `progress.every_s`: the complete lines of `raw` so far (after
    flushing `out`, the eBPF recorder's buffered writer) copied beside it, and posted."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    snapshot = f"{raw}.so-far"

    def run() -> None:
        while not stop.wait(progress.every_s):
            if out is not None:
                with suppress(ValueError, OSError):  # closed as the render ended
                    out.flush()
            try:
                if _snapshot(raw, snapshot):
                    progress.post(snapshot)
            except Exception as exc:  # the render never fails for its records so far
                print(f"prewarm record: records so far not posted: {exc}", file=sys.stderr)

    poster = threading.Thread(target=run, name="prewarm-record-progress", daemon=True)
    poster.start()
    try:
        yield
    finally:
        stop.set()
        poster.join()
        Path(snapshot).unlink(missing_ok=True)


def _snapshot(raw: str, snapshot: str) -> bool:
    """Copy the complete lines of `raw` to `snapshot` (a MiB at a time: a long render's strace log
    is hundreds of megabytes); False when there is none yet."""
    last = written = 0
    with open(raw, "rb") as src, open(snapshot, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                last = written + nl + 1
            written += len(chunk)
        dst.truncate(last)
    return last > 0


def _keeper(settings: Settings) -> Callable[[str], bool] | None:
    """Which local paths the eBPF recorder writes down: those whose studio path is under the roots
    (the import checks again; this keeps the raw record small)."""
    keep = under_roots(settings)
    if keep is None:
        return None
    mapping = settings.path_map if settings.path_map is not None else PathMap()
    return lambda path: keep(mapping.to_studio(path))


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """The command's status; SIGINT/SIGTERM sent to this wrapper are passed on to it, so a farm
    cancelling the task stops the render, not only the wrapper. Killed by a signal: 128 + N."""
    forwarded = {s: signal.signal(s, lambda signum, _f: proc.send_signal(signum))
                 for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = proc.wait()
    finally:
        for s, old in forwarded.items():
            signal.signal(s, old)
    return returncode if returncode >= 0 else 128 - returncode


def _run(argv: list[str]) -> int:
    """Run strace and the command (strace passes signals on and returns the command's status)."""
    return _wait(subprocess.Popen(argv))
