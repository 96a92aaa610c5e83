"""Watch folders: a spool of jobs to submit, and a drop folder of traces to file in the store.

The spool (`Spool`): a manifest (`*.yaml`, `*.yml`, `*.json`), a job bundle folder or
a bundle JSON dropped into the folder is submitted once, then moved to `done/` (with
`NAME.result.txt`: the warm job ids) or to `failed/` (with `NAME.error.txt`: why).

- Half-written drops are never read: dotfiles, `*.tmp` and `*.part` are ignored until
  renamed, and anything else must keep the same size and mtime (for a folder: every
  file's) for `settle_s` before it is touched.
- A drop is claimed by renaming it into `processing/` (atomic on one file system: two
  watchers never both take it). Submitted drops are recorded in `.ledger.jsonl` by the
  SHA-256 of their content *before* they are moved on, so a watcher restarted at any
  point finds in `processing/` only what it must finish: recorded ones go to `done/`
  without a second submission, the others are submitted. (Only a crash between the
  submission and the ledger line can submit twice; the service's own dedupe catches it.)
- The same content dropped again within `dedupe_s` is not submitted again: it goes to
  `done/` with a note naming the first submission.
- When the warm service or Redis is unreachable (`ServiceError`) the drop waits in
  `processing/` and is retried every `retry_s`: an outage loses nothing.

The trace drop folder (`TraceDrop`): render nodes leave traces (strace logs or JSON
Lines, plain or gzip) there; each is imported into the trace store and removed. Its
job, shot and show come from a sidecar `NAME.prewarm.json` (`{"job", "shot", "show",
"frame"}`), else from its place `show/shot/job/FILE` below the folder (`shot/job/FILE`,
`job/FILE`), else from the `job` field of its JSON Lines records. A trace that cannot
be imported goes to `failed/` with `NAME.error.txt`.

watchdog wakes the loop as soon as something changes; a periodic tick does the rest
(settling, retries), so events lost by an overflowing inotify queue cost only latency.

Anyone who can write the folders can drop anything there, so only real files and
folders are taken: a symlink (to `/etc`, or dangling), a FIFO, a device or a socket is
left where it is, neither read nor moved, with one warning. Files are opened with
`O_NOFOLLOW` (a drop swapped for a link after it was claimed is not followed), a
bundle folder is read through a guard rooted at it, and a trace through one rooted
at the drop folder.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import itertools
import json
import logging
import os
import stat as statmod
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prewarm.errors import InputError, ManifestError, ServiceError
from prewarm.plan.limits import MAX_TRACE_LINE
from prewarm.plan.manifest import Manifest
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings

__all__ = ["Spool", "Submit", "TraceDrop", "client_submitter", "load_job", "local_submitter", "watch"]

log = logging.getLogger(__name__)

Submit = Callable[[Path], str]
"""Submits the job described by a drop; returns what to record (warm job ids). Raises
InputError for a bad job (-> failed/) and ServiceError when it should be tried again."""

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
SIDECAR = ".prewarm.json"
WORK_DIRS = ("processing", "done", "failed")


MAX_DROP_BYTES = 8 << 20
"""A manifest, a bundle file or a sidecar is kilobytes; the service takes 8 MiB at most too."""


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or name.endswith((".error.txt", ".result.txt"))


def _kind(path: Path) -> str | None:
    """"file" or "dir" for a real file or folder (not followed through a link), else None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "file" if statmod.S_ISREG(mode) else "dir" if statmod.S_ISDIR(mode) else None


class _Refusals:
    """Drops that are not real files or folders: warned about once each, then left alone."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: set[Path] = set()

    def real(self, path: Path, kinds: tuple[str, ...] = ("file", "dir")) -> bool:
        if _kind(path) in kinds:
            return True
        if path not in self.seen and os.path.lexists(path):
            self.seen.add(path)
            log.warning("%s: %s is a symlink, FIFO, device or socket: left alone, not read", self.what, path.name)
        return False


def read_real(path: Path, limit: int = MAX_DROP_BYTES) -> bytes:
    """The bytes of a real file, never through a link, never a FIFO; InputError naming the drop otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symlink: not followed" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise InputError(path.name, f"cannot read: {why}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not statmod.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InputError(path.name, "not a regular file: not read")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(path.name, f"larger than {limit >> 20} MiB: not a job or a sidecar")
    return data


