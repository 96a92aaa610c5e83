"""Predict which spans of which files each job frame will read. Pure (file sizes come
through an injected `lookup`).

`predict` chooses each file's model and gathers what the models predict; the models are
modules of their own: per-frame sequences in `plan/sequences.py`, shared files, their regions
and progressions (and structured ones in tile space) in `plan/shared.py`, files no trace read in
`plan/unseen.py`, re-published files in `plan/refit.py`; the options and knobs in
`plan/knobs.py`, what the predictor takes and gives in `plan/prediction.py`.

Models, chosen per file from what the training frames (frames with traces) did:

* **Per-frame files** (`cache.0042.bgeo` read by frame 42): a traced path holding a
  number within `max_delta` of the frame that read it is a candidate sequence; a
  sequence is accepted when several frames each read their own member (motion blur:
  frame F reading F+1's file is a sequence with delta +1) and the number follows the
  frame: frames read members relative to their own number, no member is read by most
  frames far from its number, and no file of a tile pattern (`<UDIM>`) is a member.
  Shots are numbered from 1001 like UDIM tiles: `diff.1001.tx` and `diff.1002.tx` read
  by frames 1001 and 1002 alike are a tile set. Another frame's member is
  predicted read the way members were: whole, or by spans anchored to the file's
  start and end (headers, offset tables, footers survive a different size).
* **Shared files** read by many frames: spans read by at least `common_share` of the
  frames reading the file are read by every frame (scene files, environment maps,
  the Alembic header). What remains is frame-specific: if its position moves
  linearly with the frame (an Alembic cache holding the whole shot) unseen frames'
  regions are extrapolated; otherwise an unseen frame borrows the frame-specific
  spans of its `neighbours` nearest training frames on each side (tiled textures:
  the tiles and MIP levels change slowly with the camera). `neighbours` is the knob
  that trades coverage for bytes.
* **Structured files** (a reader found levels and tiles: `.tx`, tiled EXR): predicted in
  tile space by `prewarm.plan.texture` (footprints grown by tiles, children one level
  finer on a push-in, coarser levels over every region), headers and tables first; far
  beyond the traced frames, levels finer still under the footprint's centre (reason
  `finer_far`), after everything the frames are known to read.
* **Regions of a shared cache** (an Alembic archive: a compact region per frame): a steady
  progression inside the sample data is extrapolated; a frame between two traced
  frames of ordered regions lies between them; anything else (repeats of a cycle,
  holds, regions out of frame order, a progression running off the data) cannot be
  placed, and gets the span of the sample data every region lies in.
* **Never seen** (no trace read the file, or there are no traces): warmed whole up to
  `unseen_cap`; larger files get their head and tail (where every format keeps its
  header, offset tables and footer). These come last in the plan. A structured file
  comes by its levels: header, tables and levels up to `unseen_coarse` early, finer
  levels last (within the cap, coarse first), so a budget drops the finest first.
  A tile of a tile set that no traced frame read while a sibling was read is planned
  the same way, with reason `unread_tile` (the shots looked elsewhere so far; a frame
  that turns to it reads its header and a few coarse tiles): no level finer than the
  coarsest each traced frame read its siblings at (the finest of those), only for frames
  beyond the traced ones by more than their spacing, and a budget drops it first.
* **Re-published files** (traces from the store, `TraceSet.filed`): a structured file whose
  digest changed since its traces were filed, at the same levels and tile sizes, is
  predicted from the traced tiles at its new offsets; other levels or tile sizes, or
  traced reads that do not fit the file (`_misfit`), or, from raw `--traces`, a size now
  other than their `fstat`/`statx` returned, plan it by its levels. Either way a finding
  says so: a traced file is never dropped in silence.
* **Occasional files** (a decal every 12th frame, a prop that enters): a file a frame's
  traced neighbours did not read is still planned for it, with the footprint the traced
  frames read (`occasional`), after everything the frame is known to read; not a file
  whose name holds the number of a frame that read it (that frame's own file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from prewarm.plan.aggregate import TraceSet
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.prediction import Candidate, Deferred, Lookup, PredictResult, Structures
from prewarm.plan.records import Reason
from prewarm.plan.refit import fitted
from prewarm.plan.sequences import find_sequences, frame_numbered, predict_sequence
from prewarm.plan.shared import neighbour_groups, predict_shared, predict_texture
from prewarm.plan.unseen import by_levels, predict_unseen


def predict(job: Iterable[int], candidates: Iterable[Candidate], ts: TraceSet, lookup: Lookup,
            traced_ok: Callable[[str], bool] = lambda p: True,
            opts: PredictOptions = PredictOptions(),
            structure: Structures = lambda p: None, defer: bool = False) -> PredictResult:
    """Predictions for every job frame; see the module docstring for the models.

    `traced_ok` says which traced files may enter the plan although no manifest
    input names them (the caller keeps them to the job's folders and roots).
    `structure` gives a file's levels and tiles where a reader could read them.
    `defer`: leave the traced shared and structured files' predictions in `deferred`
    (the bulk of the work of a long job), each file's to be made on its own.
    """
    job_frames = list(dict.fromkeys(job))
    train = sorted(ts.frames)
    result = PredictResult()
    explained: set[str] = set()
    candidates = list(candidates)
    tiles = frozenset(c.path for c in candidates if c.tile_set is not None)
    seqs = find_sequences(ts, opts.max_delta, tiles) if train else []
    in_sequence = {p for s in seqs for p in s.members.values()}
    for seq in seqs:
        predict_sequence(seq, job_frames, ts, lookup, traced_ok, opts, result, explained)
    result.stats.sequences = len(seqs)

    shared = textures = 0
    result.stats.remapped_files = result.stats.identity_unknown = 0
    groups = neighbour_groups(train, job_frames, opts.neighbours)
    every = tuple(f for _, _, frames in groups for f in frames)
    for p, per in ts.reads.items():
        if p in in_sequence or p in explained or not traced_ok(p):
            continue
        info = lookup(p)
        explained.add(p)
        if info is None:
            result.missing.append((p, "not found: earlier renders of this shot read it"))
            continue
        shared += 1
        st = structure(p)
        make: Deferred
        reads, misfit = fitted(p, st, per, info.size, None if ts.filed is None else ts.filed.get(p, {}), result,
                                ts.sizes.get(p, {}))
        if st is not None and misfit:
            result.predictions.extend(by_levels(p, st, job_frames, Reason.FALLBACK, opts))
            continue
        # a file named by its reader's frame number (a per-frame file no sequence explained) is
        # that frame's, not an occasional file of every frame
        occasional = p in tiles or not frame_numbered(p, reads, opts.max_delta)
        if st is not None:
            textures += 1
            make = partial(predict_texture, p, st, reads, train, groups, opts, occasional)
        else:
            make = partial(predict_shared, p, info.size, reads, train, groups, opts, every, occasional)
        if defer:
            result.deferred.append((p, make))
        else:
            result.predictions.extend(make())
    result.stats.shared_files = shared
    result.stats.changed_since_traced = len(result.changed) - result.stats.identity_unknown
    result.stats.tiled_files = textures
    predict_unseen(candidates, job_frames, ts, lookup, structure, opts, result, explained)
    return result
