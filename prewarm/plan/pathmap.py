"""Prefix mapping between the three names one file has.

A studio file is known by its *studio path* (what manifests and plans say,
`/studio/proj/...`), by *aliases* under which other hosts recorded it in traces
(an on-prem render node mounting the filer at `/net/filer01/proj`), and by the
*local path* under which this machine reaches it (the gateway mount on a cloud
worker, `/mnt/gateway/proj`). Plans always carry studio paths; traces are mapped
to studio paths on import; files are touched only through local paths.

Matching is by whole path components and the longest prefix wins, so
`/studio/proj` never captures `/studio/project2`.

Windows workstations name studio files by drive letter or UNC share (`W:\\proj\\...`,
`\\\\filer01\\proj\\...`, also written with `/`). Such prefixes are aliases like any other
(`aliases: ["W:/proj", "\\\\filer01\\proj"]`) and match as Windows does: either slash,
any case.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prewarm.errors import ConfigError

_WINDOWS = re.compile(r"[A-Za-z]:[\\/]|[\\/]{2}[^\\/]")


def is_windows(path: str) -> bool:
    """A drive-letter (`W:/`, `W:\\`) or UNC (`\\\\host\\share`, `//host/share`) path."""
    return _WINDOWS.match(path) is not None


def _clean(prefix: str) -> str:
    p = prefix.replace("\\", "/")
    return p.rstrip("/") or "/"


def _swap(path: str, old: str, new: str) -> str | None:
    """`path` with prefix `old` replaced by `new`, or None if `old` is not a prefix."""
    if old == "/":
        return posixpath.join(new, path.lstrip("/")) if path.startswith("/") else None
    if path == old:
        return new
    if path.startswith(old) and path[len(old)] == "/":
        return new.rstrip("/") + path[len(old):]
    return None


@dataclass(frozen=True)
class Prefix:
    """One studio prefix with its aliases and its local path."""

    studio: str
    aliases: tuple[str, ...] = ()
    local: str | None = None


@dataclass(frozen=True)
class PathMap:
    entries: tuple[Prefix, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, items: Iterable[object], where: str) -> PathMap:
        """Build from config/manifest data: a list of `{studio, aliases?, local?}` mappings.

        `where` names the file and field for error messages.
        """
        entries = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ConfigError(f"{where}[{i}]", "expected a mapping with 'studio' and 'local' or 'aliases'")
            studio = item.get("studio")
            if not isinstance(studio, str) or not studio.startswith("/"):
                raise ConfigError(f"{where}[{i}].studio", "must be an absolute path")
            aliases = item.get("aliases", [])
            if isinstance(aliases, str):
                aliases = [aliases]
            if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
                raise ConfigError(f"{where}[{i}].aliases", "must be a list of path prefixes")
            local = item.get("local")
            if local is not None and (not isinstance(local, str) or not local):
                raise ConfigError(f"{where}[{i}].local", "must be a path")
            unknown = set(item) - {"studio", "aliases", "local"}
            if unknown:
                raise ConfigError(f"{where}[{i}]", f"unknown key(s): {', '.join(sorted(map(str, unknown)))}")
            entries.append(Prefix(_clean(studio), tuple(_clean(a) for a in aliases),
                                    _clean(local) if local else None))
        return cls(tuple(entries))

    def merged(self, other: PathMap) -> PathMap:
        """`other`'s entries take precedence (e.g. the command line over the manifest)."""
        return PathMap(other.entries + self.entries)

    def to_studio(self, path: str) -> str:
        """A path seen in a trace or a farm's job (an alias or a local path) as its studio path."""
        if (path[:1] != "/" or path[1:2] == "/") and is_windows(path):
            return self._windows_to_studio(path)
        best: tuple[int, str] | None = None
        for m in self.entries:
            for prefix in (*m.aliases, *((m.local,) if m.local else ())):
                mapped = _swap(path, prefix, m.studio)
                if mapped is not None and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), mapped)
        return best[1] if best else path

    def _windows_to_studio(self, path: str) -> str:
        """Windows prefixes match with either slash and in any case; the rest keeps its spelling."""
        slashed = path.replace("\\", "/")
        folded = slashed.casefold()
        best: tuple[int, str] | None = None
        for m in self.entries:
            for prefix in m.aliases:
                if not is_windows(prefix + "/"):
                    continue
                mapped = _swap(folded, prefix.casefold(), m.studio)
                if mapped is not None and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), m.studio.rstrip("/") + slashed[len(prefix):])
        return best[1] if best else path

    def to_local(self, path: str) -> str:
        """Where this machine reaches a studio path (identity when no mapping applies)."""
        best: tuple[int, str] | None = None
        for m in self.entries:
            if m.local is None:
                continue
            mapped = _swap(path, m.studio, m.local)
            if mapped is not None and (best is None or len(m.studio) > best[0]):
                best = (len(m.studio), mapped)
        return best[1] if best else path

    def to_json(self) -> list[dict[str, object]]:
        return [{"studio": m.studio, "aliases": list(m.aliases), "local": m.local} for m in self.entries]


def parse_pair(text: str, flag: str) -> tuple[str, str]:
    """`A=B` from a command-line flag such as `--local /studio=/mnt/gw`."""
    a, sep, b = text.partition("=")
    if not sep or not (a.startswith("/") or is_windows(a + "/")) or not b:
        raise ConfigError(flag, f"expected ABSOLUTE_PREFIX=PATH, got {text!r}")
    return a, b
