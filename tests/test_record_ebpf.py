"""The eBPF recorder on this machine's kernel: the blocks strace's record holds, the whole
process tree and nothing else, descriptors followed as the kernel follows them, and the
fall back to strace. CI runs as root with clang, libbpf and bpftool installed by scripts/system-deps.sh."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.cli import main
from prewarm.plan.access import Op
from prewarm.plan.pathmap import PathMap, Prefix
from prewarm.site.settings import Settings
from prewarm.traces import ebpf
from prewarm.traces.files import read_traces
from prewarm.traces.record import RecordResult, choose, record

KiB = 1024

READER = r"""
import os, subprocess, sys, threading
d = sys.argv[1]
p = lambda name: os.path.join(d, name)
with open(p("a.bin"), "rb", buffering=0) as f:   # read(): the descriptor's position, moved by lseek
    f.read(10000)
    f.read(10000)
    f.seek(5000, 1)
    f.read(100)
    f.seek(-4096, 2)
    f.read(4096)
fd = os.open(p("a.bin"), os.O_RDONLY)
os.pread(fd, 4096, 40960)
os.preadv(fd, [bytearray(8192)], 65536)
os.lseek(fd, 81920, os.SEEK_SET)
os.readv(fd, [bytearray(4096)])
sub = os.open(p("sub"), os.O_RDONLY | os.O_DIRECTORY)   # openat relative to a directory descriptor
b = os.open("b.bin", os.O_RDONLY, dir_fd=sub)
os.pread(b, 100, 12288)
os.listdir(p("sub"))
os.chdir(d)                                              # and to the working directory
c = os.open("c.bin", os.O_RDONLY)
os.read(c, 5000)
os.stat("c.bin")
pid = os.fork()                                          # a child process
if pid == 0:
    x = os.open(p("d.bin"), os.O_RDONLY)
    os.pread(x, 4096, 8192)
    os._exit(0)
os.waitpid(pid, 0)
def reader(i):                                           # threads
    x = os.open(p("e.bin"), os.O_RDONLY)
    os.pread(x, 4096, i * 40960)
    os.close(x)
threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
subprocess.run([sys.executable, "-c", f"open({p('f.bin')!r}, 'rb').read(100)"], check=True)   # a grandchild
with open(p("out.bin"), "wb") as f:                      # the render's own output: left out
    f.write(b"x" * 10000)
open(p("out.bin"), "rb").read()
g = os.open(p("g.bin"), os.O_RDONLY)                     # dup, dup2, close: one open file, one position
os.lseek(g, 20480, os.SEEK_SET)
g2 = os.dup(g)
os.read(g2, 4096)
os.dup2(g, 50)
os.read(50, 4096)
os.close(g)
os.read(g2, 4096)
sys.exit(int(sys.argv[2]))
"""

EXPECTED = {
    "a.bin": {0, 1, 2, 3, 4, 6, 255, 10, 16, 17, 20},
    "sub/b.bin": {3},
    "c.bin": {0, 1},
    "d.bin": {2},
    "e.bin": {0, 10, 20, 30},
    "f.bin": {0},
}
"""4 KiB blocks each file's reads cover (a.bin: 10,000 + 10,000 bytes from 0, +5,000, 100 bytes,
its last block, then pread/preadv/readv)."""


def blocks(result: RecordResult) -> dict[str, set[int]]:
    """Per studio path, the 4 KiB blocks the filed record's reads cover."""
    assert result.stored is not None, (result.error, result.notes)
    out: dict[str, set[int]] = {}
    for a in read_traces([result.stored.folder]):
        if a.op is Op.READ and a.length:
            out.setdefault(a.path.removeprefix("/studio/proj/"), set()).update(
                range(a.offset // 4096, (a.offset + a.length - 1) // 4096 + 1))
    return out


def ops(result: RecordResult, op: Op) -> set[str]:
    assert result.stored is not None
    return {a.path.removeprefix("/studio/proj/") for a in read_traces([result.stored.folder]) if a.op is op}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, list[str]]]:
    base = tmp_path_factory.mktemp("ebpf")
    proj = base / "proj"
    (proj / "sub").mkdir(parents=True)
    for name in ("a.bin", "c.bin", "d.bin", "e.bin", "f.bin", "g.bin", "sub/b.bin"):
        (proj / name).write_bytes(os.urandom(1 << 20))
    (base / "render.py").write_text(READER)
    settings = Settings(trace_store=str(base / "store"), roots=("/studio/proj",),
                        path_map=PathMap((Prefix("/studio/proj", (), str(proj)),)))
    yield settings, [sys.executable, str(base / "render.py"), str(proj)]


@pytest.fixture(scope="module")
def records(studio: tuple[Settings, list[str]]) -> dict[str, RecordResult]:
    settings, argv = studio
    return {kind: record(settings, [*argv, "0"], job=f"j_{kind}", frame=1001, recorder=kind)
            for kind in ("ebpf", "strace")}


