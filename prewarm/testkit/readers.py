"""A site reader that notes the warm's first read, for tests and benches.

`bench/warm.py` times the first read after the warm's start (`first`); tests gate work
on it (`read`, an event). One wrapper serves both, so what the bench measures is what the
tests hold the engine to.
"""

from __future__ import annotations

import threading
import time

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

    def stat(self, path: str) -> None:
        self.inner.stat(path)

    def listdir(self, path: str) -> int:
        return self.inner.listdir(path)

    def open(self, path: str) -> OpenFile:
        handle = self.inner.open(path)
        if self.read.is_set():
            return handle
        outer = self

        class Noting:
            size, mtime, regular = handle.size, handle.mtime, handle.regular

            def read(self, offset: int, length: int) -> int:
                if not outer.read.is_set():
                    with outer._lock:
                        if outer.first is None:
                            outer.first = time.monotonic()
                            outer.read.set()
                return handle.read(offset, length)

            def identity(self) -> tuple[int, float]:
                return handle.identity()

            def close(self) -> None:
                handle.close()

        return Noting()
