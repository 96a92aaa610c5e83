"""A bounded, seekable file object over a fetcher: how structure readers read whatever the caller opened.

Readers never open files themselves. The caller hands them a `Fetcher` (the local
file, the gateway mount behind the site's path guard, bytes in a test), and this
object turns it into what parsers such as `tifffile` expect. Every read counts
against a budget of bytes and calls: a hostile header (a tile table of 2^32
entries, an IFD chain that never ends) stops with `BudgetExceeded` instead of
reading a file for minutes or filling memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable

Fetcher = Callable[[int, int], bytes]
"""`fetch(start, end)`: the bytes of `[start, end)`, fewer only at the end of the file (fsspec's convention)."""

MAX_READ_BYTES = 64 << 20
"""Structure bytes a reader may read from one file: a 64k x 64k texture's tile tables are 16 MiB."""

MAX_READ_CALLS = 4096
"""Fetches a reader may make on one file: each is a round trip on a gateway mount."""

BUFFER = 64 << 10
"""Reads are buffered this much: a TIFF directory is read in one fetch rather than tag by tag."""


class BudgetExceeded(Exception):
    """A reader would read more of a file than any sane header needs."""


class FetchFile(io.RawIOBase):
    """A read-only, seekable raw file of `size` bytes whose reads go to `fetch`."""

    def __init__(self, fetch: Fetcher, size: int, max_bytes: int = MAX_READ_BYTES,
                 max_calls: int = MAX_READ_CALLS) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._left = max_bytes
        self._calls = max_calls
        self.name = "<fetched>"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the file")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        self._calls -= 1
        self._left -= want
        if self._calls < 0 or self._left < 0:
            raise BudgetExceeded("structure larger than any sane header (read budget spent)")
        data = self._fetch(self._pos, self._pos + want)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


def open_buffered(fetch: Fetcher, size: int, max_bytes: int = MAX_READ_BYTES) -> io.BufferedReader:
    return io.BufferedReader(FetchFile(fetch, size, max_bytes), BUFFER)


def read_exact(fetch: Fetcher, start: int, end: int) -> bytes:
    """`[start, end)` or a short read: an error the caller turns into a fallback."""
    data = fetch(start, end)
    if len(data) != end - start:
        raise EOFError(f"file ends before byte {end}")
    return data
