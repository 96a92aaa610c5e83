"""The package's build: the hot modules compiled by mypyc in one compilation.

Everything else about the package is in pyproject.toml; this file exists because the
compiled modules are extensions, and setuptools takes extensions from here. They are
the strace parser, the range algebra, the predictor (its orchestration, `prediction`'s types and
the models it calls: per-frame sequences, shared files, re-published files, unseen files; not
`knobs`, its options, configuration read by the command line), the plan's ordering and the warm's
batch cutting (README, Development): compiled as one group they call one another natively (as black and mypy ship
theirs), so `pip install .`, `pip wheel .` and an install from the sdist all give the
speed the benches measure. The build needs gcc and the Python headers; mypy (which carries
mypyc) is a build requirement in pyproject.toml, so pip fetches it.

PREWARM_PURE=1 builds the package without them: the same results from the plain sources,
at about a quarter of the parser's speed (for development on a machine without a compiler,
or to step through the modules in a debugger).
"""

from __future__ import annotations

import os
from typing import cast

from setuptools import Extension, setup

# The one list of compiled modules: the Makefile and tests/conftest.py read it from here.
COMPILED = [
    "prewarm/traces/strace.py",
    "prewarm/plan/ranges.py",
    "prewarm/plan/ordering.py",
    "prewarm/plan/predict.py",
    "prewarm/plan/prediction.py",
    "prewarm/plan/sequences.py",
    "prewarm/plan/shared.py",
    "prewarm/plan/refit.py",
    "prewarm/plan/unseen.py",
    "prewarm/warm/batches.py",
]


def _extensions() -> list[Extension]:
    if os.environ.get("PREWARM_PURE") == "1":
        return []
    from mypyc.build import mypycify

    # One group, named inside the package: its shared library is prewarm/native__mypyc.*.so,
    # beside the small extensions (one a module) that load the modules from it.
    # setuptools' Extension when setuptools is there, as it is in any build of this file
    return cast(list[Extension], mypycify(COMPILED, opt_level="3", group_name="prewarm.native"))


setup(ext_modules=_extensions())