def test_this_machine_records_with_ebpf() -> None:
    assert ebpf.available() is None            # CI is root with clang and libbpf: the real recorder is tested
    assert choose(None)[0] == "ebpf" and choose("strace")[0] == "strace"


def test_ebpf_blocks_equal_strace_blocks(records: dict[str, RecordResult]) -> None:
    got, want = blocks(records["ebpf"]), blocks(records["strace"])
    assert records["ebpf"].recorder == "ebpf" and records["strace"].recorder == "strace"
    del got["g.bin"], want["g.bin"]             # dup'd descriptors: see the next test
    assert got == want == EXPECTED


def test_ebpf_follows_positions_through_dup_and_close(records: dict[str, RecordResult]) -> None:
    """After lseek to 20,480, reads through a dup, a dup2 and the dup again after the original's
    close share one position: blocks 5, 6, 7 (strace's importer starts a dup'd descriptor at 0)."""
    assert blocks(records["ebpf"])["g.bin"] == {5, 6, 7}


def test_ebpf_records_opens_stats_and_listings(records: dict[str, RecordResult]) -> None:
    assert {"a.bin", "sub/b.bin", "c.bin", "f.bin"} <= ops(records["ebpf"], Op.OPEN)
    assert "c.bin" in ops(records["ebpf"], Op.STAT)
    assert "sub" in ops(records["ebpf"], Op.READDIR)
    assert not any("out.bin" in p for p in blocks(records["ebpf"]))   # the render's own output


