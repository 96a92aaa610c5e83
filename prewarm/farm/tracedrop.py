"""The trace drop folder: traces render nodes leave there are filed in the trace store.

Render nodes leave traces (strace logs or JSON
Lines, plain or gzip) there; each is imported into the trace store and removed. Its
job, shot and show come from a sidecar `NAME.prewarm.json` (`{"job", "shot", "show",
"frame"}`), else from its place `show/shot/job/FILE` below the folder (`shot/job/FILE`,
`job/FILE`), else from the `job` field of its JSON Lines records. A trace that cannot
be imported goes to `failed/` with `NAME.error.txt`.

A trace is read through a guard rooted at the drop folder; shared plumbing (settling, refusing
links, reading real files) is `prewarm.farm.watch`'s.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prewarm.errors import InputError, TraceError
from prewarm.farm.watch import DropState, Outcome, Refusals, Settler, ignored, kind, read_real, unique
from prewarm.flow.filing import structure_of
from prewarm.plan.limits import MAX_TRACE_LINE
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces.files import TraceFile, opened, trace_files

__all__ = ["SIDECAR", "TraceDrop"]

log = logging.getLogger(__name__)

SIDECAR = ".prewarm.json"


@dataclass
class TraceDrop:
    folder: Path
    settings: Settings
    settle_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    settler: Settler = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        (self.folder / "failed").mkdir(parents=True, exist_ok=True)
        self.settler = Settler(self.settle_s, self.clock)
        self.guard = Guard.local(str(self.folder))
        self.refusals = Refusals("traces")
        self.structures = structure_of(self.settings)    # textures filed in tiles, with their identity

    def candidates(self) -> list[Path]:
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                             not (Path(folder) == self.folder and d == "failed"))
            found.extend(p for f in sorted(files) if not ignored(f) and not f.endswith(SIDECAR)
                         and self.refusals.real(p := Path(folder, f), ("file",)))
        return found

    def poll(self) -> list[Outcome]:
        from prewarm.traces.store import describe, import_traces

        outcomes: list[Outcome] = []
        for p in self.settler.ready(self.candidates()):
            self.settler.forget(p)
            sidecar = p.with_name(p.name + SIDECAR)
            try:
                rel = p.relative_to(self.folder).as_posix()
                found = trace_files(f"{self.guard.roots[0]}/{rel}", self.guard, rel)
                show, shot, job, frame = self.identity(p, sidecar, found[0])
                result = import_traces(self.settings, found, show, shot, job, frame, structures=self.structures)
            except InputError as exc:
                outcomes.append(self._failed(p, sidecar, str(exc)))
                continue
            except OSError as exc:
                outcomes.append(self._failed(p, sidecar, f"cannot import: {exc.strerror or type(exc).__name__}"))
                continue
            p.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            log.info("traces: %s: %s", p.name, describe(result))
            outcomes.append(Outcome(str(p.relative_to(self.folder)), DropState.DONE, describe(result)))
        return outcomes

    def identity(self, path: Path, sidecar: Path, trace: TraceFile) -> tuple[str | None, str | None, str, int | None]:
        """(show, shot, job, frame) of a dropped trace: sidecar, then its place, then its records."""
        if os.path.lexists(sidecar):
            try:
                meta = json.loads(read_real(sidecar, self.settings.max_request_bytes))
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
        job = _job_from_records(trace)
        if job is None:
            raise InputError(str(path), f"whose trace? put it in show/shot/job/ below the drop folder, "
                                        f"or beside a {path.name}{SIDECAR} sidecar naming its job")
        return None, None, job, None

    def _failed(self, path: Path, sidecar: Path, why: str) -> Outcome:
        dest = unique(self.folder / "failed" / path.name)
        dest.with_name(dest.name + ".error.txt").write_text(why + "\n", encoding="utf-8")
        os.rename(path, dest)
        if kind(sidecar) == "file":
            os.rename(sidecar, dest.with_name(dest.name + SIDECAR))
        log.warning("traces: %s: %s", path.name, why)
        return Outcome(path.name, DropState.FAILED, why)


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _job_from_records(trace: TraceFile) -> str | None:
    """The `job` field of the first JSON Lines record that has one (within the first lines), read
    as the import reads the file (`prewarm.traces.files.opened`: through the drop's guard)."""
    try:
        with opened(trace) as binary:
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
    except (OSError, EOFError, zlib.error, TraceError):
        return None
    return None
