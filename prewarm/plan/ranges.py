"""Range algebra on one file's byte spans. Pure: values in, values out.

A *span list* is a list of half-open `(start, end)` int tuples. Functions that
return span lists return them *normal*: sorted, non-empty, non-overlapping and
non-touching. Inputs may be in any order and may overlap unless said otherwise.

Tuples rather than `ByteRange` objects because the planner holds millions of spans
per job; `ByteRange` is what leaves the planner.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

Span = tuple[int, int]


def normalize(spans: Iterable[Span], gap: int = 0) -> list[Span]:
    """Sort and merge spans; spans separated by at most `gap` bytes are joined too."""
    out: list[Span] = []
    lo = hi = 0
    held = False
    for start, end in sorted(spans):  # the planner's hottest loop: one tuple per merged span, not per input
        if end <= start:
            continue
        if held and start <= hi + gap:
            if end > hi:
                hi = end
        else:
            if held:
                out.append((lo, hi))
            lo, hi, held = start, end, True
    if held:
        out.append((lo, hi))
    return out


def total(spans: Iterable[Span]) -> int:
    """Bytes covered, counting overlaps once."""
    return sum(e - s for s, e in normalize(spans))


def clip(spans: Iterable[Span], size: int) -> list[Span]:
    """Keep only what lies inside `[0, size)`."""
    return normalize((max(0, s), min(e, size)) for s, e in spans)


def widen(spans: list[Span], by: int, size: int) -> list[Span]:
    """`clip` of a *normal* list with every span grown by `by` bytes each side, in one linear
    pass (growing keeps a normal list sorted; only neighbours can come to touch)."""
    out: list[Span] = []
    for s, e in spans:
        s, e = max(0, s - by), min(e + by, size)
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def clip_normal(spans: list[Span], size: int) -> list[Span]:
    """`clip` of a *normal* list of non-negative spans, without sorting it again: the planner
    clips every training frame's spans of every file to the file's size, mostly a no-op."""
    if not spans or spans[-1][1] <= size:
        return list(spans)
    out = spans[:bisect_left(spans, (size, size))]
    if out and out[-1][1] > size:
        out[-1] = (out[-1][0], size)
    return out


def union(*lists: Iterable[Span]) -> list[Span]:
    return normalize(s for lst in lists for s in lst)


def intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """Overlap of two *normal* span lists, in one linear pass."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: list[Span], b: list[Span]) -> list[Span]:
    """What of normal list `a` is not covered by normal list `b`."""
    out: list[Span] = []
    j = 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def from_flat(flat: list[object]) -> list[Span] | None:
    """The normal span list a flat `[start, end, start, end, ...]` list stands for, or None when
    it is not one (empty, odd, negative, not strictly increasing, anything but ints): how stored
    profiles keep spans, checked in one compiled pass because a plan reads hundreds of thousands."""
    n = len(flat)
    if n == 0 or n % 2:
        return None
    out: list[Span] = []
    prev = -1
    for i in range(0, n, 2):
        s, e = flat[i], flat[i + 1]
        if type(s) is not int or type(e) is not int or not prev < s < e:
            return None
        out.append((s, e))
        prev = e
    return out


def covered_by(lists: Iterable[list[Span]], need: int) -> list[Span]:
    """What at least `need` of the *normal* lists cover (a sweep over their boundaries): the
    spans most of a file's frames read. Here rather than with the predictor so that it is
    compiled with the rest of the algebra (`make native`)."""
    events: list[int] = []  # 2*pos, +1 for a start: ints sort several times faster than tuples
    for spans in lists:
        for s, e in spans:
            events.append(2 * s + 1)
            events.append(2 * e)
    events.sort()  # at one position, ends before starts: touching spans do not overlap
    out: list[Span] = []
    depth = 0
    start = 0
    for ev in events:
        pos = ev >> 1
        before = depth
        depth += 1 if ev & 1 else -1
        if before < need <= depth:
            start = pos
        elif depth < need <= before and pos > start:
            out.append((start, pos))
    return normalize(out)


def covered(spans: list[Span], start: int, end: int) -> int:
    """Bytes of `[start, end)` covered by normal list `spans` (binary search, no copy)."""
    i = max(bisect_right(spans, (start, start)) - 1, 0)
    got = 0
    while i < len(spans) and spans[i][0] < end:
        s, e = spans[i]
        lo, hi = max(s, start), min(e, end)
        if hi > lo:
            got += hi - lo
        i += 1
    return got


def split(spans: Iterable[Span], max_len: int) -> list[Span]:
    """Cut spans into pieces of at most `max_len` bytes (granule-sized reads)."""
    out: list[Span] = []
    for s, e in spans:
        while s < e:
            out.append((s, min(e, s + max_len)))
            s += max_len
    return out


class SpanAccumulator:
    """Collects spans from a stream with bounded memory.

    Renderers read mostly forward in small calls, so a read that starts where the
    previous one ended extends it in place; other spans are buffered and merged
    when the buffer doubles, which keeps memory proportional to the *distinct*
    regions read rather than to the number of calls.
    """

    __slots__ = ("_limit", "_spans")

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._limit = 64

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        spans = self._spans
        if spans:
            ls, le = spans[-1]
            if ls <= start <= le:
                if end > le:
                    spans[-1] = (ls, end)
                return
        spans.append((start, end))
        if len(spans) >= self._limit:
            self._spans = normalize(spans)
            self._limit = max(64, 2 * len(self._spans))

    def spans(self) -> list[Span]:
        """The normal span list of everything added so far."""
        self._spans = normalize(self._spans)
        return list(self._spans)


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """A half-open byte range `[offset, offset + length)` of one file."""

    path: str
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length
