"""The layers of prewarm/ hold: import-linter checks the contracts in pyproject.toml.

A module imports only from the layers below its own, the planning core does no IO, and
the product never imports the Celery worker app. Run the same check by hand with
`.venv/bin/lint-imports`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_broken_contract_is_caught(tmp_path: Path) -> None:
    """The check can fail: a copy of the package whose planning core opens files breaks the contract."""
    shutil.copytree(ROOT / "prewarm", tmp_path / "prewarm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "workers", tmp_path / "workers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "prewarm" / "plan" / "leaky.py").write_text("import os\n")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "prewarm.plan.leaky -> os" in out.stdout
