"""A burst render in time: render nodes, frames, the warm and one WAN link, strategy by strategy.

Why: bench/e2e.py warms first and renders after; a farm does both at once. Nodes boot
minutes after the job is submitted, take frames in the farm's order, and every frame
that reads what is not yet warm waits on the same link the warm is using. Only a run
in time says whether a warm keeps ahead of the frames, and whether learning from the
job's own finished frames (`prewarm.flow.live`) is worth it.

How: a discrete-event run in the burst's own seconds, through the gateway twin's link
model (`prewarm.twin.link.Link`: one round trip per request, then one shared pipe,
first booked first served) on a virtual clock, and a gateway cache of `PAGE`-sized
pages (a page is warm from the moment its bytes have arrived; a read of a page still
in flight waits for it, as the twin's joined reads do). What it does not use is the
FUSE mount, Redis and Celery: on 2 shared cores a real-time run of 20-minute frames is
not possible, and what is measured here is the schedule, not the machinery (bench/e2e.py
measures that). The planner is the real one, and so is its time: each re-plan's wall
time is added before its new queue applies.

- K render nodes boot B seconds after submission and take frames in the manifest's
  order; each frame replays its recorded reads thread by thread at the recorded pace,
  stretched so that the median frame renders for `--frame-min` minutes; a read waits
  for the pages it needs (other accesses cost nothing here);
- the warm starts at submission: `--streams` requests of at most `--request` bytes in
  flight, each booking the link when the one before it ends;
- strategies: `cold` (no warm), `naive` (every resolved input whole, from submission),
  `once` (prewarm's plan at submission from the traces it has, no events), `live` (the
  same plan, then each finished frame's trace, and every `--progress-s` (120 s) each running
  frame's records so far, re-plan the frames not started: `DEBOUNCE_S` after the event, plus
  the planner's wall time; the warm's unsent queue is
  replaced by the new plan less what has arrived or is in flight, ordered by when each
  frame is expected to start, as `prewarm.flow.live` does), `oracle` (a plan of the
  burst frames' own reads, spread 0, at submission);
- starts: `fresh`, with no traces of the job (its manifest only); `earlier`, for a shot
  that has an earlier version (shot210: shot200's textures re-published, every tile
  moved), the earlier version's traces filed in a trace store against the earlier files
  (each texture's tiles and identity with them) and the frames replayed against the new
  files (each tile read at its new offset), so the plan maps the traced tiles as a plan
  from the store does; `first-quarter`, for a shot with one version, its own first
  quarter of frames traced (a test render of the same files), for reference.

Figures per strategy: `node_wait_s` (render-node seconds spent waiting on reads, all
frames), `max_frame_wait_s` and `frame_wait_s` (per frame), `makespan_s` (submission to
last frame done), `wan_bytes` (warm plus cold reads over the link), `link_busy` (the
share of the makespan the link was transferring). Defaults (stated in the README): K=8
nodes, B=180 s boot, median frame 20 minutes, 30 ms RTT, records so far every 2 minutes of
a running frame, and a link rate set per shot so
that what its frames read (the oracle's plan) takes half the boot time: a warm of the
right bytes finishes before the nodes are up, one of whole files (10-15x on textures)
does not; `--mbps` fixes the rate instead.

    .venv/bin/python bench/farm.py [--nodes 8] [--boot-s 180] [--frame-min 20] [--rtt-ms 30] [--mbps X]
                                   [--progress-s 120] [--shot DIR]... [--json FILE]

`--shot DIR` runs any shot folder laid out as bench/e2e.py's (manifest.yaml, traces/,
sizes.json, optional tree/ and textures.json; studio paths under /studio/proj). Writes
JSON (`--json`, default bench/out/farm.json) with `strategies.<name>.node_wait_s`,
`.makespan_s`, `.wan_bytes` (the `fresh` start, summed over the shots that have it) and
the same under `earlier.strategies` and `first-quarter.strategies` and per shot. Per
shot, `waits` lists the reads that waited longest: frame, file, offset, and whether the
page was still queued (`queued`: pages ahead of it), in flight, or in no plan (null);
`warm_unread_bytes` (and `_by_reason`, `_before_first_replan`) is what the warm fetched
that no frame read, by the reason of the plan range that queued it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prewarm.flow import live
from prewarm.flow.filing import structure_of
from prewarm.flow.jobs import load_manifest
from prewarm.flow.planning import PlanOptions, plan_resolved, site_fs
from prewarm.formats.reader import read_structure
from prewarm.plan.access import Access, Op
from prewarm.plan.aggregate import TraceSet, aggregate, merge, restrict
from prewarm.plan.inputs import ResolvedInputs, resolve_inputs
from prewarm.plan.knobs import PredictOptions
from prewarm.plan.manifest import Manifest
from prewarm.plan.model import Plan
from prewarm.plan.pathmap import PathMap
from prewarm.plan.ranges import Span, normalize
from prewarm.plan.records import PlannedRange
from prewarm.plan.structure import Structure
from prewarm.site.fs import SiteFS
from prewarm.site.settings import Settings
from prewarm.state.frames import Frame, FrameState
from prewarm.testkit.replay import group_frames, split_threads
from prewarm.testkit.samples import build_shot
from prewarm.traces.files import read_traces
from prewarm.traces.store import import_traces, load_profiles
from prewarm.twin.link import MB, Link

ROOT = Path(__file__).resolve().parents[1]
STUDIO = "/studio/proj"
SHOTS = ("shot100", "shot200", "shot210")
REPUBLISHED = {"shot210": "shot200"}
"""Sample shots that are an earlier one re-published (its textures made again, same paths, every tile
moved): the earlier shot's manifest and frames, replayed against these files, and its traces filed in
a trace store against the earlier files (the `earlier` start)."""
STARTS = ("fresh", "first-quarter", "earlier")
STRATEGIES = ("cold", "naive", "once", "live", "oracle")
PAGE = 64 << 10
WAITS_LISTED = 20
"""The gateway cache's unit here: what one read brings in at least."""


