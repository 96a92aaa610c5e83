"""The child process that reads one scene file (`python -m prewarm.formats.child`).

Started by `prewarm.formats.scenes.SceneReader`: a JSON request on stdin, a JSON answer
on stdout, nothing else there (usd-core and BAT write their warnings to stderr). Any
failure to read the scene is an answer (`error`), never a traceback: the file is the
studio's, and a bad one is a finding in the plan.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from prewarm.formats.scenes import MAX_WRITE_BYTES, kind_of, plain, to_json
from prewarm.plan.pathmap import PathMap
from prewarm.plan.scenes import SceneDeps, SceneKind, SceneLimits, SceneRequest
from prewarm.site.guard import Guard


def read(message: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(message["seconds"])
    local = str(message["local"])
    limits = SceneLimits(max_deps=int(message["limits"]["max_deps"]), blur=float(message["limits"]["blur"]))
    kind = SceneKind(message["kind"])
    if kind is SceneKind.AUTO:
        kind = kind_of(local) or SceneKind.AUTO
    request = SceneRequest(str(message["path"]), kind, tuple(int(f) for f in message["frames"]), limits)
    guard = Guard(tuple(str(r) for r in message["roots"]), PathMap.parse(message["path_map"], "path_map"))
    if kind is SceneKind.USD:
        from prewarm.formats.usd import MissingExtra, read_usd

        try:
            return to_json(read_usd(local, request, guard, deadline))
        except MissingExtra:
            return {"needs": "usd-core"}
    if kind is SceneKind.BLEND:
        from prewarm.formats.blend import read_blend

        return to_json(read_blend(local, request, guard, deadline))
    return to_json(SceneDeps(error="neither a USD layer nor a .blend file"))


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
