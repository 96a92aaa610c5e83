"""prewarm: plan which byte ranges a render job will read, and warm them through the caching gateway.

`make setup` compiles a few hot modules with mypyc into extensions beside their sources
(the strace parser, the range algebra, the predictor and the plan's ordering: see the
README's Development section), which Python then imports instead of the sources. A build older
than its source is passed over and the source runs, so an edit is never hidden by a
stale build, even when tests run without `make`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"


class _SourceOverStaleBuild(importlib.abc.MetaPathFinder):
    """Finds a prewarm module's source when the extension beside it is older than the source."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(f"{__name__}.") or path is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader) or not spec.origin:
            return None
        source = os.path.join(os.path.dirname(spec.origin), f"{fullname.rpartition('.')[2]}.py")
        if os.path.exists(source) and os.path.getmtime(spec.origin) < os.path.getmtime(source):
            return importlib.util.spec_from_file_location(fullname, source)
        return None


if not any(isinstance(f, _SourceOverStaleBuild) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceOverStaleBuild())
