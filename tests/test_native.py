"""The modules the package's build compiles with mypyc: what runs here, and what a user installs.

The list is setup.py's `COMPILED` (one mypyc compilation of all of them), which the Makefile
and tests/conftest.py read too, so a module added there is checked here as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import compiled_sources, stale_builds

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
MODULES = [str(p.relative_to(ROOT).with_suffix("")) for p in compiled_sources()]
PURE = os.environ.get("PREWARM_PURE") == "1"


def test_setup_compiles_the_hot_modules_and_not_the_knob_table():
    """The predictor's models are compiled with it; its options and knobs (configuration) are not."""
    assert set(MODULES) == {"prewarm/traces/strace", "prewarm/plan/ranges", "prewarm/plan/predict",
                            "prewarm/plan/prediction", "prewarm/plan/sequences", "prewarm/plan/shared",
                            "prewarm/plan/refit", "prewarm/plan/unseen", "prewarm/plan/ordering",
                            "prewarm/warm/batches"}


@pytest.mark.parametrize("module", MODULES)
def test_what_runs_is_the_build_from_one_compilation(module):
    """`make setup` builds them in place (PREWARM_PURE=1 make setup does not: the sources run).

    Each module is imported first in a process of its own: one a compiled module imports first
    (natively, not through its shim: `plan/predict.py` does so with its models) gets the `__file__`
    mypyc 2.4 derives from the group library's folder as if that were above the package
    (`prewarm/prewarm/plan/...`), which says nothing about which build runs."""
    code = (f"import sys, {module.replace('/', '.')} as m; "
            "print(m.__file__, 'prewarm.native__mypyc' in sys.modules)")
    file, shared = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout.split()
    if PURE:
        assert file == str(ROOT / f"{module}.py")
        return
    assert file == str(ROOT / f"{module}{SUFFIX}"), "not compiled: run make setup"
    assert shared == "True", "each module is a shim into the one shared library"


def _tree(tmp_path: Path) -> Path:
    for m in MODULES:
        (tmp_path / m).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{m}.py").write_text("")
        (tmp_path / f"{m}{SUFFIX}").write_bytes(b"")
    (tmp_path / "setup.py").write_text((ROOT / "setup.py").read_text())
    (tmp_path / "prewarm" / f"native__mypyc{SUFFIX}").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("edited", ["prewarm/plan/ranges.py", "setup.py"])
def test_an_edit_after_the_build_makes_every_build_stale(tmp_path, edited):
    """What stops a test run until `make setup` has rebuilt (tests/conftest.py)."""
    root = _tree(tmp_path)
    for p in (*root.rglob("*.py"), root / "setup.py"):
        os.utime(p, (500, 500))
    for p in root.rglob("*.so"):
        os.utime(p, (1_000, 1_000))
    assert stale_builds(root) == []
    os.utime(root / edited, (2_000, 2_000))
    assert sorted(stale_builds(root)) == sorted([f"prewarm/native__mypyc{SUFFIX}", *(f"{m}{SUFFIX}" for m in MODULES)])


def test_no_builds_is_not_stale(tmp_path):
    root = _tree(tmp_path)
    for p in root.rglob("*.so"):
        p.unlink()
    assert stale_builds(root) == []


@pytest.mark.slow
def test_an_sdist_builds_a_wheel_that_installs_the_compiled_modules(tmp_path):
    """The user's path: the sdist, a wheel built from it (what `pip install` does with an
    sdist, and `pip wheel .` does with the tree), installed on its own and imported."""
    env = {k: v for k, v in os.environ.items() if k != "PREWARM_PURE"}
    sdist = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta as b; print(b.build_sdist({str(tmp_path)!r}))"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    with tarfile.open(tmp_path / sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert "setup.py" in names and {f"{m}.py" for m in MODULES} <= set(names)
    assert not [n for n in names if n.endswith(".so")], "the sdist carries sources, never a build"

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(tmp_path / sdist)], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    (wheel,) = wheels.glob("*.whl")
    assert not wheel.name.endswith("-none-any.whl"), "a pure-Python wheel"
    names = set(zipfile.ZipFile(wheel).namelist())
    built = {n for n in names if n.endswith(".so")}
    assert {f"prewarm/native__mypyc{SUFFIX}", *(f"{m}{SUFFIX}" for m in MODULES)} == built
    assert "prewarm/traces/recorder.bpf.c" in names     # the eBPF recorder compiles it at each record

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   env=env, capture_output=True, text=True, check=True)
    code = ("import prewarm.plan.ranges as r, prewarm.plan.predict, prewarm.plan.ordering, prewarm.traces.strace as s; "
            "print(*(m.__file__ for m in (r, prewarm.plan.predict, prewarm.plan.ordering, s))); "
            "print(r.normalize([(5, 9), (0, 6)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].split() == [str(site / f"{m}{SUFFIX}") for m in
                              ("prewarm/plan/ranges", "prewarm/plan/predict", "prewarm/plan/ordering", "prewarm/traces/strace")]
    assert out[1] == "[(0, 9)]"
