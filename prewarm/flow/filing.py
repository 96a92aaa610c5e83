"""The structure reader the trace store files traces with: identity and structure of a studio file now.

The store (`prewarm.traces.store`) may not read file formats (its layer sits beside
`prewarm.formats`), so whoever files traces hands it this reader. It opens the studio
path through the site's guard (its roots and path map), reads the header and tables
with `prewarm.formats.reader.read_structure` and stamps the file's identity: size,
mtime, inode (`fstat` of the same descriptor) and the structure's digest and shape.
Anything unreadable is None: that file is filed by bytes only, never an error.
"""

from __future__ import annotations

import os

from prewarm.formats.reader import read_structure
from prewarm.plan.structure import Identity, Structure
from prewarm.site.guard import Guard
from prewarm.site.settings import Settings
from prewarm.traces.store import StructureOf

__all__ = ["structure_of"]


def structure_of(settings: Settings) -> StructureOf | None:
    """A reader of studio files through this site's guard; None when the site has no roots (nothing
    may be opened, so nothing is filed in tiles)."""
    roots = settings.allowed_roots()
    if not roots:
        return None
    guard = Guard(roots, settings.path_map)

    def read(path: str) -> tuple[Identity, Structure] | None:
        try:
            fd, _ = guard.open(path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            got = read_structure(lambda s, e: os.pread(fd, max(0, e - s), s), st.st_size, path)
        finally:
            os.close(fd)
        if not isinstance(got, Structure):
            return None
        return Identity(st.st_size, st.st_mtime_ns, st.st_ino, got.digest(), got.shape()), got
    return read
