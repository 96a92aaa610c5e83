"""Path patterns: the frame and tile tokens of VFX file names, parsed once.

Frame tokens (anywhere in the path, so per-frame folders work too):

    ####  @@@@      one `#` or `@` per digit: `####` pads to 4, `#` is unpadded
    %04d  %d        printf style (Nuke writes `####` back as `%04d`)
    $F  $F4  ${F4}  Houdini: `$F` unpadded, `$F4` padded to 4; like Houdini, `$F` followed
                    by a letter, digit or `_` is another variable (`$FF`, `$F4_v2`): write `${F4}_v2`

`#` counts one digit each, as in Nuke, fileseq's HASH1 style and most file
browsers. Some tools (Deadline's job files, older Maya and Shake) read a single
`#` as four digits: write `####` or `%04d` in manifests to mean the same thing
everywhere. Negative frames follow printf, Nuke and fileseq: the sign counts in
the width, so frame -10 padded to 4 is `-010`.

Tile tokens (file name only: the folder that holds the tiles is listed once):

    <UDIM>  %(UDIM)d        Mari UDIM, 1001 + u + 10 v; four digits 1001-1999
                            (Nuke's rule: u < 10, at most 100 rows)
    <UVTILE>  %(UVTILE)d    Mudbox, 1-based: `u1_v1` is the first tile
    <U>  <V>  %(U)d %(V)d   the same numbers apart: `_u<U>_v<V>`
    <uvtile>  <u>  <v>      ZBrush, 0-based: `u0_v0` is the first tile (OIIO's spelling)
    _MAPID_                 RenderMan atlas: `_` then a UDIM or a `uN_vN` tile,
                            whichever the shader's atlas style writes

A name such as `u0_v0` is only a ZBrush tile (Mudbox starts at 1); `u1_v1` is the
first Mudbox tile or the second ZBrush one, which is why the pattern, not the file
name, says which convention applies. ZBrush's own `u#_v#` spelling is not
accepted: `#` is a frame digit.

There is no escape syntax, as in the tools above; `PathPattern.literal` makes a
pattern of a path whose `#` or `$F` are really part of its name.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Final

_TOKEN = re.compile(r"""
    (?P<udim><UDIM>|%\(UDIM\)d)
  | (?P<uvtile1><UVTILE>|%\(UVTILE\)d)
  | (?P<uvtile0><uvtile>)
  | (?P<u1><U>|%\(U\)d)
  | (?P<v1><V>|%\(V\)d)
  | (?P<u0><u>)
  | (?P<v0><v>)
  | (?P<mapid>_MAPID_)
  | (?P<hashes>\#+|@+)
  | %(?:0(?P<printf>[1-9][0-9]?))?d
  | \$\{F(?P<hbrace>[1-9]?)\}
  | \$F(?P<houdini>[1-9]?)(?![A-Za-z0-9_])
""", re.VERBOSE)

_UDIM = r"1(?!000)\d{3}"
_ONE_BASED = r"[1-9]\d*"
_ZERO_BASED = r"(?:0|[1-9]\d*)"
_TILE_RE: Final = {
    "udim": f"({_UDIM})",
    "uvtile1": f"(u{_ONE_BASED}_v{_ONE_BASED})",
    "uvtile0": f"(u{_ZERO_BASED}_v{_ZERO_BASED})",
    "u1": f"({_ONE_BASED})",
    "v1": f"({_ONE_BASED})",
    "u0": f"({_ZERO_BASED})",
    "v0": f"({_ZERO_BASED})",
    "mapid": f"_({_UDIM}|u{_ZERO_BASED}_v{_ZERO_BASED})",
}
_STYLE: Final = {"udim": "UDIM", "uvtile1": "Mudbox", "u1": "Mudbox", "v1": "Mudbox",
                 "uvtile0": "ZBrush", "u0": "ZBrush", "v0": "ZBrush", "mapid": "atlas"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a pattern: `kind` is `frame` or a tile kind; `width` pads frames."""

    kind: str
    text: str
    width: int = 1


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """What a concrete path told about a pattern: its frame and its tile (`1001`, `u1_v1`)."""

    frame: int | None
    tile: str | None


def _tokenize(text: str) -> tuple[str | Token, ...]:
    parts: list[str | Token] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        pos = m.end()
        kind = m.lastgroup
        if kind in _TILE_RE:
            parts.append(Token(kind, m[0]))
        elif kind == "hashes":
            parts.append(Token("frame", m[0], len(m[0])))
        else:
            digits = m[kind] if kind else None
            parts.append(Token("frame", m[0], int(digits) if digits else 1))
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def _check(parts: tuple[str | Token, ...], text: str) -> None:
    """Refuse what no directory listing can resolve, with the reason."""
    tiles = [p for p in parts if isinstance(p, Token) and p.kind != "frame"]
    if not tiles:
        return
    styles = {_STYLE[t.kind] for t in tiles}
    if len(styles) > 1:
        raise ValueError(f"{text!r}: mixes tile styles ({', '.join(sorted(styles))})")
    kinds = {t.kind for t in tiles}
    if kinds & {"uvtile1", "uvtile0"} and kinds - {"uvtile1", "uvtile0"}:
        raise ValueError(f"{text!r}: use either <UVTILE> or <U>/<V>, not both")
    seen_slash = False
    for part in reversed(parts):
        if isinstance(part, str):
            seen_slash = seen_slash or "/" in part
        elif part.kind != "frame" and seen_slash:
            raise ValueError(f"{text!r}: tile tokens must be in the file name, not in a folder")


class PathPattern:
    """A path with frame and tile tokens, parsed once, expanded many times.

    Equal patterns have equal `text` and tokens. `for_frame` is cheap (no
    re-parsing) because a job expands every pattern once per frame.
    """

    __slots__ = ("_format", "_parts", "_regexes", "text")
    text: str
    _parts: tuple[str | Token, ...]
    _regexes: dict[bool, re.Pattern[str]]
    _format: str | None

    def __init__(self, text: str) -> None:
        parts = _tokenize(text)
        _check(parts, text)
        self._init(text, parts)

    def _init(self, text: str, parts: tuple[str | Token, ...]) -> None:
        self.text = text
        self._parts = parts
        self._regexes = {}
        self._format = None if any(isinstance(p, Token) and p.kind != "frame" for p in parts) else "".join(
            p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{0:0{p.width}d}}" for p in parts)

    @classmethod
    def literal(cls, text: str) -> PathPattern:
        """A pattern without tokens, for a path whose `#`, `@` or `$F` are plain characters."""
        return cls._from_parts((text,) if text else ())

    @classmethod
    def _from_parts(cls, parts: tuple[str | Token, ...]) -> PathPattern:
        merged: list[str | Token] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        pattern = cls.__new__(cls)
        pattern._init("".join(p if isinstance(p, str) else p.text for p in merged), tuple(merged))
        return pattern

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathPattern) and self._parts == other._parts

    def __hash__(self) -> int:
        return hash(self._parts)

    def __repr__(self) -> str:
        return f"PathPattern({self.text!r})"

    def __str__(self) -> str:
        return self.text

    @property
    def tokens(self) -> tuple[Token, ...]:
        return tuple(p for p in self._parts if isinstance(p, Token))

    @property
    def has_frame(self) -> bool:
        return any(isinstance(p, Token) and p.kind == "frame" for p in self._parts)

    @property
    def has_tile(self) -> bool:
        return any(isinstance(p, Token) and p.kind != "frame" for p in self._parts)

    @property
    def is_literal(self) -> bool:
        return not any(isinstance(p, Token) for p in self._parts)

    @property
    def frame_in_directory(self) -> bool:
        """Per-frame folders (`/r/####/beauty.exr`): no single folder holds every frame."""
        return any(isinstance(p, Token) and p.kind == "frame" for p in self._dir_parts())

    @property
    def directory(self) -> str:
        """The folder to list for tiles or frames; only defined once no frame token is left in it."""
        if self.frame_in_directory:
            raise ValueError(f"{self.text!r}: the folder has frame tokens; expand a frame first")
        return posixpath.dirname(self.text)

    def _dir_parts(self) -> tuple[str | Token, ...]:
        for i in range(len(self._parts) - 1, -1, -1):
            part = self._parts[i]
            if isinstance(part, str) and "/" in part:
                return (*self._parts[:i], part[:part.rindex("/")])
        return ()

    def _name_parts(self) -> tuple[str | Token, ...]:
        for i in range(len(self._parts) - 1, -1, -1):
            part = self._parts[i]
            if isinstance(part, str) and "/" in part:
                return (part[part.rindex("/") + 1:], *self._parts[i + 1:])
        return self._parts

    def for_frame(self, frame: int) -> PathPattern:
        """This pattern with its frame tokens written out for `frame`; tile tokens stay."""
        if not self.has_frame:
            return self
        return PathPattern._from_parts(tuple(
            f"{frame:0{p.width}d}" if isinstance(p, Token) and p.kind == "frame" else p
            for p in self._parts))

    def expand(self, frame: int | None = None) -> str:
        """The concrete path for `frame`; a pattern with tile tokens has no single path."""
        if self._format is None:
            raise ValueError(f"{self.text!r} has tile tokens: list its folder to find the tiles")
        if frame is None and self.has_frame:
            raise ValueError(f"{self.text!r} has frame tokens: a frame is needed")
        return self._format.format(frame)

    def regex(self, name_only: bool = False) -> re.Pattern[str]:
        """Matches the concrete paths (or file names) of this pattern; tile parts only valid tiles."""
        cached = self._regexes.get(name_only)
        if cached is None:
            cached = self._regexes[name_only] = re.compile(
                self._build_regex(self._name_parts() if name_only else self._parts))
        return cached

    @staticmethod
    def _build_regex(parts: tuple[str | Token, ...]) -> str:
        out: list[str] = []
        seen: set[str] = set()
        for i, p in enumerate(parts):
            if isinstance(p, str):
                out.append(re.escape(p))
            elif p.kind == "frame":
                out.append(f"(?P<f{i}>-?\\d+)")
            elif p.kind in seen:
                out.append(f"(?P={p.kind})")
            else:
                seen.add(p.kind)
                out.append(_TILE_RE[p.kind].replace("(", f"(?P<{p.kind}>", 1))
        return "".join(out)

    def match(self, path_or_name: str) -> PatternMatch | None:
        """The frame and tile of a concrete path, or of a bare file name in `directory`.

        None unless every frame token reads the same frame, written exactly as
        `for_frame` would write it, and every tile token reads a valid tile.
        """
        name_only = "/" not in path_or_name
        m = self.regex(name_only).fullmatch(path_or_name)
        if m is None:
            return None
        frame: int | None = None
        parts = self._name_parts() if name_only else self._parts
        for i, p in enumerate(parts):
            if isinstance(p, Token) and p.kind == "frame":
                text = m[f"f{i}"]
                value = int(text)
                if f"{value:0{p.width}d}" != text or (frame is not None and value != frame):
                    return None
                frame = value
        return PatternMatch(frame, _tile_id(m.groupdict()))


def _tile_id(groups: dict[str, str | None]) -> str | None:
    for kind in ("udim", "uvtile1", "uvtile0", "mapid"):
        if groups.get(kind) is not None:
            return groups[kind]
    u = groups.get("u1") or groups.get("u0")
    v = groups.get("v1") or groups.get("v0")
    if u is None and v is None:
        return None
    return "_".join(s for s in (f"u{u}" if u is not None else "", f"v{v}" if v is not None else "") if s)
