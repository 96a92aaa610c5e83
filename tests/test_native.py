"""The modules `make setup` compiles with mypyc: built, current, what runs, and never stale.

The list is the Makefile's `COMPILED`, so a module added there is checked here too.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import prewarm

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
COMPILED = re.search(r"^COMPILED := (.+)$", (ROOT / "Makefile").read_text(), re.M)
MODULES = COMPILED.group(1).split() if COMPILED else []


def test_the_makefile_names_the_compiled_modules():
    assert {"prewarm/traces/strace", "prewarm/plan/ranges", "prewarm/plan/predict", "prewarm/plan/ordering"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_build_beside_the_source_is_what_runs_and_is_not_older_than_it(module):
    """`make setup` builds each; this fails after an edit until `make native` rebuilds it."""
    source, build = ROOT / f"{module}.py", ROOT / f"{module}{SUFFIX}"
    assert build.exists(), f"no build of {module}: run make native"
    assert build.stat().st_mtime >= source.stat().st_mtime, f"{build.name} is older than its source: run make native"
    assert importlib.import_module(module.replace("/", ".")).__file__ == str(build)


@pytest.mark.parametrize("stale", [True, False])
def test_the_source_runs_instead_of_a_build_older_than_it(tmp_path, stale):
    """A copy of the package's root, the range algebra's source and its build, in a fresh
    interpreter: the build runs while it is current, the source once it is older."""
    pkg = tmp_path / "prewarm"
    (pkg / "plan").mkdir(parents=True)
    shutil.copy(Path(prewarm.__file__), pkg / "__init__.py")
    (pkg / "plan" / "__init__.py").write_text("")
    for f in (ROOT / "prewarm" / "plan").iterdir():
        if f.name == "ranges.py" or f.name.startswith(("ranges.", "ranges__mypyc.")) and f.name.endswith(SUFFIX):
            shutil.copy(f, pkg / "plan" / f.name)
    built = sorted(p for p in (pkg / "plan").iterdir() if p.suffix == ".so")
    assert len(built) == 2, "make native builds the range algebra and its library"
    stamp = (pkg / "plan" / "ranges.py").stat().st_mtime
    for p in built:
        os.utime(p, (stamp - 10, stamp - 10) if stale else (stamp + 10, stamp + 10))
    out = subprocess.run([sys.executable, "-c", "import prewarm.plan.ranges as r; print(r.__file__); "
                          "print(r.normalize([(5, 9), (0, 6)]))"],
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == str(pkg / "plan" / ("ranges.py" if stale else f"ranges{SUFFIX}"))
    assert out[1] == "[(0, 9)]"
