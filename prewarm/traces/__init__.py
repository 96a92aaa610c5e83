"""Access traces of earlier renders: parsers (pure), trace files, the trace store, `prewarm record`.

`strace` and `jsonl` turn lines into `Access` records and do no IO; `files` finds,
opens and tells trace files apart by content; `store` files them per show/shot/job;
`record` runs a render under strace and files what it read.

`make setup` compiles `strace` with mypyc into an extension beside its source, which
Python then imports instead of the source (about 4x faster: see the README). A build
older than the source is ignored and the source runs, so an edit to strace.py is never
hidden by a stale build, even when tests run without `make`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def _run_source_if_build_is_stale() -> None:
    here = os.path.dirname(__file__)
    source = os.path.join(here, "strace.py")
    # the module mypyc builds (`strace.<abi>.so`) and the library holding its code (`strace__mypyc.<abi>.so`)
    stamps = [os.path.getmtime(os.path.join(here, f)) for f in os.listdir(here)
              if f.startswith("strace") and f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    if not stamps or not os.path.exists(source) or min(stamps) >= os.path.getmtime(source):
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.strace", source)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_run_source_if_build_is_stale()