@dataclass(frozen=True)
class Setup:
    nodes: int = 8
    boot_s: float = 180.0
    frame_s: float = 20 * 60.0
    rtt_s: float = 0.030
    bytes_per_s: float = 0.0
    streams: int = 4
    request: int = 256 << 10
    debounce_s: float = live.DEBOUNCE_S
    progress_s: float = 120.0
    """How often a running frame posts its records so far (`prewarm frame progress`; 0: only its
    finished trace, when it ends)."""
    warm_share: float = 0.5
    """The warm's throttle (prewarm's `throttle_bps`) as a share of the link, so frames' reads
    find the link free at least this often."""


@dataclass
class Shot:
    name: str
    manifest: Manifest
    resolved: ResolvedInputs
    fs: SiteFS
    settings: Settings
    frames: list[list[Access]]
    """The burst's frames in the farm's order, each its recorded accesses."""
    traced: TraceSet
    starts: dict[str, TraceSet]
    """Per start, the traces the job begins with (`fresh`: none)."""

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(f[0].frame for f in self.frames if f[0].frame is not None)

    def plan(self, ts: TraceSet, frames: Sequence[int], oracle: bool = False) -> Plan:
        opts = PlanOptions(frames=tuple(frames), predict=PredictOptions(spread=0) if oracle else PredictOptions())
        return plan_resolved(self.manifest, self.resolved, ts, self.fs, self.settings, opts)


@dataclass
class Thread:
    frame: int
    accesses: list[Access]
    i: int = 0


