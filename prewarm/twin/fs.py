"""FUSE front of the gateway twin: translates mfusepy calls into `Gateway` methods.

Kernel-side caching is switched off (`direct_io`, zero attribute and entry timeouts)
so every client read and stat reaches the twin and its own caches decide what costs
a round trip: otherwise the kernel page cache answers re-reads and the counters lie.
`TwinConfig.client_cache` turns the page cache on for data (never for attributes),
for benchmarks that measure read wait; its docstring says which counters stay exact.

A read tells whether its file was opened with O_DIRECT: the kernel passes the open
flags to FUSE (`fuse_file_info.flags`, which mfusepy hands to `open` when `raw_fi` is
off), and the file handle `open` returns comes back with every read (`fh`). So `open`
returns `DIRECT_FH` for O_DIRECT opens and 0 otherwise. A flag set later with
`fcntl(F_SETFL, O_DIRECT)` never reaches FUSE; prewarm's reader sets it at open.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import mfusepy

from prewarm.site.mounts import TWIN_SOURCE
from prewarm.twin.gateway import Gateway

_STAT_KEYS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks")
_FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
"""libfuse 3 fuse_common.h: revalidate attributes before every cached read."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
DIRECT_FH = 1
"""The file handle of an O_DIRECT open."""


def _errno_of(exc: OSError) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(exc.errno or errno.EIO)


class TwinOperations(mfusepy.Operations):  # type: ignore[misc]
    """Read-only: renderers and warmers only read, and a write would bypass the cache model."""

    use_ns = True

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def init_with_config(self, conn: Any, config: Any) -> None:
        if self.gateway.config.client_cache:
            config.direct_io = 0
            # Without this the kernel asks for attributes (timeout 0) before each cached read.
            conn.want &= ~_FUSE_CAP_AUTO_INVAL_DATA
        else:
            config.direct_io = 1
        config.attr_timeout = 0.0
        config.entry_timeout = 0.0
        config.negative_timeout = 0.0

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = self.gateway.getattr(path)
        except OSError as exc:
            raise _errno_of(exc) from exc
        attrs: dict[str, Any] = {k: getattr(st, k) for k in _STAT_KEYS}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        attrs["st_mode"] = st.st_mode & ~0o222  # read-only export
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        try:
            return [".", "..", *self.gateway.listdir(path)]
        except OSError as exc:
            raise _errno_of(exc) from exc

    def readlink(self, path: str) -> str:
        try:
            return self.gateway.readlink(path)
        except OSError as exc:
            raise _errno_of(exc) from exc

    def open(self, path: str, flags: int) -> int:
        if flags & _WRITE_FLAGS:
            raise mfusepy.FuseOSError(errno.EROFS)
        try:
            self.gateway.open(path)
        except OSError as exc:
            raise _errno_of(exc) from exc
        return DIRECT_FH if flags & os.O_DIRECT else 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        try:
            return self.gateway.read(path, offset, size, direct=fh == DIRECT_FH)
        except OSError as exc:
            raise _errno_of(exc) from exc

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.gateway.origin)
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                            "f_files", "f_ffree", "f_favail", "f_namemax")}


def serve(gateway: Gateway, mountpoint: str, max_threads: int = 64, source: str = TWIN_SOURCE) -> None:
    """Mount and serve in the foreground until unmounted or signalled (SIGTERM unmounts).

    `source` is the mountinfo source field: the twin declares there the options of the
    mount it plays (`prewarm.site.mounts.twin_source`).
    """
    mfusepy.FUSE(TwinOperations(gateway), mountpoint, foreground=True, ro=True,
                 fsname=source, subtype="prewarm-twin", max_threads=max_threads)
