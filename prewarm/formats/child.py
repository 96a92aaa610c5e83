"""The child process that reads one scene file (`python -m prewarm.formats.child`).

Started by `prewarm.formats.scenes.SceneReader`: a JSON request on stdin, a JSON answer
on stdout, nothing else there (usd-core and BAT write their warnings to stderr). Any
failure to read the scene is an answer (`error`), never a traceback: the file is the
studio's, and a bad one is a finding in the plan.

Once its reader library is loaded, the child is confined with Landlock
(`prewarm.formats.confine`): it reads only below the roots' local folders and its own
program, so a scene, layer or library swapped for a symlink out of the roots after the
guard's check cannot be opened, whoever opens it. The scene itself is checked again
here, opened through the guard, and after the read the name must still lead to the file
the guard opened (its device and inode), or the answer is an error: on a kernel without
Landlock that check and the guard's are all there is.
"""

from __future__ import annotations

import io
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
        fd, where = guard.open(path)  # checked again here: the parent's check was a while ago
    except Refused as exc:
        return to_json(SceneDeps(error=f"not read: {exc.why}"))
    try:
        opened = os.fstat(fd)
        kind = SceneKind(message["kind"])
        if kind is SceneKind.AUTO:
            kind = kind_of(io.BytesIO(os.pread(fd, 16, 0))) or SceneKind.AUTO
        found = _read(SceneRequest(path, kind, tuple(int(f) for f in message["frames"]), limits), where.local, guard,
                      deadline)
        now = os.stat(where.local)
    finally:
        os.close(fd)
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        return to_json(SceneDeps(error=f"not read: {CHANGED}"))
    return found


CHANGED = "changed while being read (a symlink swapped in?)"
"""The scene's name led elsewhere after the guard opened it: whatever was read is not this scene."""


def _read(request: SceneRequest, local: str, guard: Guard, deadline: float) -> dict[str, Any]:
    """The reader's answer for the scene at `local`, read once the child is confined."""
    if request.kind is SceneKind.USD:
        from prewarm.formats.usd import MissingExtra, load_usd, read_usd

        try:
            load_usd()  # its plugins are found and loaded while the program's folders are all it needs
            _confine(guard)
            return to_json(read_usd(local, request, guard, deadline))
        except MissingExtra:
            return {"needs": "usd-core"}
    if request.kind is SceneKind.BLEND:
        from prewarm.formats.blend import read_blend

        _confine(guard)
        return to_json(read_blend(local, request, guard, deadline))
    return to_json(SceneDeps(error="neither a USD layer nor a .blend file"))


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
