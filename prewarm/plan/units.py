"""The one grammar of sizes and rates, for manifests, settings, flags and the twin.

    1048576   500MB   1.5 TiB   20GiB   4096 B   1e6        sizes (bytes)
    50MB/s    400MiB/s   1e6    off                          rates (bytes per second)

`KB`/`MB`/`GB`/`TB` are powers of 1000 (as link and disk specs are written),
`KiB`/`MiB`/`GiB`/`TiB` powers of 1024; case does not matter. A bare letter (`100k`,
`20G`) is refused: it means 1000 to some tools and 1024 to others, and a budget or a
rate off by 7% is a silent mistake. A rate is a size with an optional `/s`; `off`,
`none`, `unlimited` and `0` mean no cap.
"""

from __future__ import annotations

import re

from prewarm.errors import InputError, ManifestError

_SIZE = re.compile(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_NO_CAP = ("off", "none", "unlimited", "0")

MAX_SIZE = 1 << 62
"""Larger than any file or budget, and the largest offset a plan may hold."""


def parse_size(value: object, where: str, field: str, error: type[InputError] = ManifestError) -> int:
    """Bytes (> 0) from an integer or a size such as `20GiB`; `error` is the class raised, naming `where`."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and len(value) <= 64 and (m := _SIZE.fullmatch(value.strip())):
        number = float(m[1]) * _UNITS[(m[2] or "B").lower()]
        size = int(number) if number < MAX_SIZE else MAX_SIZE + 1  # 1e400 is inf, and int(inf) raises
    else:
        raise error(where, f"{field}: expected a size such as 20GiB, 500MB or 1048576, got {str(value)[:40]!r}")
    if size <= 0:
        raise error(where, f"{field}: must be more than 0 bytes, got {value!r}")
    if size > MAX_SIZE:
        raise error(where, f"{field}: more than {MAX_SIZE:,} bytes (4 EiB): a mistake, not a size")
    return size


def size_text(n: int) -> str:
    """A size as `parse_size` reads it back exactly (`4KiB`, `256MiB`, `1000`): for help texts
    that show the default a flag or setting starts from."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n and n % _UNITS[unit.lower()] == 0:
            return f"{n // _UNITS[unit.lower()]}{unit}"
    return str(n)


def parse_rate(text: str, where: str, field: str = "rate", error: type[InputError] = ManifestError) -> int | None:
    """Bytes per second from `50MB/s`, `400MiB/s` or `1e6`; None for `off` (no cap)."""
    t = text.strip()
    if t.lower() in _NO_CAP:
        return None
    if t.lower().endswith("/s"):
        t = t[:-2]
    if not _SIZE.fullmatch(t.strip()):
        raise error(where, f"{field}: expected a rate such as 50MB/s, 400MiB/s or off, got {text!r}")
    return parse_size(t, where, field, error)
