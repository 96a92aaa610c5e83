"""Which studio paths may be touched on this machine."""

from __future__ import annotations

import posixpath


def inside(path: str, roots: tuple[str, ...]) -> bool:
    """Whether a studio path lies under one of `roots` (whole components; no `..` tricks)."""
    path = path.rstrip("/") or "/"  # a directory may be written with a trailing slash
    if not path.startswith("/") or "\0" in path or posixpath.normpath(path) != path or ".." in path.split("/"):
        return False
    return any(r == "/" or path == r or path.startswith(r + "/") for r in roots)
