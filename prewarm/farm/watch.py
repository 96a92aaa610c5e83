"""Watch folders: the plumbing shared by the spool of jobs to submit (`prewarm.farm.spool`) and the
drop folder of traces to file in the store (`prewarm.farm.tracedrop`), and the loop that polls them.

A drop is touched only once it has settled (`Settler`): dotfiles and `*.tmp`, `*.part` are ignored
until renamed, and anything else must keep the same size and mtime (for a folder: every file's)
for `settle_s` first.

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
import logging
import os
import stat as statmod
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from prewarm.errors import InputError

__all__ = ["DropState", "Outcome", "Refusals", "Settler", "ignored", "kind", "read_real", "unique",
           "watch"]

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or name.endswith((".error.txt", ".result.txt"))


def kind(path: Path) -> str | None:
    """"file" or "dir" for a real file or folder (not followed through a link), else None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "file" if statmod.S_ISREG(mode) else "dir" if statmod.S_ISDIR(mode) else None


class Refusals:
    """Drops that are not real files or folders: warned about once each, then left alone."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: set[Path] = set()

    def real(self, path: Path, kinds: tuple[str, ...] = ("file", "dir")) -> bool:
        if kind(path) in kinds:
            return True
        if path not in self.seen and os.path.lexists(path):
            self.seen.add(path)
            log.warning("%s: %s is a symlink, FIFO, device or socket: left alone, not read", self.what, path.name)
        return False


def read_real(path: Path, limit: int) -> bytes:
    """The bytes of a real file, never through a link, never a FIFO, at most `limit` (the site's
    `max_request_bytes`: a manifest, a bundle file or a sidecar is kilobytes); InputError naming the drop otherwise."""
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
        raise InputError(path.name, f"larger than {limit:,} bytes (the site's max_request_bytes): not a job or a "
                                    "sidecar")
    return data


def signature(path: Path) -> tuple[object, ...] | None:
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


def unique(dest: Path) -> Path:
    """`dest`, or `stem-2.ext`, `stem-3.ext`... when a drop of that name is already there."""
    if not dest.exists():
        return dest
    stem, suffix = (dest.name, "") if dest.name.startswith(".") else (dest.stem, dest.suffix)
    n = 2
    while (candidate := dest.with_name(f"{stem}-{n}{suffix}")).exists():
        n += 1
    return candidate


class Settler:
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
            sig = signature(p)
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


class DropState(StrEnum):
    """What became of a drop: a `str` enum, so it prints and logs as the word a user reads."""

    DONE = "done"
    DUPLICATE = "duplicate"
    """Same content as a recent submission: moved to `done/` with a note, not submitted again."""
    FAILED = "failed"
    WAITING = "waiting"
    """The service is unreachable: left in `processing/`, retried later."""


@dataclass(frozen=True)
class Outcome:
    name: str
    state: DropState
    detail: str



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