def _signature(path: Path) -> tuple[object, ...] | None:
    """What must not change while a drop settles; None if it vanished meanwhile."""
    try:
        if path.is_dir():
            items: list[tuple[str, int, int]] = []
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    st = os.lstat(os.path.join(folder, f))
                    items.append((os.path.relpath(os.path.join(folder, f), path), st.st_size, st.st_mtime_ns))
            st = path.stat()
            return ("dir", st.st_mtime_ns, tuple(items))
        st = path.stat()
        return ("file", st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _digest(path: Path) -> str:
    """The drop's content; a bundle's links are named, not followed (the bundle reader refuses them)."""
    h = hashlib.sha256()
    if _kind(path) == "dir":
        for folder, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for f in sorted(files):
                full = Path(folder, f)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                h.update((read_real(full) if _kind(full) == "file" else os.readlink(full).encode()) + b"\0")
        return "d" + h.hexdigest()
    return "f" + hashlib.sha256(read_real(path)).hexdigest()


def _unique(dest: Path) -> Path:
    """`dest`, or `stem-2.ext`, `stem-3.ext`... when a drop of that name is already there."""
    if not dest.exists():
        return dest
    stem, suffix = (dest.name, "") if dest.name.startswith(".") else (dest.stem, dest.suffix)
    n = 2
    while (candidate := dest.with_name(f"{stem}-{n}{suffix}")).exists():
        n += 1
    return candidate


class _Settler:
    """Tells when a path has kept the same signature for `settle_s`."""

    def __init__(self, settle_s: float, clock: Callable[[], float]) -> None:
        self.settle_s = settle_s
        self.clock = clock
        self.seen: dict[Path, tuple[tuple[object, ...] | None, float]] = {}

    def ready(self, paths: list[Path]) -> list[Path]:
        now = self.clock()
        out: list[Path] = []
        current = set(paths)
        for gone in set(self.seen) - current:
            del self.seen[gone]
        for p in paths:
            sig = _signature(p)
            old = self.seen.get(p)
            if sig is None:
                self.seen.pop(p, None)
            elif old is None or old[0] != sig:
                self.seen[p] = (sig, now)
            elif now - old[1] >= self.settle_s:
                out.append(p)
        return out

    def forget(self, path: Path) -> None:
        self.seen.pop(path, None)


@dataclass(frozen=True)
class _Entry:
    """A ledger line: a submitted drop."""

    name: str
    result: str
    t: float


@dataclass(frozen=True)
class Outcome:
    name: str
    state: str
    """done, duplicate, failed or waiting (service unreachable: retried later)."""
    detail: str


class Spool:
    def __init__(self, folder: str | Path, submit: Submit, settle_s: float = 1.0, retry_s: float = 10.0,
                 dedupe_s: float = 6 * 3600, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.submit = submit
        self.retry_s = retry_s
        self.dedupe_s = dedupe_s
        self.clock = clock
        self.wall = wall
        self.settler = _Settler(settle_s, clock)
        for d in WORK_DIRS:
            (self.folder / d).mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.folder / ".ledger.jsonl"
        self.refusals = _Refusals("spool")
        self.retry_at: dict[str, float] = {}
        """Drops in processing/ that wait for the service, by name; at start every one found
        there is due at once (a restart finishes the previous watcher's work)."""

    def _ledger(self) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        try:
            with open(self.ledger_path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        e = json.loads(line)
                        entries[str(e["sha256"])] = _Entry(str(e["name"]), str(e["result"]), float(e["t"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash
        except FileNotFoundError:
            pass
        return entries

    def _record(self, digest: str, name: str, result: str) -> None:
        line = json.dumps({"sha256": digest, "name": name, "result": result, "t": self.wall()}) + "\n"
        with open(self.ledger_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def candidates(self) -> list[Path]:
        try:
            entries = sorted(self.folder.iterdir())
        except FileNotFoundError:
            return []
        return [p for p in entries if not _ignored(p.name) and p.name not in WORK_DIRS and self.refusals.real(p)]

    def poll(self) -> list[Outcome]:
        """One pass: finish or retry claimed drops that are due, then take the settled new ones."""
        outcomes: list[Outcome] = []
        now = self.clock()
        for p in sorted((self.folder / "processing").iterdir()):
            if _ignored(p.name) or not self.refusals.real(p):
                continue
            if self.retry_at.get(p.name, 0.0) <= now:
                outcomes.append(self._process(p))
        for p in self.settler.ready(self.candidates()):
            self.settler.forget(p)
            claimed = _unique(self.folder / "processing" / p.name)
            try:
                os.rename(p, claimed)
            except OSError:
                continue  # taken by another watcher, or removed
            outcomes.append(self._process(claimed))
        return outcomes

    def _process(self, path: Path) -> Outcome:
        try:
            digest = _digest(path)
        except OSError as exc:
            return self._finish(path, "failed", f"cannot read: {exc.strerror or type(exc).__name__}")
        except InputError as exc:
            return self._finish(path, "failed", str(exc))
        first = self._ledger().get(digest)
        if first is not None and self.wall() - first.t < self.dedupe_s:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first.t))
            return self._finish(path, "duplicate", f"same content as {first.name} submitted {when} "
                                                   f"({first.result}): not submitted again")
        try:
            result = self.submit(path)
        except ServiceError as exc:
            self.retry_at[path.name] = self.clock() + self.retry_s
            log.warning("spool: %s: %s (retrying in %.0fs)", path.name, exc, self.retry_s)
            return Outcome(path.name, "waiting", str(exc))
        except InputError as exc:
            return self._finish(path, "failed", str(exc))
        except Exception as exc:  # a bug or an unexpected file must not stop the watcher
            log.exception("spool: %s", path.name)
            return self._finish(path, "failed", f"unexpected {type(exc).__name__} (see the watcher's log)")
        self._record(digest, path.name, result)
        return self._finish(path, "done", result)

    def _finish(self, path: Path, state: str, detail: str) -> Outcome:
        """Moves the drop on with its note; messages name the drop, not its claim in processing/."""
        self.retry_at.pop(path.name, None)
        detail = detail.replace(str(path), path.name)
        folder = self.folder / ("failed" if state == "failed" else "done")
        dest = _unique(folder / path.name)
        note = dest.with_name(dest.name + (".error.txt" if state == "failed" else ".result.txt"))
        note.write_text(detail.rstrip() + "\n", encoding="utf-8")
        os.rename(path, dest)
        (log.warning if state == "failed" else log.info)("spool: %s: %s: %s", path.name, state, detail)
        return Outcome(path.name, state, detail)


# traces


@dataclass
class TraceDrop:
    folder: Path
    settings: Settings
    settle_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    settler: _Settler = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        (self.folder / "failed").mkdir(parents=True, exist_ok=True)
        self.settler = _Settler(self.settle_s, self.clock)
        self.guard = Guard.local(str(self.folder))
        self.refusals = _Refusals("traces")

    def candidates(self) -> list[Path]:
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                             not (Path(folder) == self.folder and d == "failed"))
            found.extend(p for f in sorted(files) if not _ignored(f) and not f.endswith(SIDECAR)
                         and self.refusals.real(p := Path(folder, f), ("file",)))
        return found

    def poll(self) -> list[Outcome]:
        from prewarm.traces.files import trace_files
        from prewarm.traces.store import describe, import_traces

        outcomes: list[Outcome] = []
        for p in self.settler.ready(self.candidates()):
            self.settler.forget(p)
            sidecar = p.with_name(p.name + SIDECAR)
            try:
                show, shot, job, frame = self.identity(p, sidecar)
                rel = p.relative_to(self.folder).as_posix()
                found = trace_files(f"{self.guard.roots[0]}/{rel}", self.guard, rel)
                result = import_traces(self.settings, found, show, shot, job, frame)
            except InputError as exc:
                outcomes.append(self._failed(p, sidecar, str(exc)))
                continue
            except OSError as exc:
                outcomes.append(self._failed(p, sidecar, f"cannot import: {exc.strerror or type(exc).__name__}"))
                continue
            p.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            log.info("traces: %s: %s", p.name, describe(result))
            outcomes.append(Outcome(str(p.relative_to(self.folder)), "done", describe(result)))
        return outcomes

    def identity(self, path: Path, sidecar: Path) -> tuple[str | None, str | None, str, int | None]:
        """(show, shot, job, frame) of a dropped trace: sidecar, then its place, then its records."""
        if os.path.lexists(sidecar):
            try:
                meta = json.loads(read_real(sidecar))
            except ValueError as exc:
                raise InputError(sidecar.name, f"not a valid sidecar: {exc}") from exc
            if not isinstance(meta, dict) or not isinstance(meta.get("job"), str):
                raise InputError(str(sidecar), 'expected {"job": ..., "shot": ..., "show": ..., "frame": ...}')
            frame = meta.get("frame")
            if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool)):
                raise InputError(str(sidecar), f"frame: expected an integer, got {frame!r}")
            return _opt(meta.get("show")), _opt(meta.get("shot")), meta["job"], frame
        parts = path.relative_to(self.folder).parts[:-1]
        if parts:
            padded = (None,) * (3 - len(parts[-3:])) + tuple(parts[-3:])
            return padded[0], padded[1], str(padded[2]), None
        job = _job_from_records(path)
        if job is None:
            raise InputError(str(path), f"whose trace? put it in show/shot/job/ below the drop folder, "
                                        f"or beside a {path.name}{SIDECAR} sidecar naming its job")
        return None, None, job, None

    def _failed(self, path: Path, sidecar: Path, why: str) -> Outcome:
        dest = _unique(self.folder / "failed" / path.name)
        dest.with_name(dest.name + ".error.txt").write_text(why + "\n", encoding="utf-8")
        os.rename(path, dest)
        if _kind(sidecar) == "file":
            os.rename(sidecar, dest.with_name(dest.name + SIDECAR))
        log.warning("traces: %s: %s", path.name, why)
        return Outcome(path.name, "failed", why)


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _job_from_records(path: Path) -> str | None:
    """The `job` field of the first JSON Lines record that has one (within the first lines)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as raw:
            if not statmod.S_ISREG(os.fstat(fd).st_mode):
                return None
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            binary = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            fh = io.TextIOWrapper(binary, encoding="utf-8", errors="replace")
            for line in itertools.islice(iter(lambda: fh.readline(MAX_TRACE_LINE), ""), 1000):
                if not line.lstrip().startswith("{"):
                    return None
                try:
                    job = json.loads(line).get("job")
                except (ValueError, AttributeError):
                    continue
                if isinstance(job, str) and job.strip():
                    return job
    except (OSError, EOFError, zlib.error):
        return None
    return None


# submitting


def load_job(path: Path, settings: Settings) -> Manifest:
    """The manifest of a drop (`prewarm.flow.jobs.load`, links not followed): a bundle folder, a bundle
    JSON, a hook payload, or a manifest (YAML or JSON); a plan is not a job."""
    from prewarm.flow import jobs

    if _kind(path) == "file" and path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ManifestError(str(path), "not a job: expected a manifest (.yaml, .yml, .json) or a job bundle folder")
    job = jobs.load(path, settings, follow_links=False)
    if job.manifest is None:
        raise ManifestError(str(path), "a plan, not a job: drop the job's manifest or bundle, which is planned here")
    for note in job.notes:
        log.info("spool: %s: %s", path.name, note)
    return job.manifest


def local_submitter(settings: Settings) -> Submit:
    """Plan in this process from the trace store, then warm: through the workers when Redis is
    configured (returns the warm job ids at once), else embedded (returns when the warm ends)."""
    from prewarm.flow import jobs, warming
    from prewarm.warm import embedded

    def submit(path: Path) -> str:
        plan = jobs.plan(jobs.Job(str(path), manifest=load_job(path, settings)), None, settings)
        if not settings.redis_url:
            plan = warming.check_plan(plan, settings, str(path))
            info = embedded.run_embedded(plan, settings)
            return f"{info.id} {info.state.value}"
        from prewarm.state.celery_app import CelerySender
        from prewarm.state.client import connect, ping

        r = connect(settings.redis_url)
        ping(r, settings.redis_url)
        return " ".join(warming.submit_plan(r, plan, settings, CelerySender(settings).send, str(path)).ids)
    return submit


def client_submitter(server: str, token: str | None) -> Submit:
    """Submit through the warm service (`prewarm serve`): it plans, dedupes and warms."""
    from prewarm.farm.client import PrewarmClient

    client = PrewarmClient(server, token)

    def submit(path: Path) -> str:
        answer = client.submit_bundle(path) if path.is_dir() else client.submit_manifest(path)
        ids = answer.get("ids") if isinstance(answer, dict) else None
        return " ".join(map(str, ids)) if ids else json.dumps(answer)
    return submit


def watch(pollers: list[Callable[[], list[Outcome]]], folders: list[Path], stop: threading.Event,
          tick_s: float = 0.5) -> Iterator[Outcome]:
    """Run the pollers whenever watchdog sees a change in `folders`, and every `tick_s`, until `stop`."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    wake = threading.Event()

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    observer = Observer()
    for folder in folders:
        observer.schedule(Wake(), str(folder), recursive=True)
    observer.start()
    try:
        while not stop.is_set():
            wake.clear()
            for poll in pollers:
                yield from poll()
            wake.wait(tick_s)
    finally:
        observer.stop()
        observer.join()
