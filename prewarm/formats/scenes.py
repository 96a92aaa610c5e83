"""Read scene files in a child process each: bounded in time, and a crash or a hang stays there.

A scene file comes from the studio, and a hostile or corrupt one must not take the
planner (or the service) with it: usd-core is C++ that can abort on a bad crate, a
corrupt `.blend` can send BAT round a cyclic list forever, and a compressed one can
decompress to any size. So `SceneReader` runs `python -m prewarm.formats.child` per scene,
with the job's remaining time as its timeout (`SceneLimits.seconds` for all of a job's
scenes together), a cap on the size of the files it writes (the decompressed `.blend`,
`MAX_WRITE_BYTES`) and its own temporary folder, removed afterwards. The request and
the answer are JSON on its stdin and stdout. Paths cross as studio paths; the child
builds the same `Guard` (roots and path map) and opens nothing the guard refuses: a
stage that sublayers `/etc/passwd`, or a library linked through a symlink out of the
roots, is counted in a note, never opened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from prewarm.errors import InputError
from prewarm.plan.pathmap import PathMap
from prewarm.plan.scenes import SceneDep, SceneDeps, SceneKind, SceneRequest, Unresolved
from prewarm.site.guard import Guard, Refused

GRACE = 5.0
"""Seconds a child gets past its own deadline to say what it found before it is killed."""
MAX_WRITE_BYTES = 16 << 30
"""Largest file a child may write: a compressed `.blend` is decompressed to a temporary file."""
EXTRA = "scenes"
"""The optional extra that brings usd-core: `pip install 'prewarm[scenes]'`."""


class SceneReader:
    """A `ReadScene` for `expand_scenes`: one child process per scene file, all within one budget."""

    def __init__(self, guard: Guard, *, python: str = sys.executable, grace: float = GRACE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.guard = guard
        self.python = python
        self.grace = grace
        self.clock = clock
        self.deadline: float | None = None

    def __call__(self, request: SceneRequest) -> SceneDeps:
        try:
            where = self.guard.resolve(request.path)
        except Refused as exc:
            return SceneDeps(error=f"not read: {exc.why}")
        except OSError:
            return SceneDeps(absent=True)
        if not os.path.isfile(where.local):
            return SceneDeps(absent=True)
        now = self.clock()
        if self.deadline is None:
            self.deadline = now + request.limits.seconds
        remaining = self.deadline - now
        if remaining <= 0:
            return SceneDeps(notes=(f"not read: the job's scene files took more than {request.limits.seconds:g} s",))
        message = {"path": request.path, "kind": request.kind.value,
                   "frames": list(request.frames), "seconds": remaining,
                   "limits": {"max_deps": request.limits.max_deps, "blur": request.limits.blur},
                   "roots": list(self.guard.roots), "path_map": self.guard.path_map.to_json()}
        with tempfile.TemporaryDirectory(prefix="prewarm-scene-") as tmp:
            try:
                done = subprocess.run([self.python, "-m", "prewarm.formats.child"], input=json.dumps(message),
                                      capture_output=True, text=True, timeout=remaining + self.grace,
                                      env={**os.environ, "TMPDIR": tmp}, check=False)
            except subprocess.TimeoutExpired:
                return SceneDeps(error=f"reading it took more than {request.limits.seconds:g} s (stopped)")
        return _answer(done, request)


def _answer(done: subprocess.CompletedProcess[str], request: SceneRequest) -> SceneDeps:
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return SceneDeps(error=f"the reader was killed by {name} (a corrupt or oversized file?)")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return SceneDeps(error=f"the reader failed (exit status {done.returncode})")
    if not isinstance(data, dict):
        return SceneDeps(error="the reader gave no answer")
    if data.get("needs"):
        raise InputError(request.path, f"a USD stage: reading it needs usd-core, the optional extra "
                                       f"'{EXTRA}' (pip install 'prewarm[{EXTRA}]'), or `expand: false`")
    return from_json(data)


_QUOTED = re.compile(r"""b?'[^']*'|"[^"]*"|`[^`]*`""")


def plain(text: str) -> str:
    """A reader's error in one line, without the bits of the file it may quote."""
    return " ".join(_QUOTED.sub("...", text).split())[:200]


@dataclass
class GuardedWalk:
    """What a scene reader's walk asks the guard: where a library may be opened, and which were refused.

    usd-core and BAT open the files a scene names themselves; each walk hands them only
    what `Guard.for_library` allows and keeps the studio paths it refused for the plan's notes.
    """

    guard: Guard
    refused: set[str] = field(default_factory=set, kw_only=True)
    """Studio paths the guard refused: outside the roots, or led out of them by a symlink. Never opened."""

    @property
    def path_map(self) -> PathMap:
        return self.guard.path_map

    def local(self, path: str) -> str:
        return self.path_map.to_local(self.path_map.to_studio(path))

    def opened_as(self, path: str) -> str | None:
        """Where the reader may open `path` (`Guard.for_library`); None, and recorded, when refused."""
        target = self.guard.for_library(path)
        if target is None:
            self.refused.add(self.path_map.to_studio(path))
        return target


def to_json(found: SceneDeps) -> dict[str, Any]:
    return {"deps": [[d.path, d.layer, None if d.frames is None else list(d.frames), d.pattern] for d in found.deps],
            "unresolved": [[u.path, u.layer, u.reason] for u in found.unresolved],
            "error": found.error, "notes": list(found.notes), "layers": found.layers}


def from_json(data: Mapping[str, Any]) -> SceneDeps:
    return SceneDeps(
        deps=tuple(SceneDep(str(p), str(layer), None if frames is None else tuple(int(f) for f in frames),
                            bool(pattern)) for p, layer, frames, pattern in data.get("deps", [])),
        unresolved=tuple(Unresolved(str(p), str(layer), str(why)) for p, layer, why in data.get("unresolved", [])),
        error=data.get("error"), notes=tuple(str(n) for n in data.get("notes", [])),
        layers=int(data.get("layers", 0)))


def kind_of(fh: IO[bytes]) -> SceneKind | None:
    """A scene file's kind from its first bytes (the `scene:` long form), read from a file the guard opened."""
    head = fh.read(16)
    if head.startswith((b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):
        return SceneKind.BLEND
    if head.startswith((b"PXR-USDC", b"#usda", b"PK\x03\x04")):
        return SceneKind.USD
    return None