@dataclass
class Result:
    node_wait_s: float = 0.0
    frame_wait_s: dict[int, float] = field(default_factory=dict)
    frame_start_s: dict[int, float] = field(default_factory=dict)
    makespan_s: float = 0.0
    wan_bytes: int = 0
    replans: int = 0
    replan_wall_s: list[float] = field(default_factory=list)
    first_apply_s: float | None = None
    warm_unread: int = 0
    """Warmed bytes no frame read: the guesses' cost."""
    warm_unread_before: int = 0
    warm_unread_by_reason: dict[str, int] = field(default_factory=dict)
    warm_bytes_before: int = 0
    """What the warm had booked when the first re-plan applied: the guesses warmed before any records."""
    waits: list[dict[str, Any]] = field(default_factory=list)
    """Each read that waited: which frame, file and page, and what the warm's queue knew of the page
    then (`queued`: pages still ahead of it; `planned_at`: when the plan that queued it applied)."""

    def row(self, bytes_per_s: float) -> dict[str, Any]:
        waits = list(self.frame_wait_s.values())
        return {"node_wait_s": round(self.node_wait_s, 2), "max_frame_wait_s": round(max(waits, default=0.0), 2),
                "mean_frame_wait_s": round(statistics.fmean(waits), 2) if waits else 0.0,
                "frames_waiting_over_1s": sum(1 for w in waits if w > 1.0),
                "makespan_s": round(self.makespan_s, 1), "wan_bytes": self.wan_bytes,
                "link_busy": round(self.wan_bytes / bytes_per_s / self.makespan_s, 3) if self.makespan_s else 0.0,
                "replans": self.replans,
                "replan_wall_max_s": round(max(self.replan_wall_s, default=0.0), 3),
                "first_replan_applied_s": None if self.first_apply_s is None else round(self.first_apply_s, 1),
                "warm_bytes_before_first_replan": self.warm_bytes_before,
                "warm_unread_bytes": self.warm_unread, "warm_unread_bytes_before_first_replan": self.warm_unread_before,
                "warm_unread_bytes_by_reason": dict(sorted(self.warm_unread_by_reason.items())),
                "frame_wait_s": {str(f): round(w, 2) for f, w in sorted(self.frame_wait_s.items())},
                "waits": sorted(self.waits, key=lambda w: -w["wait_s"])[:WAITS_LISTED],
                "frame_start_s": {str(f): round(t, 1) for f, t in sorted(self.frame_start_s.items())}}


Replanner = Callable[[list[int], list[int], dict[int, Frame], float, dict[int, float]], list[PlannedRange]]
"""`(finished, waiting, states, now) -> ranges`: the live strategy's re-plan."""