def test_ebpf_records_only_the_render(studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    """A process outside the render's tree reading under the roots at the same time is not recorded."""
    settings, argv = studio
    proj = Path(argv[2])
    other = subprocess.Popen([sys.executable, "-c", "import os, time\nfd = os.open(os.sys.argv[1], 0)\n"
                              "for _ in range(200):\n    os.pread(fd, 4096, 1 << 19); time.sleep(0.05)",
                              str(proj / "g.bin")])
    try:
        result = record(settings, [*argv, "0"], job="j_alone", recorder="ebpf")
    finally:
        other.kill()
        other.wait()
    assert result.recorder == "ebpf"
    assert 128 not in blocks(result)["g.bin"]


def test_ebpf_returns_status_of_a_killed_render(studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    settings, _ = studio
    script = tmp_path / "die.py"
    script.write_text("import os, signal, sys\nopen(sys.argv[1], 'rb').read(100)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    local = settings.path_map.entries[0].local
    result = record(settings, [sys.executable, str(script), f"{local}/c.bin"], job="j_killed", recorder="ebpf")
    assert result.returncode == 128 + 9
    assert blocks(result) == {"c.bin": {0}}     # what it read before it died is filed


def test_a_program_that_cannot_load_falls_back_to_strace(studio: tuple[Settings, list[str]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A program the kernel refuses (here: a tracepoint this kernel does not have) and one clang
    cannot compile: each says why in one line, and the render runs under strace."""
    settings, argv = studio
    source = ebpf.SOURCE.read_text()
    refused = tmp_path / "refused.bpf.c"
    refused.write_text(source.replace('SEC("raw_tp/sched_process_exit")',
                                      'SEC("raw_tp/no_such_tracepoint")'))
    broken = tmp_path / "broken.bpf.c"
    broken.write_text(source.replace("struct rkey r = {", "struct rkey r = {{"))
    for program, why in ((refused, "the eBPF program could not load: "), (broken, "clang could not compile the program: ")):
        monkeypatch.setattr(ebpf, "SOURCE", program)
        result = record(settings, [*argv, "4"], job="j_fallback", recorder="ebpf")
        assert result.returncode == 4 and result.recorder == "strace"
        assert len(result.notes) == 2 and result.notes[1].startswith(why), result.notes
        assert "\n" not in result.notes[1] and blocks(result)["d.bin"] == {2}


def test_no_clang_means_strace(studio: tuple[Settings, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prewarm.traces.ebpf.shutil.which", lambda name, path=None: None)
    assert choose(None) == ("strace", "strace (clang and libbpf's headers are not installed "
                                      "(apt-get install clang libbpf-dev) for eBPF)")
    assert choose("ebpf")[0] == "strace"


def test_cli_says_which_recorder(studio: tuple[Settings, list[str]], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    settings, argv = studio
    config = tmp_path / "config.yaml"
    config.write_text(f"trace_store: {settings.trace_store}\nroots: [/studio/proj]\n"
                      f"path_map: [{{studio: /studio/proj, local: {settings.path_map.entries[0].local}}}]\n")
    assert main(["--config", str(config), "record", "--job", "j_cli", "--frame", "3", "--", *argv, "0"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "prewarm record: eBPF (libbpf on the raw syscall tracepoint)"
    assert main(["--config", str(config), "record", "--with", "strace", "--job", "j_cli", "--", *argv, "0"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "prewarm record: strace (asked for)"
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "record", "--with", "dtrace", "--job", "j", "--", "true"])
    assert exited.value.code == 2


def test_ebpf_follows_a_thousand_children(studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    settings, argv = studio
    script = tmp_path / "forks.py"
    script.write_text("import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfor i in range(1000):\n"
                      "    pid = os.fork()\n    if pid == 0:\n        os.pread(fd, 10, i * 1024)\n        os._exit(0)\n"
                      "    os.waitpid(pid, 0)\n")
    result = record(settings, [sys.executable, str(script), f"{argv[2]}/a.bin"], job="j_forks", recorder="ebpf")
    assert result.returncode == 0 and result.recorder == "ebpf"
    assert blocks(result) == {"a.bin": set(range(250))}      # 1,000 reads of 10 bytes, 1 KiB apart


def _children(pid: int) -> dict[int, str]:
    """Live child processes of `pid`: {pid: command name}."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == pid and rest[0] != "Z":
                out[int(entry.name)] = name
    return out


def _programs() -> set[int]:
    """Ids of the recorder's read programs loaded in the kernel now, as bpftool lists them."""
    shown = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True, timeout=60)
    return {p["id"] for p in json.loads(shown.stdout) if p.get("name") == "pw_enter"}


def test_a_killed_recorder_leaves_no_program_attached(studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    """The node's task killed with `prewarm record` in it: its programs go with it (they live as long as
    the recorder's descriptors: nothing is pinned), and the render is not stopped by it."""
    settings, argv = studio
    config = tmp_path / "config.yaml"
    config.write_text(f"trace_store: {settings.trace_store}\n")
    before = _programs()
    wrapper = subprocess.Popen([str(Path(sys.executable).parent / "prewarm"), "--config", str(config), "record", "--job", "j",
                                "--with", "ebpf", "--", "sleep", "60"], stderr=subprocess.DEVNULL)
    sleeper = None
    try:
        deadline = time.monotonic() + 120
        while "sleep" not in _children(wrapper.pid).values():   # the render runs once the program is attached
            assert time.monotonic() < deadline and wrapper.poll() is None
            time.sleep(0.2)
        sleeper = next(p for p, name in _children(wrapper.pid).items() if name == "sleep")
        ours = _programs() - before
        assert len(ours) == 1
        wrapper.kill()
        wrapper.wait()
        deadline = time.monotonic() + 60
        while ours & _programs():
            assert time.monotonic() < deadline, "the recorder's program outlived prewarm record"
            time.sleep(0.2)
        assert Path(f"/proc/{sleeper}").exists()
    finally:
        wrapper.kill()
        wrapper.wait()
        if sleeper is not None:
            with contextlib.suppress(OSError):
                os.kill(sleeper, 9)


def test_reads_a_full_map_drops_are_counted(studio: tuple[Settings, list[str]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Maps of 64 entries and 1,000 distinct reads at once: every read is either in the record
    or counted as dropped, and the record says how many in one line."""
    settings, argv = studio
    monkeypatch.setattr(ebpf, "MAP_KEYS", 64)
    script = tmp_path / "burst.py"
    script.write_text("import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
                      "for i in range(1000):\n    os.pread(fd, 100, i * 1000)\n")
    result = record(settings, [sys.executable, str(script), f"{argv[2]}/c.bin"], job="j_full", recorder="ebpf")
    assert result.returncode == 0 and result.recorder == "ebpf"
    assert result.stored is not None
    kept = {(a.offset, a.length) for a in read_traces([result.stored.folder]) if a.op is Op.READ}
    note = next(n for n in result.notes if n.startswith("eBPF could not account for"))
    dropped = int(note.split()[5])
    assert kept <= {(i * 1000, 100) for i in range(1000)}
    assert len(kept) + dropped == 1000 and dropped > 0


def test_a_render_that_reads_at_once_is_recorded_from_its_first_call(studio: tuple[Settings, list[str]]) -> None:
    """dd opens and reads before a Python render would have imported anything: the render starts
    only once every program is attached and follows it, so its open is seen and its reads named."""
    settings, argv = studio
    for i in range(3):
        result = record(settings, ["dd", f"if={argv[2]}/c.bin", "of=/dev/null", "bs=4096", "count=3", "status=none"],
                        job=f"j_dd{i}", recorder="ebpf")
        assert result.returncode == 0 and result.recorder == "ebpf"
        assert blocks(result) == {"c.bin": {0, 1, 2}}


REUSE = r"""
import os, sys
d = sys.argv[1]
a = os.open(f"{d}/a.bin", os.O_RDONLY)
os.pread(a, 100, 0)                      # a.bin block 0: the descriptor is now known to the program
os.close(a)
c = os.open(f"{d}/c.bin", os.O_RDONLY)   # the lowest free number: a's
assert c == a
os.pread(c, 100, 4096)                   # c.bin block 1, not a.bin
e = os.open(f"{d}/e.bin", os.O_RDONLY)
os.pread(e, 100, 8192)                   # e.bin block 2
os.dup2(c, e)                            # e's number now names c.bin
os.pread(e, 100, 12288)                  # c.bin block 3
f = os.open(f"{d}/f.bin", os.O_RDONLY)   # close-on-exec, as Python opens them
os.pread(f, 100, 16384)                  # f.bin block 4
os.execv(sys.executable, [sys.executable, "-c",
         "import os, sys\ng = os.open(sys.argv[1], os.O_RDONLY)\nos.pread(g, 100, 20480)", f"{d}/g.bin"])
"""


def test_a_descriptor_number_that_names_another_file_is_not_taken_for_the_old_one(
        studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    """The program remembers what each descriptor names: a number closed and opened again, one
    replaced by dup2, and the numbers after exec (close-on-exec) name their new files."""
    settings, argv = studio
    script = tmp_path / "reuse.py"
    script.write_text(REUSE)
    result = record(settings, [sys.executable, str(script), argv[2]], job="j_reuse", recorder="ebpf")
    assert result.returncode == 0 and result.recorder == "ebpf"
    assert blocks(result) == {"a.bin": {0}, "c.bin": {1, 3}, "e.bin": {2}, "f.bin": {4}, "g.bin": {5}}


def test_a_name_that_names_nothing_is_not_recorded(studio: tuple[Settings, list[str]], tmp_path: Path) -> None:
    """Opens and stats are seen at their entry: one of a name that does not exist failed, and is
    not in the record (a renderer probes search paths for every texture)."""
    settings, argv = studio
    script = tmp_path / "probe.py"
    script.write_text("import os, sys\nd = sys.argv[1]\n"
                      "for name in ('missing.bin', 'sub/missing.bin'):\n"
                      "    try:\n        os.open(os.path.join(d, name), os.O_RDONLY)\n    except OSError:\n        pass\n"
                      "    try:\n        os.stat(os.path.join(d, name))\n    except OSError:\n        pass\n"
                      "os.pread(os.open(os.path.join(d, 'c.bin'), os.O_RDONLY), 10, 0)\n")
    result = record(settings, [sys.executable, str(script), argv[2]], job="j_probe", recorder="ebpf")
    assert result.returncode == 0 and result.recorder == "ebpf"
    assert ops(result, Op.OPEN) == {"c.bin"} and ops(result, Op.STAT) == set()
    assert blocks(result) == {"c.bin": {0}}


def test_the_kernel_memory_is_fixed_when_the_program_loads(tmp_path: Path) -> None:
    """What the kernel holds for the program is sized at load and the same whatever the render
    reads: 1 read and 100,000 distinct reads of a 400 MiB sparse file."""
    data = tmp_path / "big.bin"
    with open(data, "wb") as fh:
        fh.truncate(400 << 20)
    used = []
    for n in (1, 100_000):
        with open(tmp_path / "out.jsonl", "wb") as out:
            rec = ebpf.EbpfRecorder(out, None)
            proc = rec.start([sys.executable, "-c", f"import os\nfd = os.open({str(data)!r}, os.O_RDONLY)\n"
                              f"for i in range({n}):\n    os.pread(fd, 10, i * 4096)\n"])
            assert proc.wait() == 0
            stats = rec.stop()
        assert stats.runs >= n and stats.lost_runs == 0
        used.append(stats.kernel_bytes)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert used[0] == used[1] and 0 < used[0] <= (40 << 20) + 8 * pid_max


def test_a_drain_reads_the_map_to_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel ends a batch at a hash bucket that would not fit whole, so a batch can come back
    short with reads still in the map. Batches of 8 over 20,000 distinct reads (buckets of two
    are common): every read is in the record (a drain that stopped at a short batch lost the rest
    of the map at the render's end)."""
    monkeypatch.setattr(ebpf, "_BATCH", 8)
    data = tmp_path / "big.bin"
    with open(data, "wb") as fh:
        fh.truncate(100 << 20)
    with open(tmp_path / "out.jsonl", "wb") as out:
        rec = ebpf.EbpfRecorder(out, None)
        proc = rec.start([sys.executable, "-c", f"import os\nfd = os.open({str(data)!r}, os.O_RDONLY)\n"
                          "for i in range(20000):\n    os.pread(fd, 10, i * 4096)\n"])
        assert proc.wait() == 0
        stats = rec.stop()
    offsets = {r["offset"] for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
               if r.get("path") == str(data) and "offset" in r}
    assert offsets == {i * 4096 for i in range(20000)} and stats.lost_runs == 0
