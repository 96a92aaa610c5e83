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
    assert main(["--config", str(config), "record", "--job", "j", "--frame", "2", "--live-job", "dl-1", "--drop",
                 str(tmp_path / "drop"), "--", "true"]) == 2
    assert "--live-job: records so far are filed in the store" in capsys.readouterr().err
    assert main(["--config", str(config), "record", "--job", "j", "--live-job", "dl-1", "--", "true"]) == 2
    assert "--live-job: say which frame" in capsys.readouterr().err


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


SLOW_READER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 4096, 0)
time.sleep(float(sys.argv[2]))
os.pread(fd, 4096, 6_000_000)
"""


@pytest.mark.parametrize("recorder", ["ebpf", "strace"])
def test_records_so_far_are_posted_while_the_render_runs(setup: tuple[Settings, Path, Path], tmp_path: Path,
                                                         recorder: str) -> None:
    from prewarm.traces.record import Progress

    settings, scene, _ = setup
    script = tmp_path / "slow.py"
    script.write_text(SLOW_READER)
    seen: list[set[int]] = []

    def post(path: str) -> None:
        seen.append({a.offset for a in read_traces([path], settings.path_map)
                     if a.length and a.path == "/studio/proj/shot010/scene.bin"})  # strace's has the interpreter's

    result = record(settings, [sys.executable, str(script), str(scene), "3"], job="j_live", frame=4,
                    recorder=recorder, progress=Progress(0.25, post))
    assert result.returncode == 0 and result.stored is not None, result.error
    assert any(s == {0} for s in seen), f"the first read was posted before the second was made: {seen}"
    assert {a.offset for a in read_traces([result.stored.folder]) if a.length} == {0, 6_000_000}
    assert not list(tmp_path.glob("store/**/*.so-far")), "the snapshot is not left behind"


@pytest.mark.integration
def test_record_posts_records_so_far_to_a_live_job(setup: tuple[Settings, Path, Path], tmp_path: Path,
                                                   redis_url: str, r: object,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import redis as redis_lib

    from prewarm.flow import live
    from prewarm.state import frames as fstate
    from prewarm.state.frames import FrameEvent, Kind

    assert isinstance(r, redis_lib.Redis)
    settings, scene, _ = setup
    (tmp_path / "slow.py").write_text(SLOW_READER)
    manifest = parse_manifest("job: j_v002\nshow: proj\nshot: shot010\nframes: 1-8\ninputs:\n"
                              "  - /studio/proj/shot010/scene.bin\n", "m.yaml")
    live.register(r, "dl-77", manifest, [])
    live.report_event(r, settings, FrameEvent(Kind.START, "dl-77", 4, 1.0, "n1"))
    config = tmp_path / "config.yaml"
    config.write_text(f"trace_store: {settings.trace_store}\nroots: [/studio/proj]\n"
                      f"path_map: [{{studio: /studio/proj, local: {tmp_path / 'proj'}}}]\n")
    base = ["--config", str(config), "record", "--job", "j_v002", "--show", "proj", "--shot", "shot010",
            "--frame", "4", "--with", "strace", "--live-job", "dl-77", "--progress-s", "1", "--redis", redis_url]
    assert main([*base, "--", sys.executable, str(tmp_path / "slow.py"), str(scene), "2.5"]) == 0
    assert fstate.counters(r, "dl-77").get("progress", 0) >= 1 and fstate.evidence(r, "dl-77") == 1
    assert r.zscore("prewarm:live:due", "dl-77") is not None, "the records so far asked for a re-plan"
    capsys.readouterr()
    down = [*base[:-1], "redis://127.0.0.1:1/0"]
    assert main([*down, "--", sys.executable, str(tmp_path / "slow.py"), str(scene), "0"]) == 0
    assert "records so far not posted" in capsys.readouterr().err, "no Redis: the render runs all the same"
