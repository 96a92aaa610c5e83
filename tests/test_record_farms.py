"""docs/record.md's farm examples, run as the farm would run them: an OpenJD step's command
(Deadline Cloud), a Deadline 10 plugin's render executable, an OpenCue layer's command.

Each example is taken from the doc itself, so the doc cannot drift from what works. The
renderer is a stand-in `blender` that reads part of its scene file; everything else (the
`prewarm` command, the recorder, the store, the watch folder) is the real thing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openjd.model import (
    StepParameterSpaceIterator,
    SymbolTable,
    create_job,
    decode_job_template,
    preprocess_job_parameters,
)

from prewarm.farm.tracedrop import TraceDrop
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces.files import read_traces

DOC = Path(__file__).resolve().parent.parent / "docs" / "record.md"
PREWARM = Path(sys.executable).parent / "prewarm"

BLENDER = """#!{python}
import os, sys
scene = sys.argv[sys.argv.index("-b") + 1]
frame = int(sys.argv[sys.argv.index("-f") + 1])
fd = os.open(scene, os.O_RDONLY)
os.pread(fd, 4096, 0)
os.pread(fd, 8192, frame * 4096)
"""


def block(section: str, lang: str) -> str:
    """The first ``` block of `lang` after the heading `section` in docs/record.md."""
    text = DOC.read_text()
    start = text.index(section)
    m = re.compile(rf"```{lang}\n(.*?)```", re.DOTALL).search(text, start)
    assert m is not None, section
    return m.group(1)


@pytest.fixture
def farm(tmp_path: Path) -> tuple[Settings, dict[str, str], Path]:
    proj = tmp_path / "proj"
    (proj / "shot010").mkdir(parents=True)
    (proj / "shot010" / "scene.blend").write_bytes(os.urandom(8 << 20))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    blender = bindir / "blender"
    blender.write_text(BLENDER.format(python=sys.executable))
    blender.chmod(0o755)
    config = tmp_path / "config.yaml"
    config.write_text(f"trace_store: {tmp_path / 'store'}\nroots: [/studio/proj]\n"
                      f"path_map: [{{studio: /studio/proj, local: {proj}}}]\n")
    env = {**os.environ, "PREWARM_CONFIG": str(config), "PATH": f"{bindir}:{PREWARM.parent}:{os.environ['PATH']}"}
    settings = Settings(trace_store=str(tmp_path / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(proj)),)))
    return settings, env, proj


def filed(settings: Settings, job: str) -> dict[int | None, set[tuple[int, int]]]:
    """Reads of the scene per frame, in the store's folder of `job` (show proj, shot shot010)."""
    folder = Path(settings.trace_store or "") / "proj" / "shot010" / job
    out: dict[int | None, set[tuple[int, int]]] = {}
    if not folder.exists():
        return out
    for a in read_traces([str(folder)]):
        if a.op.value == "read" and a.path == "/studio/proj/shot010/scene.blend":
            out.setdefault(a.frame, set()).add((a.offset, a.length))
    return out


def test_openjd_step_command_prefix(farm: tuple[Settings, dict[str, str], Path]) -> None:
    settings, env, proj = farm
    template = decode_job_template(template=yaml.safe_load(block("### Deadline Cloud", "yaml")))
    scene = str(proj / "shot010" / "scene.blend")
    params = preprocess_job_parameters(job_template=template, job_parameter_values={"SceneFile": scene},
                                       job_template_dir=proj, current_working_dir=proj)
    job = create_job(job_template=template, job_parameter_values=params)
    step = job.steps[0]
    assert step.script is not None and step.parameterSpace is not None
    action = step.script.actions.onRun
    task = next(iter(StepParameterSpaceIterator(space=step.parameterSpace)))
    symtab = SymbolTable(source={**{f"Param.{k}": v.value for k, v in params.items()},
                                 **{f"Task.Param.{k}": v.value for k, v in task.items()}})
    argv = [action.command.resolve(symtab=symtab), *(a.resolve(symtab=symtab) for a in action.args or [])]
    assert argv[:2] == ["prewarm", "record"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert filed(settings, "shot010_lighting_v003") == {1001: {(0, 4096), (1001 * 4096, 8192)}}


def test_deadline10_render_executable(farm: tuple[Settings, dict[str, str], Path], tmp_path: Path) -> None:
    settings, env, proj = farm
    wrapper = tmp_path / "blender-recorded"
    wrapper.write_text(block("### Deadline 10", "sh").replace("/opt/blender/blender", str(tmp_path / "bin" / "blender")))
    wrapper.chmod(0o755)
    job_info = block("The job's names reach", "")
    for line in job_info.splitlines():   # what Deadline does with EnvironmentKeyValueN
        key, value = line.split("=", 1)[1].split("=", 1)
        env[key] = value
    scene = str(proj / "shot010" / "scene.blend")
    done = subprocess.run([str(wrapper), "-b", scene, "-f", "1002"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert filed(settings, "shot010_lighting_v003") == {1002: {(0, 4096), (1002 * 4096, 8192)}}


def test_opencue_layer_command_to_the_watch_folder(farm: tuple[Settings, dict[str, str], Path],
                                                  tmp_path: Path) -> None:
    settings, env, proj = farm
    drop = tmp_path / "drop"
    cmd = block("### OpenCue", "").strip()
    cmd = cmd.replace("#IFRAME#", "1003").replace("/farm/prewarm/traces", str(drop)).replace("/studio/proj", str(proj))
    env.update(CUE_JOB="shot010_lighting_v003", CUE_SHOW="proj", CUE_SHOT="shot010", CUE_IFRAME="1003")
    done = subprocess.run(["/bin/sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=300)  # as RQD runs it
    assert done.returncode == 0, done.stderr
    assert filed(settings, "shot010_lighting_v003") == {}          # left in the watch folder, not yet filed
    watcher = TraceDrop(drop, settings, settle_s=0)
    outcomes = watcher.poll() + watcher.poll()                     # seen, then settled and filed
    assert [o.state for o in outcomes] == ["done"], outcomes
    assert filed(settings, "shot010_lighting_v003") == {1003: {(0, 4096), (1003 * 4096, 8192)}}


def test_a_render_that_fails_keeps_its_status_and_its_record(farm: tuple[Settings, dict[str, str], Path],
                                                             tmp_path: Path) -> None:
    settings, env, proj = farm
    crash = tmp_path / "bin" / "crash"
    crash.write_text(f"#!{sys.executable}\nimport os, sys\nos.pread(os.open(sys.argv[1], 0), 10, 0)\nsys.exit(3)\n")
    crash.chmod(0o755)
    scene = str(proj / "shot010" / "scene.blend")
    done = subprocess.run([str(PREWARM), "record", "--show", "proj", "--shot", "shot010", "--job", "crashy",
                           "--frame", "5", "--", "crash", scene], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3
    assert filed(settings, "crashy") == {5: {(0, 10)}}
    env["PREWARM_TRACE_STORE"] = "/proc/no-store-here"             # a store that cannot be written
    done = subprocess.run([str(PREWARM), "record", "--job", "crashy", "--", "crash", scene], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3
    assert "trace not filed" in done.stderr and "Traceback" not in done.stderr
