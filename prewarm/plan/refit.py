"""Re-published files (`plan/predict.py` describes the model): a traced structured file's reads
made to fit the file as it is now (`_refit`: by the identity its traces were filed with, or the
size their stat calls returned), or found not to fit it (`_misfit`). A finding either way: a
traced file is never dropped, nor moved, in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prewarm.plan.prediction import PredictResult
from prewarm.plan.ranges import Span, normalize
from prewarm.plan.structure import Filed, Structure


@dataclass(frozen=True, slots=True)
class _Refit:
    """A structured file's traced reads made to fit the file as it is now (`_refit`)."""

    reads: Mapping[int, list[Span]]
    lost: str | None = None
    """Why the traced tiles mean nothing in the file now (other levels or tile sizes)."""
    note: str | None = None
    """The finding when the reads were mapped, or their identity is unknown."""
    moved: int = 0
    unknown: int = 0


def _refit(st: Structure | None, per: Mapping[int, list[Span]], filed: Mapping[int, Filed] | None,
           size: int, stat_sizes: Mapping[int, int] | None = None) -> _Refit:
    """The traced reads of a structured file, at the offsets of the file as it is now.

    From the trace store (`filed` is not None), each frame's reads were filed in tiles with the
    file's identity then. Same digest: the traced offsets hold. Another digest of the same shape
    (a re-published texture: another compression, a colour tweak): its tiles are the same tiles at
    new offsets, read with the new header and tables. Another shape (other levels or tile sizes):
    the tiles mean nothing here (`lost`). A frame filed with no identity (an older prewarm) keeps its
    byte offsets, said once per file. A file structured when filed whose structure cannot be read now
    (`st` None) and whose size changed is `lost` too: the byte model plans it, with a finding.
    Raw traces carry no identity, only the sizes their stat calls returned (`stat_sizes`, by frame):
    another size now says the file changed (`lost`, as another shape), else their reads as they are."""
    if filed is None:
        stated = set((stat_sizes or {}).values())
        if stated and stated != {size}:
            return _Refit(per, f"{max(stated):,} bytes when traced (its traced stat), {size:,} now")
        return _Refit(per)
    if st is None:  # structured when filed, unreadable now: if it changed, the byte model says so
        sizes = {v.identity.size for f, v in filed.items() if f in per}
        if sizes and sizes != {size}:
            return _Refit(per, f"its structure cannot be read now; {max(sizes):,} bytes when traced, {size:,} now")
        return _Refit(per)
    digest = st.digest()
    shape = st.shape()
    out = dict(per)
    moved = unknown = 0
    then = 0
    for f in per:
        v = filed.get(f)
        if v is None:
            unknown += 1
            continue
        if v.identity.digest == digest:
            continue
        if v.identity.shape != shape:
            return _Refit(per, f"re-published with other levels or tile sizes: {len(v.identity.shape)} levels "
                               f"of {v.identity.shape[0][2]}x{v.identity.shape[0][3]} tiles when traced, "
                               f"{len(shape)} of {shape[0][2]}x{shape[0][3]} now")
        out[f] = normalize([*st.meta, *(st.span(t) for t in v.tiles if st.has(t))])
        moved += 1
        then = v.identity.size
    if moved:
        note = (f"re-published since traced ({then:,} bytes then, {st.size:,} now): the tiles {moved} traced "
                f"frame(s) read mapped to its new offsets")
        return _Refit(out, None, note, moved, unknown)
    if unknown:
        return _Refit(per, None, "identity when traced unknown (filed by an older prewarm, or rebuilt from its "
                                 "raw trace): its traced offsets taken as they are", 0, unknown)
    return _Refit(per)


def fitted(path: str, st: Structure | None, per: Mapping[int, list[Span]], size: int,
            filed: Mapping[int, Filed] | None, result: PredictResult,
            stat_sizes: Mapping[int, int] | None = None) -> tuple[Mapping[int, list[Span]], bool]:
    """A traced file's reads as they fit the file now (`_refit`), and whether they do not (a finding
    either way: a traced file is never dropped, nor moved, in silence)."""
    refit = _refit(st, per, filed, size, stat_sizes)
    misfit = refit.lost or _misfit(st, refit.reads, size)
    if misfit:
        result.changed.append((path, f"changed since traced ({misfit}): "
                                     + ("planned by its levels, as never traced" if st else "planned by bytes")))
        return refit.reads, True
    if refit.note:
        result.changed.append((path, refit.note))
    result.stats.remapped_files += bool(refit.moved)
    result.stats.identity_unknown += bool(refit.unknown and not refit.moved)
    return refit.reads, False


MISFIT_SHARE = 0.25
"""Traced reads of a structured file starting inside its tiles, beyond this share of those that touch
tiles, say the file is not the one traced: a re-published texture, its tiles moved."""


def _misfit(st: Structure | None, per: Mapping[int, list[Span]], size: int) -> str | None:
    """Why the traced reads of a file do not fit the file as it is now, or None.

    Reads past its end say it shrank. A texture cache reads tiles from their start: reads
    starting inside the current tiles were made against another layout. Page-aligned starts
    (a reader going through 4 KiB buffers) are no evidence either way."""
    spans = {sp for frame in per.values() for sp in frame}
    if spans and max(e for _, e in spans) > size:
        return f"earlier renders read past its end, {size:,} bytes now"
    if st is None:
        return None
    inside = [s for s, _ in spans if st.inside_tile(s)]
    touching = sum(1 for sp in spans if st.tiles_read([sp])[0])
    if len(inside) >= 3 and len(inside) > MISFIT_SHARE * touching and any(s % 4096 for s in inside):
        return f"{len(inside):,} traced reads start inside its tiles"
    return None
