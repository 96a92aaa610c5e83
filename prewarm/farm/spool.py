"""The spool: jobs dropped into a folder are submitted once.

A manifest (`*.yaml`, `*.yml`, `*.json`), a job bundle folder or
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

Shared plumbing (settling, refusing links, reading real files) is `prewarm.farm.watch`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prewarm.errors import InputError, ManifestError, ServiceError
from prewarm.farm.watch import DropState, Outcome, Refusals, Settler, ignored, kind, read_real, unique
from prewarm.plan.manifest import Manifest
from prewarm.site.settings import Settings

__all__ = ["Spool", "Submit", "client_submitter", "load_job", "local_submitter"]

log = logging.getLogger(__name__)

Submit = Callable[[Path], str]
"""Submits the job described by a drop; returns what to record (warm job ids). Raises
InputError for a bad job (-> failed/) and ServiceError when it should be tried again."""

WORK_DIRS = ("processing", "done", "failed")


def _digest(path: Path, limit: int) -> str:
    """The drop's content; a bundle's links are named, not followed (the bundle reader refuses them)."""
    h = hashlib.sha256()
    if kind(path) == "dir":
        for folder, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for f in sorted(files):
                full = Path(folder, f)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                h.update((read_real(full, limit) if kind(full) == "file" else os.readlink(full).encode()) + b"\0")
        return "d" + h.hexdigest()
    return "f" + hashlib.sha256(read_real(path, limit)).hexdigest()


@dataclass(frozen=True)
class _Entry:
    """A ledger line: a submitted drop."""

    name: str
    result: str
    t: float


class Spool:
    def __init__(self, folder: str | Path, submit: Submit, settle_s: float = 1.0, retry_s: float = 10.0,
                 dedupe_s: float = 6 * 3600, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, max_bytes: int = Settings.max_request_bytes) -> None:
        self.folder = Path(folder)
        self.submit = submit
        self.max_bytes = max_bytes
        """The largest file of a drop read (the site's `max_request_bytes`, as `flow.jobs` reads the job)."""
        self.retry_s = retry_s
        self.dedupe_s = dedupe_s
        self.clock = clock
        self.wall = wall
        self.settler = Settler(settle_s, clock)
        for d in WORK_DIRS:
            (self.folder / d).mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.folder / ".ledger.jsonl"
        self.refusals = Refusals("spool")
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
        return [p for p in entries if not ignored(p.name) and p.name not in WORK_DIRS and self.refusals.real(p)]

    def poll(self) -> list[Outcome]:
        """One pass: finish or retry claimed drops that are due, then take the settled new ones."""
        outcomes: list[Outcome] = []
        now = self.clock()
        for p in sorted((self.folder / "processing").iterdir()):
            if ignored(p.name) or not self.refusals.real(p):
                continue
            if self.retry_at.get(p.name, 0.0) <= now:
                outcomes.append(self._process(p))
        for p in self.settler.ready(self.candidates()):
            self.settler.forget(p)
            claimed = unique(self.folder / "processing" / p.name)
            try:
                os.rename(p, claimed)
            except OSError:
                continue  # taken by another watcher, or removed
            outcomes.append(self._process(claimed))
        return outcomes

    def _process(self, path: Path) -> Outcome:
        try:
            digest = _digest(path, self.max_bytes)
        except OSError as exc:
            return self._finish(path, DropState.FAILED, f"cannot read: {exc.strerror or type(exc).__name__}")
        except InputError as exc:
            return self._finish(path, DropState.FAILED, str(exc))
        first = self._ledger().get(digest)
        if first is not None and self.wall() - first.t < self.dedupe_s:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first.t))
            return self._finish(path, DropState.DUPLICATE, f"same content as {first.name} submitted {when} "
                                                   f"({first.result}): not submitted again")
        try:
            result = self.submit(path)
        except ServiceError as exc:
            self.retry_at[path.name] = self.clock() + self.retry_s
            log.warning("spool: %s: %s (retrying in %.0fs)", path.name, exc, self.retry_s)
            return Outcome(path.name, DropState.WAITING, str(exc))
        except InputError as exc:
            return self._finish(path, DropState.FAILED, str(exc))
        except Exception as exc:  # a bug or an unexpected file must not stop the watcher
            log.exception("spool: %s", path.name)
            return self._finish(path, DropState.FAILED, f"unexpected {type(exc).__name__} (see the watcher's log)")
        self._record(digest, path.name, result)
        return self._finish(path, DropState.DONE, result)

    def _finish(self, path: Path, state: DropState, detail: str) -> Outcome:
        """Moves the drop on with its note; messages name the drop, not its claim in processing/."""
        self.retry_at.pop(path.name, None)
        detail = detail.replace(str(path), path.name)
        folder = self.folder / ("failed" if state == DropState.FAILED else "done")
        dest = unique(folder / path.name)
        note = dest.with_name(dest.name + (".error.txt" if state == DropState.FAILED else ".result.txt"))
        note.write_text(detail.rstrip() + "\n", encoding="utf-8")
        os.rename(path, dest)
        (log.warning if state == DropState.FAILED else log.info)("spool: %s: %s: %s", path.name, state, detail)
        return Outcome(path.name, state, detail)


def load_job(path: Path, settings: Settings) -> Manifest:
    """The manifest of a drop (`prewarm.flow.jobs.load`, links not followed): a bundle folder, a bundle
    JSON, a hook payload, or a manifest (YAML or JSON); a plan is not a job."""
    from prewarm.flow import jobs

    if kind(path) == "file" and path.suffix.lower() not in (".json", ".yaml", ".yml"):
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
