"""The store's traces read back for planning: the profiles kept beside raw files, merged.

Profiles (`prewarm.traces.profile`) make planning from the store cost what the shot's files x
frames cost, not what its history of calls costs. One that is missing, torn, of another format
or of a raw file since replaced is rebuilt from its raw file and written back (when the store
is writable), so the raw traces stay the truth (`prewarm.traces.store`'s docstring).
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass, field

from prewarm.errors import TraceError
from prewarm.plan.aggregate import TraceSet
from prewarm.plan.manifest import Manifest
from prewarm.plan.pathmap import PathMap
from prewarm.site.settings import Settings
from prewarm.traces import cores
from prewarm.traces.catalogue import PROFILES, find_traces, store_traces
from prewarm.traces.files import TraceFile, read_batches
from prewarm.traces.profile import FrameProfile, ProfileBuilder, ProfileError, Source, decode, to_traceset
from prewarm.traces.store import PARALLEL_BYTES, by_frame, write_profile

__all__ = ["StoredTraces", "frame_profiles", "load_profiles"]

PROFILE_MAX = 256 << 20
"""A kept profile bigger than this is not ours (a frame's summary is megabytes at most): it
is not read, and the raw file is read instead."""


@dataclass
class StoredTraces:
    """What `load_profiles` found: the merged traces, and where they came from."""

    traces: TraceSet
    folders: list[str]
    """The jobs' folders, newest first (`find_traces`)."""
    profiles: int = 0
    rebuilt: int = 0
    """Profiles that were missing, stale or of another format, rebuilt from their raw files."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Jobs left out, and why: pruned while being read, or a raw file that cannot be read."""


def _source(raw: TraceFile) -> Source:
    st = raw.guard.stat(raw.path)
    return st.st_size, st.st_mtime_ns


def _kept(raw: TraceFile) -> FrameProfile | None:
    """The profile kept beside a raw file, if it is current (names this very raw file)."""
    folder, _, name = raw.path.rpartition("/")
    try:
        source = _source(raw)
        fd, _ = raw.guard.open(f"{folder}/{PROFILES}/{name}.json")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(PROFILE_MAX + 1)
        kept = decode(data) if len(data) <= PROFILE_MAX else None
    except (OSError, ProfileError):
        return None
    return kept if kept is not None and kept.source == source else None


ProfileCache = dict[str, tuple[Source, FrameProfile]]
"""Profiles a caller keeps decoded between loads of the same store (a live job's re-plans), by raw
file: a raw file of the same size and mtime is not read again. Decoding is most of a load (1,000
frames x 2,000 inputs: 0.96 of 1.1 s)."""


def _kept_cached(raw: TraceFile, cache: ProfileCache | None) -> FrameProfile | None:
    if cache is None:
        return _kept(raw)
    try:
        source = _source(raw)
    except OSError:
        return None
    hit = cache.get(raw.path)
    if hit is not None and hit[0] == source:
        return hit[1]
    kept = _kept(raw)
    if kept is not None:
        cache[raw.path] = (source, kept)
    return kept


def _rebuild(raw: TraceFile) -> list[FrameProfile]:
    """A raw file's profile built from its records, and written back for the next reader when
    the store is writable (a planner with read-only access still plans, only slower)."""
    source = _source(raw)
    builders: dict[int | None, ProfileBuilder] = {}
    for run in read_batches([raw]):
        for f, recs in by_frame(run).items():
            b = builders.get(f)
            if b is None:
                b = builders[f] = ProfileBuilder(f)
            b.add_records(recs)
    built = [b.build(source) for b in builders.values()] or [FrameProfile(None, source, 0)]
    if len(built) == 1:  # the store writes one frame per file; anything else is not cached
        folder, _, name = raw.path.rpartition("/")
        with suppress(OSError):
            dfd, _ = raw.guard.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                write_profile(dfd, name, built[0])
            finally:
                os.close(dfd)
    return built


def frame_profiles(raw: TraceFile) -> tuple[list[FrameProfile], bool]:
    """The profile of one stored raw file, and whether it had to be rebuilt from the raw file."""
    kept = _kept(raw)
    return ([kept], False) if kept is not None else (_rebuild(raw), True)


def _rebuild_or_why(raw: TraceFile) -> list[FrameProfile] | str:
    try:
        return _rebuild(raw)
    except (TraceError, OSError) as exc:
        return str(exc)


def _rebuild_all(raws: list[TraceFile]) -> list[list[FrameProfile] | str]:
    """Rebuild profiles over all cores when there is enough to read (a store filed by an older
    prewarm, or after a profile format change: once, then the profiles are kept)."""
    workers = cores.workers_for(len(raws), sum(r.size for r in raws), PARALLEL_BYTES)
    if workers < 2:
        return [_rebuild_or_why(r) for r in raws]
    with cores.pool(workers) as pool:
        return list(pool.map(_rebuild_or_why, raws, chunksize=max(1, len(raws) // (4 * workers))))


def load_profiles(settings: Settings, manifest: Manifest, path_map: PathMap | None = None,
                  frame: int | None = None, cache: ProfileCache | None = None) -> StoredTraces:
    """The traces of the earlier jobs `find_traces` picks, merged from their profiles: the same
    TraceSet as aggregating those jobs' raw files (`--traces FOLDER...`), at the cost of their
    files x frames. `path_map` and `frame` mean what they mean to `read_traces`.

    A job pruned while it is being read, or holding a raw file that cannot be read, is left
    out (`skipped` says why) rather than failing the plan: the other jobs still describe
    the shot. The work is bounded by the `find_traces` limit on jobs and by their files.
    `cache`: profiles decoded by an earlier load, kept by the caller (then updated).
    """
    out = StoredTraces(TraceSet(), find_traces(settings, manifest))
    slots = [(folder, raw, _kept_cached(raw, cache)) for folder in out.folders
             for raw in store_traces(settings, [folder])]
    if cache is not None:
        for gone in cache.keys() - {raw.path for _, raw, _ in slots}:
            del cache[gone]
    stale = [raw for _, raw, kept in slots if kept is None]
    built = dict(zip((r.path for r in stale), _rebuild_all(stale), strict=True))
    out.rebuilt = len(stale)
    for folder, raw, _ in slots:
        why = built.get(raw.path)
        if isinstance(why, str):
            out.skipped.setdefault(folder, why)
    profiles: list[FrameProfile] = []
    for folder, raw, kept in slots:
        if folder not in out.skipped:
            got = built.get(raw.path)
            profiles.extend([kept] if kept is not None else got if isinstance(got, list) else [])
    out.profiles = len(profiles)
    rename = None
    if path_map is not None:
        seen = {p for fp in profiles for group in (fp.reads, fp.stats, fp.listed) for p in group}
        rename = {p: m for p in seen if (m := path_map.to_studio(p)) != p}
    out.traces = to_traceset(profiles, frame, rename or None)
    return out
