"""Read a file's structure once per plan, and never fail a plan over a file that has none.

`StructureReader` is the one entry the planner uses: `reader.structure(info)` is the
file's `Structure`, or None when the byte model must do (not a format read here, or
unreadable). A file is read at most once per (path, size, mtime): a plan asks for
the same texture for every frame group. Unreadable files (corrupt, truncated,
sparse zeros, absurd tables) are counted with their reason for the plan's summary;
nothing a file holds can raise out of here or read more than the budget of
`prewarm.formats.source`.

IO is the caller's: `open_file(path)` gives a `Fetcher` over a studio path for as
long as its context lasts (`guarded_files`: through the site's guard, on the gateway
mount like any warm read; a test may hand in bytes).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from prewarm.formats.exr import MAGIC as EXR_MAGIC
from prewarm.formats.exr import read_exr
from prewarm.formats.source import BudgetExceeded, Fetcher
from prewarm.formats.tiff import StructureError, read_tiff
from prewarm.plan.records import FileInfo
from prewarm.plan.stats import StructureStats
from prewarm.plan.structure import Structure
from prewarm.site.guard import Guard

TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")

STRUCTURED = (".tx", ".tex", ".tif", ".tiff", ".exr", ".tdl")
"""Extensions whose files should have a structure: without a readable header they are counted."""

Opener = Callable[[str], AbstractContextManager[Fetcher]]
"""Opens a studio path for reading: a `Fetcher` for as long as the context lasts."""


def read_structure(fetch: Fetcher, size: int, name: str = "") -> Structure | str | None:
    """The file's structure; a reason (str) when it claims one that cannot be read; None when it has none."""
    try:
        head = fetch(0, min(size, 8))
        if head[:4] in TIFF_MAGICS:
            return read_tiff(fetch, size)
        if head[:4] == EXR_MAGIC:
            return read_exr(fetch, size)
    except (StructureError, BudgetExceeded, EOFError) as exc:
        return str(exc) or type(exc).__name__
    except OSError as exc:
        return f"cannot read: {exc.strerror or type(exc).__name__}"
    except Exception as exc:  # whatever a hostile header makes a parser raise is a fallback
        return f"corrupt header ({type(exc).__name__})"
    if name.lower().endswith(STRUCTURED):
        return "no TIFF or OpenEXR header (sparse, empty or another format)" if size else "empty file"
    return None


class StructureReader:
    """Structures of a plan's files, each read once; unreadable ones counted by reason."""

    def __init__(self, open_file: Opener | None) -> None:
        self._open = open_file
        self._cache: dict[tuple[str, int, float], Structure | None] = {}
        self.unreadable: dict[str, str] = {}
        self.formats: Counter[str] = Counter()

    def structure(self, info: FileInfo) -> Structure | None:
        key = (info.path, info.size, info.mtime)
        if key in self._cache:
            return self._cache[key]
        got: Structure | str | None = None
        if self._open is not None and info.size > 0:
            try:
                with self._open(info.path) as fetch:
                    got = read_structure(fetch, info.size, info.path)
            except OSError as exc:
                got = f"cannot open: {exc.strerror or type(exc).__name__}"
        if isinstance(got, str):
            self.unreadable[info.path] = got
            got = None
        elif got is not None:
            self.formats[got.format] += 1
        self._cache[key] = got
        return got

    def by_path(self, lookup: Callable[[str], FileInfo | None]) -> Callable[[str], Structure | None]:
        """What the predictor takes: a studio path's structure, its identity from the plan's `lookup`."""
        def structure(path: str) -> Structure | None:
            info = lookup(path)
            return None if info is None else self.structure(info)
        return structure

    def stats(self) -> StructureStats:
        """For the plan's summary: files read by structure, and those left to the byte model and why."""
        return StructureStats(dict(self.formats), len(self.unreadable), dict(sorted(self.unreadable.items())[:20]))


def guarded_files(guard: Guard) -> Opener:
    """An opener of studio paths through the site's guard (roots, links, remaps), reading with
    `pread`: a refused path is a reason, like any file that cannot be opened."""
    @contextmanager
    def open_file(path: str) -> Iterator[Fetcher]:
        fd, _ = guard.open(path)
        try:
            yield lambda start, end: os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)
    return open_file
