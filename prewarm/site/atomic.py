"""Write a file whole or not at all: a plan or report half-written is worse than none."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

from prewarm.errors import ConfigError


def write_text(path: str, text: str | Iterable[str], where: str) -> None:
    """Replace `path` atomically with `text` (or its pieces, written as they come); `where`
    (the flag that named it) leads any error.

    A target that exists and is not a regular file (`/dev/null`, a FIFO) is written
    in place: replacing it would swap a device node for a file.
    """
    try:
        if os.path.exists(path) and not os.path.isfile(path):
            with open(path, "w", encoding="utf-8") as fh:
                fh.writelines((text,) if isinstance(text, str) else text)
            return
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".prewarm-", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(where, f"cannot write {path}: {exc.strerror or type(exc).__name__}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines((text,) if isinstance(text, str) else text)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise ConfigError(where, f"cannot write {path}: {exc.strerror or type(exc).__name__}") from exc
    except BaseException:
        os.unlink(tmp)
        raise
