"""A site reader that notes the warm's first read, for tests and benches.

`bench/warm.py` times the first read after the warm's start (`first`); tests gate work
on it (`read`, an event). One wrapper serves both, so what the bench measures is what the
tests hold the engine to.
"""

from __future__ import annotations

import threading
import time
from array import array

from prewarm.warm.reader import OpenFile, Reader

__all__ = ["FirstRead"]


class FirstRead:
    """Delegates to `inner`; the first read issued through any file it opened sets `first` (monotonic
    seconds) and `read`."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.first: float | None = None
        self.read = threading.Event()
        self._lock = threading.Lock()

    def refusal(self, path: str) -> str | None:
        return self.inner.refusal(path)

    def prepare(self, path: str) -> None:
        self.inner.prepare(path)

    def stat(self, path: str) -> None:
        self.inner.stat(path)

    def listdir(self, path: str) -> int:
        return self.inner.listdir(path)

    def note(self) -> None:
        """A read is about to be issued: the first one sets `first` and `read`."""
        if not self.read.is_set():
            with self._lock:
                if self.first is None:
                    self.first = time.monotonic()
                    self.read.set()

    def open(self, path: str) -> OpenFile:
        handle = self.inner.open(path)
        if self.read.is_set():
            return handle
        outer = self

        class Noting:
            size, mtime, regular = handle.size, handle.mtime, handle.regular

            def read(self, offset: int, length: int) -> int:
                outer.note()
                return handle.read(offset, length)

            def read_many(self, offsets: array[int], lengths: array[int], positions: array[int], lo: int, hi: int,
                          short: list[tuple[int, int]]) -> int:
                outer.note()
                return handle.read_many(offsets, lengths, positions, lo, hi, short)

            def identity(self) -> tuple[int, float]:
                return handle.identity()

            def close(self) -> None:
                handle.close()

        return Noting()