class Burst:
    """One strategy's run: nodes, frames, the warm's streams and one link, in virtual time."""

    def __init__(self, setup: Setup, frames: list[list[Access]], stretch: float, warm: Sequence[PlannedRange],
                 replanner: Replanner | None = None) -> None:
        self.s = setup
        self.now = 0.0
        self.link = Link(setup.rtt_s, setup.bytes_per_s, clock=lambda: self.now, sleep=lambda _: None)
        self.ready: dict[tuple[str, int], float] = {}
        """Page -> when its bytes arrived (or will): a page in here is warm or in flight."""
        self.frames = frames
        self.stretch = stretch
        self.queue: list[tuple[str, int]] = []
        self.qpos = 0
        self.queued: dict[tuple[str, int], int] = {}
        """Page -> its place in the queue (for the wait diagnostics)."""
        self.applied = 0.0
        self.warmed_at: dict[tuple[str, int], float] = {}
        self.why: dict[tuple[str, int], str] = {}
        """Page -> the reason of the plan range that last queued it."""
        self.read_pages: set[tuple[str, int]] = set()
        self.idle_streams = 0
        self.replanner = replanner
        self.result = Result()
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.next_frame = 0
        self.running: dict[int, int] = {}
        """Frame -> threads still running."""
        self.states: dict[int, Frame] = {}
        self.finished: list[int] = []
        self.replan_due: float | None = None
        self.partial: dict[int, float] = {}
        """Running frame -> how far into its recorded time its posted records reach."""
        self.t0: dict[int, float] = {}
        self._enqueue(warm)

    def _push(self, t: float, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, payload))

    def _enqueue(self, ranges: Sequence[PlannedRange]) -> None:
        seen: set[tuple[str, int]] = set()
        pages: list[tuple[str, int]] = []
        for r in ranges:
            for p in range(r.offset // PAGE, (r.end - 1) // PAGE + 1 if r.length else r.offset // PAGE):
                key = (r.path, p)
                if key not in seen and key not in self.ready:
                    seen.add(key)
                    pages.append(key)
                    self.why[key] = r.reason.value
        self.queue, self.qpos = pages, 0
        self.queued = {k: i for i, k in enumerate(pages)}
        self.applied = self.now

    def run(self) -> Result:
        for _ in range(self.s.streams if self.queue else 0):
            self._push(0.0, "stream")
        self.idle_streams = 0 if self.queue else self.s.streams
        for _ in range(self.s.nodes):
            self._push(self.s.boot_s, "node")
        while self.events:
            self.now, _, kind, payload = heapq.heappop(self.events)
            getattr(self, f"_on_{kind}")(payload)
        self.result.wan_bytes = int(self._booked)
        unread = [t for k, t in self.warmed_at.items() if k not in self.read_pages]
        first = self.result.first_apply_s
        self.result.warm_unread = len(unread) * PAGE
        self.result.warm_unread_before = sum(1 for t in unread if first is None or t < first) * PAGE
        for k in self.warmed_at:
            if k not in self.read_pages:
                why = self.why.get(k, "?")
                self.result.warm_unread_by_reason[why] = self.result.warm_unread_by_reason.get(why, 0) + PAGE
        return self.result

    _booked = 0.0
    _warmed = 0
    warm_free = 0.0

    def _book(self, nbytes: int) -> float:
        self._booked += nbytes
        return self.link.reserve(nbytes)

    # the warm

    def _on_stream(self, _: Any) -> None:
        first: tuple[str, int] | None = None
        pages: list[tuple[str, int]] = []
        skipped = 0
        while self.qpos < len(self.queue) and len(pages) * PAGE < self.s.request:
            key = self.queue[self.qpos]
            if key in self.ready:
                self.qpos += 1
                skipped += 1
                continue
            if first is not None and (key[0] != first[0] or key[1] != pages[-1][1] + 1):
                break
            first = first or key
            pages.append(key)
            self.qpos += 1
        if not pages:
            self.idle_streams += 1
            return
        if self.now < self.warm_free:  # the throttle: this request waits its turn
            self.qpos -= len(pages) + skipped
            self._push(self.warm_free, "stream")
            return
        self.warm_free = self.now + len(pages) * PAGE / (self.s.bytes_per_s * self.s.warm_share)
        self._warmed += len(pages) * PAGE
        done = self._book(len(pages) * PAGE)
        for key in pages:
            self.ready[key] = done
            self.warmed_at[key] = self.now
        self._push(done, "stream")

    # the farm

    def _on_node(self, _: Any) -> None:
        if self.next_frame >= len(self.frames):
            return
        accesses = self.frames[self.next_frame]
        self.next_frame += 1
        frame = accesses[0].frame if accesses[0].frame is not None else self.next_frame
        threads = split_threads(accesses)
        t0 = min((a.t for a in accesses if a.t is not None), default=0.0)
        self.running[frame] = len(threads)
        self.states[frame] = Frame(frame, FrameState.RUNNING, "node", self.now)
        self.result.frame_start_s[frame] = self.now
        self.result.frame_wait_s[frame] = 0.0
        self.t0[frame] = t0
        if self.replanner is not None and self.s.progress_s > 0:
            self._push(self.now + self.s.progress_s, "progress", (frame, self.now))
        for th in threads:
            first = th[0].t if th[0].t is not None else t0
            self._push(self.now + (first - t0) * self.stretch, "thread", Thread(frame, th))

    def _on_thread(self, th: Thread) -> None:
        a = th.accesses[th.i]
        wait = self._read(a, th.frame) if a.op is Op.READ and a.length > 0 else 0.0
        self.result.frame_wait_s[th.frame] += wait
        self.result.node_wait_s += wait
        th.i += 1
        if th.i < len(th.accesses):
            nxt = th.accesses[th.i]
            gap = (nxt.t - a.t) * self.stretch if nxt.t is not None and a.t is not None else 0.0
            self._push(self.now + wait + max(0.0, gap), "thread", th)
            return
        self.running[th.frame] -= 1
        if self.running[th.frame] == 0:
            self._push(self.now + wait, "frame_done", th.frame)

    def _read(self, a: Access, frame: int) -> float:
        missing: list[tuple[str, int]] = []
        until = self.now
        for p in range(a.offset // PAGE, (a.offset + a.length - 1) // PAGE + 1):
            self.read_pages.add((a.path, p))
            at = self.ready.get((a.path, p))
            if at is None:
                missing.append((a.path, p))
            elif at > until:
                until = at
        if missing:
            done = self._book(len(missing) * PAGE)
            for key in missing:
                self.ready[key] = done
            until = max(until, done)
        if until > self.now:
            at = self.queued.get(missing[0]) if missing else -1
            self.result.waits.append({"frame": frame, "path": a.path, "offset": a.offset, "wait_s": round(until - self.now, 2),
                               "at_s": round(self.now, 1), "started_s": round(self.result.frame_start_s[frame], 1),
                               "queued": "in flight" if at == -1 else None if at is None or at < self.qpos
                               else at - self.qpos,
                               "planned_at_s": round(self.applied, 1)})
        return until - self.now

    def _on_progress(self, payload: tuple[int, float]) -> None:
        frame, started = payload
        if self.states[frame].state is not FrameState.RUNNING:
            return
        self.partial[frame] = self.t0[frame] + (self.now - started) / self.stretch
        self._ask_replan()
        self._push(self.now + self.s.progress_s, "progress", payload)

    def _ask_replan(self) -> None:
        if self.replanner is not None and self.replan_due is None:
            self.replan_due = self.now + self.s.debounce_s
            self._push(self.replan_due, "replan")

    def _on_frame_done(self, frame: int) -> None:
        self.result.makespan_s = max(self.result.makespan_s, self.now)
        old = self.states[frame]
        self.states[frame] = Frame(frame, FrameState.DONE, old.node, old.started, self.now, 1)
        self.finished.append(frame)
        self.partial.pop(frame, None)
        self._push(self.now, "node")
        self._ask_replan()

    def _on_replan(self, _: Any) -> None:
        assert self.replanner is not None
        self.replan_due = None
        done_frames = {f for f, st in self.states.items() if st.state is FrameState.DONE}
        order = [a[0].frame for a in self.frames if a[0].frame is not None]
        waiting = [f for f in order if f not in self.states]
        if not waiting:
            return
        t0 = time.perf_counter()
        ranges = self.replanner(sorted(done_frames), waiting, dict(self.states), self.now, dict(self.partial))
        took = time.perf_counter() - t0
        self.result.replans += 1
        self.result.replan_wall_s.append(took)
        self._push(self.now + took, "apply", ranges)

    def _on_apply(self, ranges: list[PlannedRange]) -> None:
        if self.result.first_apply_s is None:
            self.result.first_apply_s, self.result.warm_bytes_before = self.now, int(self._warmed)
        self._enqueue(ranges)
        wake, self.idle_streams = self.idle_streams, 0
        for _ in range(wake):
            self._push(self.now, "stream")


def live_replanner(shot: Shot, prior: TraceSet, first: Plan) -> Replanner:
    """Re-plan the waiting frames from the traces the job began with, the finished frames' own and the
    running frames' records so far, as `flow.live` does from the store (every frame with records counts as
    evidence that drops guesses); the queue is the new plan ordered by expected start, plus the previous
    queue's traced ranges it no longer names (running frames may read them), less the guesses. An
    earlier version's traces keep their identities (`filed`), so the planner still maps their tiles."""
    queue = {"ranges": list(first.ranges)}

    by_frame = {f[0].frame: f for f in shot.frames}

    def replan(finished: list[int], waiting: list[int], states: dict[int, Frame], now: float,
               partial: dict[int, float]) -> list[PlannedRange]:
        parts = [prior, restrict(shot.traced, finished)]
        if partial:
            parts.append(aggregate(a for f, upto in partial.items() for a in by_frame[f]
                                   if a.t is None or a.t <= upto))
        ts = replace(merge(parts), filed=prior.filed)
        plan = shot.plan(ts, waiting)
        wanted, _ = live.without_unread(plan.ranges, len(finished) + len(partial))
        need: dict[str, list[tuple[int, int]]] = {}
        for r in wanted:
            need.setdefault(r.path, []).append((r.offset, r.end))
        carried, _ = live.leftovers(queue["ranges"], {p: normalize(s) for p, s in need.items()}, len(finished))
        queue["ranges"] = wanted
        return carried + live.order_by_start(wanted, live.eta(waiting, states, now))
    return replan


def run_shot(shot: Shot, setup: Setup, strategies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every start the shot has (`Shot.starts`), every strategy."""
    durations = [max(a.t for a in f if a.t is not None) - min(a.t for a in f if a.t is not None)
                 for f in shot.frames if any(a.t is not None for a in f)]
    stretch = setup.frame_s / max(statistics.median(durations), 1e-3) if durations else 1.0
    numbers = list(shot.numbers)
    whole = [PlannedRange(f.path, 0, f.size) for f in shot.resolved.files]
    oracle = shot.plan(restrict(shot.traced, numbers), numbers, oracle=True)
    out: dict[str, dict[str, Any]] = {}
    for start, prior in shot.starts.items():
        first = shot.plan(prior, numbers)
        rows: dict[str, Any] = {}
        for name in strategies:
            warm: Sequence[PlannedRange] = {"cold": [], "naive": whole, "once": list(first.ranges),
                                            "live": list(first.ranges), "oracle": list(oracle.ranges)}[name]
            replanner = live_replanner(shot, prior, first) if name == "live" else None
            result = Burst(setup, shot.frames, stretch, warm, replanner).run()
            rows[name] = result.row(setup.bytes_per_s)
            print(f"  {shot.name} {start} {name}: wait {result.node_wait_s:.1f} s, makespan "
                  f"{result.makespan_s:.0f} s, WAN {result.wan_bytes / 1e6:.1f} MB", file=sys.stderr)
        out[start] = {"strategies": rows, "plan_bytes": {"first": first.bytes, "oracle": oracle.bytes,
                                                         "whole": sum(r.length for r in whole)},
                      "first_plan_remapped_files": first.stats.get("remapped_files", 0),
                      "stretch": round(stretch, 1)}
    return out


@contextmanager
def load_shot(shot_dir: Path, origin: Path) -> Iterator[Shot]:
    """A shot's burst: its manifest's frames, replayed against its files. A re-published shot
    (`REPUBLISHED`) replays the earlier shot's frames against its own files, and adds the `earlier` start."""
    earlier = REPUBLISHED.get(shot_dir.name)
    if earlier is not None:
        with _republished(shot_dir, shot_dir.parent / earlier, origin) as shot:
            yield shot
        return
    build_shot(shot_dir, origin, real=True)
    manifest = load_manifest(shot_dir / "manifest.yaml")
    at_origin = PathMap.parse([{"studio": STUDIO, "local": str(origin)}], "bench")
    accesses = [a for a in read_traces([str(shot_dir / "traces")], at_origin) if a.path.startswith(STUDIO + "/")]
    frames, numbers = _frames(manifest, accesses)
    traced = aggregate(iter(accesses))
    starts = {"fresh": TraceSet(), "first-quarter": restrict(traced, numbers[:max(1, len(numbers) // 4)])}
    settings = Settings(path_map=at_origin)
    with site_fs(settings) as fs:
        yield Shot(shot_dir.name, manifest, resolve_inputs(manifest, fs), fs, settings, frames, traced, starts)


def _frames(manifest: Manifest, accesses: list[Access]) -> tuple[list[list[Access]], list[int]]:
    by_frame = {f[0].frame: f for f in group_frames(a for a in accesses if a.frame is not None)}
    frames = [by_frame[n] for n in manifest.frames if n in by_frame]
    return frames, [f[0].frame for f in frames if f[0].frame is not None]


@contextmanager
def _republished(shot_dir: Path, earlier_dir: Path, origin: Path) -> Iterator[Shot]:
    """The earlier shot's traces filed in a trace store while its files were the earlier ones (each
    texture's tiles and identity with them), then its frames replayed against this shot's files: each
    tile read is the same tile at its new offset. The job starts from the store (`earlier`)."""
    before = origin.parent / "earlier" / "proj"
    build_shot(earlier_dir, before, real=True)
    build_shot(shot_dir, origin, real=True)
    manifest = load_manifest(earlier_dir / "manifest.yaml")
    at_before = PathMap.parse([{"studio": STUDIO, "local": str(before)}], "bench")
    accesses = [a for a in read_traces([str(earlier_dir / "traces")], at_before) if a.path.startswith(STUDIO + "/")]
    with tempfile.TemporaryDirectory(prefix="prewarm-farm-store-") as store:
        old = Settings(path_map=at_before, trace_store=store)
        import_traces(old, [str(earlier_dir / "traces")], manifest.show, manifest.shot, manifest.job,
                      structures=structure_of(old))
        stored = load_profiles(old, manifest).traces
    moved = _moved(accesses, before, origin)
    frames, _ = _frames(manifest, moved)
    settings = Settings(path_map=PathMap.parse([{"studio": STUDIO, "local": str(origin)}], "bench"))
    with site_fs(settings) as fs:
        yield Shot(shot_dir.name, manifest, resolve_inputs(manifest, fs), fs, settings, frames,
                   aggregate(iter(moved)), {"earlier": stored})


def _structure(local: Path) -> Structure:
    fd = os.open(local, os.O_RDONLY)
    try:
        got = read_structure(lambda s, e: os.pread(fd, e - s, s), os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if not isinstance(got, Structure):
        raise SystemExit(f"{local}: a re-published shot's files must be structured, in both versions")
    return got


def _moved(accesses: list[Access], old: Path, new: Path) -> list[Access]:
    """The accesses as the same frames make them of the re-published files: a tile read reads the same
    tile where it now lies; a header or table read reads the new file's header or table (the same one
    by position, else the same offset); a stat sees the new size."""
    pair: dict[str, tuple[Structure, Structure, int]] = {}
    out: list[Access] = []
    for a in accesses:
        rel = a.path.removeprefix(STUDIO + "/")
        if a.path not in pair:
            pair[a.path] = (_structure(old / rel), _structure(new / rel), (new / rel).stat().st_size)
        before, after, size = pair[a.path]
        if a.op is Op.STAT:
            out.append(replace(a, length=size if a.length else 0))
            continue
        if a.op is not Op.READ or a.length <= 0:
            out.append(a)
            continue
        tiles, rest = before.tiles_read([(a.offset, a.offset + a.length)])
        spans: list[Span] = sorted(after.span(t) for t in tiles)
        for s, e in rest:
            at = [i for i, (ms, me) in enumerate(before.meta) if ms < e and me > s]
            same = len(before.meta) == len(after.meta) and at
            spans += [after.meta[i] for i in at] if same else [(s, min(e, size))]
        out += [replace(a, offset=s, length=e - s) for s, e in normalize(spans) if e > s]
    return out


def combine(shots: dict[str, dict[str, Any]], start: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for shot in shots.values():
        for name, row in shot.get(start, {}).get("strategies", {}).items():
            acc = out.setdefault(name, {"node_wait_s": 0.0, "makespan_s": 0.0, "wan_bytes": 0})
            acc["node_wait_s"] = round(acc["node_wait_s"] + row["node_wait_s"], 2)
            acc["makespan_s"] = round(acc["makespan_s"] + row["makespan_s"], 1)
            acc["wan_bytes"] += row["wan_bytes"]
    return out


def table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [title, f"{'strategy':8} {'wait_s':>9} {'max/frame':>9} {'makespan':>9} {'WAN MB':>8} {'busy':>5} "
                    f"{'replans':>7}"]
    for name, r in rows.items():
        lines.append(f"{name:8} {r['node_wait_s']:>9.1f} {r['max_frame_wait_s']:>9.1f} {r['makespan_s']:>9.0f} "
                     f"{r['wan_bytes'] / 1e6:>8.1f} {r['link_busy']:>5.2f} {r['replans']:>7}")
    return lines


def verdicts(starts: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The issue's targets: `fresh` on the shots that have it; `earlier` (node wait <= 2% of cold's) on the
    shots with an earlier version. `first-quarter` is measured against the same line, for reference."""
    out = []

    def check(label: str, value: float, limit: float) -> None:
        out.append(f"{'PASS' if value <= limit else 'FAIL'}  {label}: {value:.3f} (target <= {limit:g})")

    fresh = starts.get("fresh", {})
    if {"live", "cold", "oracle"} <= fresh.keys():
        cold = fresh["cold"]["node_wait_s"] or 1e-9
        check("fresh: live node wait / cold", fresh["live"]["node_wait_s"] / cold, 0.05)
        check("fresh: live WAN bytes / oracle", fresh["live"]["wan_bytes"] / max(fresh["oracle"]["wan_bytes"], 1), 2.0)
        check("fresh: live makespan / oracle", fresh["live"]["makespan_s"] / max(fresh["oracle"]["makespan_s"], 1e-9),
              1.05)
    for start in ("earlier", "first-quarter"):
        rows = starts.get(start, {})
        if {"live", "cold"} <= rows.keys():
            check(f"{start}: live node wait / cold" + (" (reference)" if start != "earlier" else ""),
                  rows["live"]["node_wait_s"] / (rows["cold"]["node_wait_s"] or 1e-9), 0.02)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=Setup.nodes, help="render nodes (K)")
    ap.add_argument("--boot-s", type=float, default=Setup.boot_s, help="seconds from submission to nodes up (B)")
    ap.add_argument("--frame-min", type=float, default=Setup.frame_s / 60, help="median frame render, minutes")
    ap.add_argument("--rtt-ms", type=float, default=Setup.rtt_s * 1000)
    ap.add_argument("--mbps", type=float, default=None,
                    help="link MB/s (default per shot: its frames' reads take half the boot time)")
    ap.add_argument("--streams", type=int, default=Setup.streams, help="warm requests in flight")
    ap.add_argument("--request-kib", type=int, default=Setup.request >> 10, help="largest warm request, KiB")
    ap.add_argument("--warm-share", type=float, default=Setup.warm_share,
                    help="the warm's throttle, as a share of the link (prewarm's throttle_bps)")
    ap.add_argument("--progress-s", type=float, default=Setup.progress_s,
                    help="a running frame posts its records so far this often (0: only when it ends)")
    ap.add_argument("--shot", action="append", default=[], metavar="DIR")
    ap.add_argument("--samples", default=str(ROOT / "sample_jobs"))
    ap.add_argument("--strategy", action="append", choices=STRATEGIES, default=None)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "farm.json"))
    args = ap.parse_args()
    dirs = [Path(d) for d in args.shot] or [Path(args.samples) / s for s in SHOTS]
    for d in dirs:
        for need in ("sizes.json",) if d.name in REPUBLISHED else ("manifest.yaml", "sizes.json", "traces"):
            if not (d / need).exists():
                raise SystemExit(f"{d}: no {need} (a shot folder holds manifest.yaml, traces/, sizes.json)")
    strategies = tuple(args.strategy or STRATEGIES)
    shots: dict[str, dict[str, Any]] = {}
    setups: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="prewarm-farm-") as tmp:
        for d in dirs:
            with load_shot(d, Path(tmp) / d.name / "proj") as shot:
                whole = sum(f.size for f in shot.resolved.files)
                needed = shot.plan(shot.traced, shot.numbers, oracle=True).bytes
                bps = args.mbps * MB if args.mbps else needed / (args.boot_s / 2)
                setup = Setup(args.nodes, args.boot_s, args.frame_min * 60, args.rtt_ms / 1000, bps, args.streams,
                              args.request_kib << 10, warm_share=args.warm_share,
                              progress_s=args.progress_s)
                setups[d.name] = {"nodes": setup.nodes, "boot_s": setup.boot_s, "frame_s": setup.frame_s,
                                  "rtt_ms": args.rtt_ms, "mbps": round(bps / MB, 4), "streams": setup.streams,
                                  "request_bytes": setup.request, "warm_share": setup.warm_share, "page_bytes": PAGE,
                                  "progress_s": setup.progress_s,
                                  "frames": len(shot.frames)}
                print(f"{d.name}: {len(shot.frames)} frames, inputs {whole / 1e6:.1f} MB, link {bps / MB:.3f} MB/s",
                      file=sys.stderr)
                shots[d.name] = run_shot(shot, setup, strategies)
    starts = {start: combine(shots, start) for start in STARTS}
    lines = [f"burst render: K={args.nodes} nodes boot after {args.boot_s:g} s, median frame {args.frame_min:g} min, "
             f"{args.rtt_ms:g} ms RTT"]
    for name, shot_rows in shots.items():
        for start, got in shot_rows.items():
            lines += ["", *table(f"{name}, {start} (link {setups[name]['mbps']} MB/s)", got["strategies"])]
    lines += ["", "targets (sums over the shots with that start):", *verdicts(starts)]
    print("\n".join(lines))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"strategies": starts["fresh"], **{k: {"strategies": v} for k, v in starts.items()
                                                                 if k != "fresh"},
                               "shots": shots, "setup": setups, "verdicts": verdicts(starts)}, indent=1))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
