"""The child process that reads one scene file (`python -m prewarm.formats.child`).

Started by `prewarm.formats.scenes.SceneReader`: a JSON request on stdin, a JSON answer
on stdout, nothing else there (usd-core and BAT write their warnings to stderr). Any
failure to read the scene is an answer (`error`), never a traceback: the file is the
studio's, and a bad one is a finding in the plan.

Once its reader library is loaded, the child is confined with Landlock
(`prewarm.formats.confine`): it reads only below the roots' local folders and its own
program, so a scene, layer or library swapped for a symlink out of the roots after the
guard's check cannot be opened, whoever opens it. The scene itself is checked again
here, through the guard, and its answer is an error naming the studio path when it is
now refused. On a kernel without Landlock the guard's checks are all there is.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

from prewarm.formats import confine
from prewarm.formats.scenes import MAX_WRITE_BYTES, kind_of, plain, to_json
from prewarm.plan.pathmap import PathMap
from prewarm.plan.scenes import SceneDeps, SceneKind, SceneLimits, SceneRequest
from prewarm.site.guard import Guard, Refused


def read(message: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(message["seconds"])
    limits = SceneLimits(max_deps=int(message["limits"]["max_deps"]), blur=float(message["limits"]["blur"]))
    guard = Guard(tuple(str(r) for r in message["roots"]), PathMap.parse(message["path_map"], "path_map"))
    path = str(message["path"])
    try:
        local = guard.resolve(path).local  # checked again here: the parent's check was a while ago
        kind = SceneKind(message["kind"])
        if kind is SceneKind.AUTO:
            kind = _kind(guard, path)
    except Refused as exc:
        return to_json(SceneDeps(error=f"not read: {exc.why}"))
    request = SceneRequest(path, kind, tuple(int(f) for f in message["frames"]), limits)
    if kind is SceneKind.USD:
        from prewarm.formats.usd import MissingExtra, load_usd, read_usd

        try:
            load_usd()  # its plugins are found and loaded while the program's folders are all it needs
            _confine(guard)
            return to_json(read_usd(local, request, guard, deadline))
        except MissingExtra:
            return {"needs": "usd-core"}
    if kind is SceneKind.BLEND:
        from prewarm.formats.blend import read_blend

        _confine(guard)
        return to_json(read_blend(local, request, guard, deadline))
    return to_json(SceneDeps(error="neither a USD layer nor a .blend file"))


def _kind(guard: Guard, path: str) -> SceneKind:
    """The kind of a `scene:` input from its first bytes, read through the guard's checked descriptor."""
    fd, _ = guard.open(path)
    with os.fdopen(fd, "rb") as fh:
        return kind_of(fh) or SceneKind.AUTO


def _confine(guard: Guard) -> None:
    """Landlock: from here on, reads below the roots' local folders and the program's only."""
    roots = [os.path.realpath(guard.path_map.to_local(r)) for r in guard.roots]
    try:
        confine.confine([r for r in roots if os.path.isdir(r)] + confine.program_folders(),
                        [tempfile.gettempdir()])
    except confine.Unconfined as exc:
        print(f"prewarm scene reader: not confined ({exc.strerror}): the guard's checks only", file=sys.stderr)


def main() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_WRITE_BYTES, MAX_WRITE_BYTES))
    message = json.load(sys.stdin)
    try:
        answer = read(message)
    except Exception as exc:  # the process boundary: a hostile file's any error is a finding
        answer = to_json(SceneDeps(error=f"a corrupt file? {plain(f'{type(exc).__name__}: {exc}')}"))
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
