"""Files no trace read (`plan/predict.py` describes the model): whole up to `unseen_cap` and last,
or head and tail beyond it; a structured file by its levels, coarse ones early; a tile of a tile
set none of whose traced frames read it while a sibling was read (`unread_tile`), no finer than
the siblings were read, and only for frames beyond the traced ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.prediction import Candidate, Lookup, Prediction, PredictResult, Structures
from prewarm.plan.ranges import normalize, total
from prewarm.plan.records import Reason
from prewarm.plan.structure import Structure
from prewarm.plan.texture import META_TIER, spacing, whole_by_tier


def by_levels(path: str, st: Structure, frames: Iterable[int], reason: Reason, opts: PredictOptions,
               finest: int | None = None) -> Iterator[Prediction]:
    """A texture no usable trace says anything about: header and tables, then levels coarse before
    fine up to `unseen_cap` (and no finer than `finest` pixels, when given); levels finer than
    `unseen_coarse` last."""
    room = opts.unseen_cap
    frames = tuple(frames)
    for tier, spans in whole_by_tier(st):
        room -= total(spans)
        if tier != META_TIER and (room < 0 or (finest is not None and tier > finest)):
            break  # coarse levels fit the cap (and the finest asked for), finer ones do not
        yield Prediction(path, frames, spans, reason, tier, last=tier > opts.unseen_coarse)


def _candidate_frames(c: Candidate, all_frames: tuple[int, ...], job_set: set[int]) -> tuple[int, ...]:
    """The job frames that may read a candidate; `all_frames` is shared, not copied, per file."""
    if c.frame is not None:
        return (c.frame,) if c.frame in job_set else ()
    if c.frames is not None:
        reading = set(c.frames)
        return tuple(f for f in all_frames if f in reading)
    return all_frames


def _unread_siblings(candidates: list[Candidate], ts: TraceSet, structure: Structures) -> dict[str, int | None]:
    """Tiles of a tile set that no traced frame read while a sibling was: the traced shots did not
    look at them, so they are the least sure (and a budget drops them first). With each, the finest
    level to plan: the coarsest level each traced frame read of its set's tiles, the finest of those
    over the frames. A frame turning to an unread tile sees it at the edge of its view, sampled as the
    siblings' far areas are (their coarsest level read), not as their centre (shot300's truck: 6.4 MiB
    of unread tiles at the siblings' finest level, 1.85 at this one, no frame reading them)."""
    finest: dict[int, int] = {}
    for c in candidates:
        if c.tile_set is None or c.path not in ts.reads:
            continue
        st = structure(c.path)
        finest.setdefault(c.tile_set, 0)
        if st is not None:
            for spans in ts.reads[c.path].values():
                read = [st.levels[t[0]].resolution for t in st.tiles_read(spans)[0]]
                if read:
                    finest[c.tile_set] = max(finest[c.tile_set], min(read))
    out: dict[str, int | None] = {}
    for c in candidates:
        if c.tile_set is not None and c.tile_set in finest and c.path not in ts.reads and not c.whole:
            out[c.path] = finest[c.tile_set] or None
    return out


def _away(train: list[int], job_frames: list[int]) -> set[int]:
    """Job frames further beyond the traced frames than their spacing: the camera may have turned
    to a texture tile the traced frames did not read. Between traced frames, and next to them, the
    frames read the tiles the traced ones read (the push-in hedge's rule, `texture.predict_tiles`)."""
    if not train:
        return set(job_frames)
    gap = spacing(train)
    return {f for f in job_frames if f < train[0] - gap or f > train[-1] + gap}


def predict_unseen(candidates: list[Candidate], job_frames: list[int], ts: TraceSet, lookup: Lookup,
                    structure: Structures, opts: PredictOptions, result: PredictResult,
                    explained: set[str]) -> None:
    """Inputs no trace read: whole (up to the cap) and last; a texture by its levels, coarse ones early."""
    job_set = set(job_frames)
    all_frames = tuple(job_frames)  # one tuple shared by every file all frames read
    unread_tiles = _unread_siblings(candidates, ts, structure)
    away = _away(sorted(ts.frames), job_frames)
    unseen = structured = 0
    for c in candidates:
        if c.path in explained and not c.whole:
            continue
        frames = _candidate_frames(c, all_frames, job_set)
        info = lookup(c.path)
        if not frames or info is None or info.size == 0:
            continue
        explained.add(c.path)
        if c.whole:
            result.predictions.append(Prediction(c.path, frames, [(0, info.size)], Reason.WHOLE))
            continue
        unseen += 1
        sibling = c.path in unread_tiles
        reason = Reason.UNREAD_TILE if sibling else Reason.FALLBACK
        st = structure(c.path)
        if st is not None:
            structured += 1
            if sibling:
                frames = tuple(f for f in frames if f in away)
            if frames:
                result.predictions.extend(by_levels(c.path, st, frames, reason, opts, unread_tiles.get(c.path)))
            continue
        if info.size <= opts.unseen_cap:
            spans = [(0, info.size)]
        else:
            spans = normalize([(0, opts.probe), (info.size - opts.probe, info.size)])
        result.predictions.append(Prediction(c.path, frames, spans, reason, last=True))
    result.stats.unseen_files = unseen
    result.stats.unseen_tiled_files = structured
    result.stats.unread_tiles = len(unread_tiles)
