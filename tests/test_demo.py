"""`prewarm demo`'s bad input: one line naming the folder, exit 2, before any twin or service starts.

The demo's run itself is `make demo` (and the same machinery, `prewarm.testkit.e2e`, is bench/e2e.py's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prewarm.cli import main


def test_demo_refuses_a_folder_that_is_not_a_shot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.yaml").write_text("{}\n")
    assert main(["demo", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prewarm demo: {tmp_path}: no sizes.json (a shot folder holds manifest.yaml, traces/, sizes.json)"]


def test_demo_refuses_two_shots_of_one_name(tmp_path: Path) -> None:
    from prewarm.errors import InputError
    from prewarm.testkit.e2e import check_shots

    shots = []
    for parent in ("a", "b"):
        shot = tmp_path / parent / "shot100"
        (shot / "traces").mkdir(parents=True)
        (shot / "manifest.yaml").write_text("{}\n")
        (shot / "sizes.json").write_text("{}\n")
        shots.append(shot)
    check_shots(shots[:1])
    with pytest.raises(InputError, match="two shot folders with the same name"):
        check_shots(shots)
