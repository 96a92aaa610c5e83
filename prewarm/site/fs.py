"""The studio file system as this machine sees it: stats and listings through the one guard.

Planning asks in studio paths (`prewarm.plan.inputs.FileSystem`); this is where they
become local paths and where the roots are enforced, so the pure planner never sees a
path of this machine. Stats run `workers` at a time: on a gateway mount each one waits
a WAN round trip, and one at a time would take hours for a big job. Errors become
words for the plan's findings, never a local path.
"""

from __future__ import annotations

import stat as statmod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prewarm.plan.inputs import Failure, Kind, Stat
from prewarm.plan.records import FileInfo
from prewarm.site.guard import Guard, NotAFile, Refused

CHUNK = 256
"""Paths per stat task: the thread hand-off costs about as much as a local stat."""


def reason(exc: OSError) -> str:
    """An OSError as a finding's words: what is wrong, without the path it happened to."""
    if isinstance(exc, Refused | NotAFile):
        return exc.why
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, NotADirectoryError):
        return "a folder on the way is a file"
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


class SiteFS:
    """`FileSystem` over a `Guard`; also the planner's lookup of traced files' identities."""

    def __init__(self, guard: Guard, workers: int = 16) -> None:
        self.guard = guard
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> SiteFS:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def stat(self, path: str) -> Stat | Failure:
        try:
            st = self.guard.stat(path)
        except OSError as exc:
            return Failure(reason(exc))
        kind = Kind.FILE if statmod.S_ISREG(st.st_mode) else Kind.DIR if statmod.S_ISDIR(st.st_mode) else Kind.OTHER
        return Stat(kind, st.st_size, st.st_mtime, (st.st_dev, st.st_ino))

    def _chunk(self, paths: list[str]) -> list[Stat | Failure]:
        return [self.stat(p) for p in paths]

    def stat_many(self, paths: Sequence[str]) -> list[Stat | Failure]:
        todo = list(paths)
        if self.workers < 2 or len(todo) < 2:
            return self._chunk(todo)
        size = max(1, min(CHUNK, -(-len(todo) // 4)))  # at least four chunks in flight when there are few paths
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="prewarm-stat")
        return [r for part in self._pool.map(self._chunk, chunks) for r in part]

    def listdir(self, path: str) -> list[str] | Failure:
        try:
            return self.guard.listdir(path)
        except OSError as exc:
            return Failure(reason(exc))

    def info(self, path: str) -> FileInfo | None:
        """A regular file's identity for the plan, or None (absent, refused, not a file)."""
        st = self.stat(path)
        if isinstance(st, Stat) and st.kind is Kind.FILE:
            return FileInfo(path, st.size, st.mtime)
        return None
