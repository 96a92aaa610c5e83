"""`prewarm record` on a real command under real strace, and the planner using what it filed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from prewarm.cli import main
from prewarm.errors import ConfigError
from prewarm.flow.planning import plan_manifest
from prewarm.plan.manifest import parse_manifest
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.catalogue import find_traces
from prewarm.traces.files import read_traces
from prewarm.traces.record import record, resolve_command

READER = """
import os, sys
with open(sys.argv[1], "rb") as f:
    f.read(1000)
    f.seek(300_000)
    f.read(5000)
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 4096, 6_000_000)
open(sys.argv[2], "rb").read()
sys.exit(int(sys.argv[3]))
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Path, Path]:
    studio = tmp_path / "proj"
    (studio / "shot010").mkdir(parents=True)
    (studio / "shot010" / "scene.bin").write_bytes(os.urandom(8 << 20))
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x" * 100)
    script = tmp_path / "render.py"
    script.write_text(READER)
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(studio)),)))
    return settings, studio / "shot010" / "scene.bin", outside


@pytest.mark.parametrize("recorder", ["ebpf", "strace"])
def test_record_files_reads_under_the_roots_with_job_and_frame(setup: tuple[Settings, Path, Path],
                                                               recorder: str) -> None:
    settings, scene, outside = setup
    script = Path(settings.trace_store or "").parent / "render.py"
    result = record(settings, [sys.executable, str(script), str(scene), str(outside), "0"],
                    job="shot010_lighting_v001", show="proj", shot="shot010", frame=1001, recorder=recorder)
    assert result.returncode == 0 and result.stored is not None, result.error
    assert result.recorder == recorder, result.notes
    accesses = list(read_traces([result.stored.folder]))
    assert {a.path for a in accesses} == {"/studio/proj/shot010/scene.bin"}     # studio paths, nothing else
    assert {a.frame for a in accesses} == {1001}
    reads = {(a.offset, a.length) for a in accesses if a.op.value == "read"}
    assert any(o <= 300_000 < o + n for o, n in reads) and any(o <= 6_000_000 < 6_004_096 <= o + n for o, n in reads)

    manifest = parse_manifest("job: shot010_lighting_v002\nshow: proj\nshot: shot010\nframes: 1001-1002\n"
                              "inputs: [/studio/proj/shot010/scene.bin]\n", "m.yaml")
    traces = find_traces(settings, manifest)
    assert traces == [result.stored.folder]
    plan = plan_manifest(manifest, traces, settings)
    planned = [(r.offset, r.offset + r.length) for r in plan.ranges]
    assert any(s <= 6_000_000 < e for s, e in planned)
    assert sum(e - s for s, e in planned) < (8 << 20)       # the traced granules, not the whole file


@pytest.mark.parametrize("recorder", ["ebpf", "strace"])
def test_record_returns_the_commands_exit_status(setup: tuple[Settings, Path, Path], recorder: str) -> None:
    settings, scene, outside = setup
    script = Path(settings.trace_store or "").parent / "render.py"
    result = record(settings, [sys.executable, str(script), str(scene), str(outside), "3"], job="j", recorder=recorder)
    assert result.returncode == 3 and result.recorder == recorder
    assert record(settings, ["no-such-renderer-xyz"], job="j", recorder=recorder).returncode == 127


def test_record_cli(setup: tuple[Settings, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings, scene, outside = setup
    config = tmp_path / "config.yaml"
    config.write_text(f"trace_store: {settings.trace_store}\nroots: [/studio/proj]\n"
                      f"path_map: [{{studio: /studio/proj, local: {tmp_path / 'proj'}}}]\n")
    code = main(["--config", str(config), "record", "--job", "j_v001", "--shot", "shot010", "--frame", "7", "--",
                 sys.executable, str(tmp_path / "render.py"), str(scene), str(outside), "5"])
    assert code == 5
    assert "frames 7-7" in capsys.readouterr().err
    assert main(["--config", str(config), "record", "--", "true"]) == 2          # no job given
    assert "--job" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("pyenv") is None, reason="no pyenv on this machine")
def test_a_pyenv_shim_resolves_to_the_real_interpreter() -> None:
    shim = shutil.which("python3")
    assert shim is not None
    real = resolve_command(["python3", "-V"])[0]
    assert real != shim or "shims" not in shim
    assert Path(real).read_bytes()[:4] == b"\x7fELF"


def test_resolve_command_refuses_unknown_programs() -> None:
    with pytest.raises(ConfigError, match="command not found"):
        resolve_command(["no-such-renderer-xyz"])
