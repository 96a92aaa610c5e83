"""The strace parser: line shapes, descriptor positions, split calls, and facts read off real traces.

Lines marked "strace 6.1" were captured on this machine; the real-trace facts were
read off the raw logs with zcat and checked by hand (or by an independent awk pass).
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import re
from pathlib import Path
from types import ModuleType

import pytest

from prewarm.plan.access import Access, Op
from prewarm.traces import strace
from prewarm.traces.counters import ImportStats, Resolve
from prewarm.traces.strace import parse_strace, unescape

_PID_ONLY = re.compile(r"^(\d+) +(?=\D)")
SOURCE_PATH = Path(strace.__file__).with_name("strace.py")


def _source() -> ModuleType:
    """strace.py run as Python source, beside the module the package imports (the mypyc
    build that `make setup` makes, or the same source when there is no build)."""
    spec = importlib.util.spec_from_file_location("prewarm_strace_source", SOURCE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = _source()


def agree(lines: list[str], frame: int | None = None, resolve: Resolve | None = None,
          where: str = "<strace>") -> tuple[list[Access], ImportStats]:
    """Parse with the fast path, and check that the general parser says exactly the same,
    and that the source says what the installed (compiled) module says."""
    stats, ref, src = ImportStats(), ImportStats(), ImportStats()
    records = list(parse_strace(lines, stats, frame, resolve, where))
    assert records == list(parse_strace(lines, ref, frame, resolve, where, fast=False))
    assert records == list(SOURCE.parse_strace(lines, src, frame, resolve, where))
    assert stats == ref == src
    return records, stats


def parse(text: str, frame: int | None = None, resolve: Resolve | None = None,
          where: str = "<strace>") -> tuple[list[Access], ImportStats]:
    """Every fixture also checks the fast path, as written and with `-tt` stamps added to lines
    that have a pid column but no stamp (the layout the fast path takes)."""
    lines = [line + "\n" for line in text.strip("\n").splitlines()]
    agree([_PID_ONLY.sub(r"\1  12:00:00.000001 ", line) for line in lines], frame, resolve, where)
    return agree(lines, frame, resolve, where)


def reads(records: list[Access]) -> list[tuple[str, int, int]]:
    return [(a.path, a.offset, a.length) for a in records if a.op is Op.READ]


# --- line shapes -------------------------------------------------------------------------

OPEN_READ = ('openat(AT_FDCWD</r>, "/p/a.tx", O_RDONLY) = 3</p/a.tx>',
             'read(3</p/a.tx>, "abc"..., 4096) = 100')


@pytest.mark.parametrize("prefix, tid, t", [
    ("4070  23:34:33.288641 ", 4070, 84873.288641),        # strace -f -tt -o
    ("[pid  4740] 23:50:43.509198 ", 4740, 85843.509198),  # strace -f -tt to stderr
    ("[pid 12] ", 12, None),                               # no timestamps
    ("23:50:43.509941 ", None, 85843.509941),              # a single process: no pid column
    ("1795564243.888472 ", None, 1795564243.888472),       # -ttt: epoch seconds
    ("23:50:43 ", None, 85843.0),                          # -t
    ("4070  ", 4070, None),                                # -f -o, no timestamps
    ("", None, None),                                      # nothing at all
])
def test_line_prefixes(prefix: str, tid: int | None, t: float | None) -> None:
    records, stats = parse("\n".join(prefix + line for line in OPEN_READ))
    assert [(a.op, a.offset, a.length, a.tid) for a in records] == [(Op.OPEN, 0, 0, tid), (Op.READ, 0, 100, tid)]
    assert all(a.t == pytest.approx(t) if t is not None else a.t is None for a in records)
    assert stats.lines == 2 and stats.records == 2 and stats.skipped_lines == 0


@pytest.mark.parametrize("suffix", ["", " <0.000040>", "\r"])
def test_return_value_with_and_without_timing(suffix: str) -> None:
    records, _ = parse("\n".join(line + suffix for line in OPEN_READ))
    assert reads(records) == [("/p/a.tx", 0, 100)]


def test_padded_return_column() -> None:
    """strace 6.1 pads short calls so that `=` lines up: `)   = 4`."""
    records, stats = parse("""
[pid  4739] 23:50:43.509779 openat(AT_FDCWD</tmp/stx>, "/tmp/stx/out.txt", O_RDONLY|O_CLOEXEC <unfinished ...>
23:50:43.509861 <... openat resumed>)   = 4</tmp/stx/out.txt>
read(4</tmp/stx/out.txt>, ""..., 4096)  = 4096
""")
    assert [(a.op, a.offset, a.length) for a in records] == [(Op.OPEN, 0, 0), (Op.READ, 0, 4096)]
    assert stats.unmatched_resumed == 0


# --- descriptor positions ----------------------------------------------------------------

def test_read_uses_return_value_and_moves_position() -> None:
    records, _ = parse("""
1 openat(AT_FDCWD, "/p/c.abc", O_RDONLY) = 3</p/c.abc>
1 read(3</p/c.abc>, "Ogawa"..., 8191) = 8191
1 lseek(3</p/c.abc>, 3014235, SEEK_SET) = 3014235
1 read(3</p/c.abc>, "\\6\\0"..., 8191) = 56
1 read(3</p/c.abc>, ""..., 8191) = 0
1 read(3</p/c.abc>, "x"..., 10) = 10
""")
    assert reads(records) == [("/p/c.abc", 0, 8191), ("/p/c.abc", 3014235, 56), ("/p/c.abc", 3014291, 10)]


@pytest.mark.parametrize("seek", ["-4, SEEK_END", "160488, SEEK_CUR", "160492, SEEK_SET", "0, SEEK_DATA"])
def test_lseek_position_is_its_return_value(seek: str) -> None:
    records, _ = parse(f"""
1 openat(AT_FDCWD, "/p/s.blend", O_RDONLY) = 3</p/s.blend>
1 read(3</p/s.blend>, "(\\265/\\375", 4) = 4
1 lseek(3</p/s.blend>, {seek}) = 160492
1 read(3</p/s.blend>, "\\261\\352\\222\\217", 4) = 4
""")
    assert reads(records)[1] == ("/p/s.blend", 160492, 4)


@pytest.mark.parametrize("call, expected", [
    ('pread64(3</p/t.exr>, ""..., 4096, 8) = 4096', (8, 4096)),
    ('pread64(3</p/t.exr>, "a, b) = 3\\"..."..., 4096, 1048576) = 100', (1048576, 100)),
    ('preadv(3</p/t.exr>, [{iov_base="", iov_len=2}, {iov_base="", iov_len=3}], 2, 77) = 5', (77, 5)),
    ('preadv2(3</p/t.exr>, [{iov_base="he", iov_len=2}, {iov_base="llo", iov_len=3}], 2, 9, 0) = 5', (9, 5)),
    ('preadv2(3</p/t.exr>, [{iov_base="he", iov_len=2}], 1, 9, RWF_NOWAIT) = 2', (9, 2)),
])
def test_positioned_reads_carry_offset_and_keep_position(call: str, expected: tuple[int, int]) -> None:
    records, _ = parse(f"""
1 openat(AT_FDCWD, "/p/t.exr", O_RDONLY) = 3</p/t.exr>
1 lseek(3</p/t.exr>, 500, SEEK_SET) = 500
1 {call}
1 read(3</p/t.exr>, ""..., 10) = 10
""")
    assert reads(records) == [("/p/t.exr", *expected), ("/p/t.exr", 500, 10)]


def test_preadv2_at_minus_one_reads_at_position_and_moves_it() -> None:
    records, _ = parse("""
1 openat(AT_FDCWD, "/p/t.exr", O_RDONLY) = 3</p/t.exr>
1 lseek(3</p/t.exr>, 40, SEEK_SET) = 40
1 preadv2(3</p/t.exr>, [{iov_base="", iov_len=8}], 1, -1, 0) = 8
1 readv(3</p/t.exr>, [{iov_base="", iov_len=8}, {iov_base="", iov_len=8}], 2) = 16
1 read(3</p/t.exr>, ""..., 10) = 10
""")
    assert reads(records) == [("/p/t.exr", 40, 8), ("/p/t.exr", 48, 16), ("/p/t.exr", 64, 10)]


def test_threads_share_positions_keyed_by_descriptor_and_path() -> None:
    """Thread 11 opens and seeks, thread 12 reads: one fd table, one position."""
    records, _ = parse("""
11 openat(AT_FDCWD, "/p/a", O_RDONLY) = 5</p/a>
11 lseek(5</p/a>, 1000, SEEK_SET) = 1000
12 read(5</p/a>, ""..., 64) = 64
11 read(5</p/a>, ""..., 64) = 64
""")
    assert [(a.offset, a.tid) for a in records if a.op is Op.READ] == [(1000, 12), (1064, 11)]


def test_reused_descriptor_number_does_not_inherit_position() -> None:
    """`close` is rarely traced: fd 5 of /p/b must not start where /p/a's fd 5 stopped."""
    records, _ = parse("""
1 lseek(5</p/a>, 1000, SEEK_SET) = 1000
1 read(5</p/b>, ""..., 64) = 64
1 read(5</p/a>, ""..., 64) = 64
""")
    assert reads(records) == [("/p/b", 0, 64), ("/p/a", 1000, 64)]


def test_reopen_resets_position() -> None:
    records, _ = parse("""
1 openat(AT_FDCWD, "/p/a", O_RDONLY) = 3</p/a>
1 read(3</p/a>, ""..., 64) = 64
1 openat(AT_FDCWD, "/p/a", O_RDONLY) = 3</p/a>
1 read(3</p/a>, ""..., 64) = 64
""")
    assert reads(records) == [("/p/a", 0, 64), ("/p/a", 0, 64)]


# --- split calls, failures, noise ----------------------------------------------------------

def test_unfinished_and_resumed_are_joined_by_pid() -> None:
    records, stats = parse("""
4076  23:34:33.414563 openat(AT_FDCWD</studio/render>, "/p/d.png", O_RDONLY <unfinished ...>
4077  23:34:33.414606 openat(AT_FDCWD</studio/render>, "/p/m.png", O_RDONLY <unfinished ...>
4076  23:34:33.414640 <... openat resumed>) = 4</p/d.png> <0.000045>
4077  23:34:33.414672 <... openat resumed>) = 5</p/m.png> <0.000049>
4076  23:34:33.414840 pread64(4</p/d.png>,  <unfinished ...>
4077  23:34:33.414891 read(5</p/m.png>,  <unfinished ...>
4076  23:34:33.414921 <... pread64 resumed>"\\211PNG\\r\\n\\32\\n", 8, 0) = 8 <0.000062>
4077  23:34:33.414969 <... read resumed>"\\342\\4"..., 4096) = 4096 <0.000058>
""")
    assert [(a.path, a.op, a.offset, a.length, a.tid) for a in records] == [
        ("/p/d.png", Op.OPEN, 0, 0, 4076), ("/p/m.png", Op.OPEN, 0, 0, 4077),
        ("/p/d.png", Op.READ, 0, 8, 4076), ("/p/m.png", Op.READ, 0, 4096, 4077)]
    assert records[2].t == pytest.approx(84873.414840)  # when the call started
    assert stats.unmatched_resumed == 0 and stats.skipped_lines == 0


def test_resumed_without_start_is_counted_not_fatal() -> None:
    records, stats = parse("""
4073  23:34:32.322039 <... newfstatat resumed>{st_mode=S_IFREG|0644, st_size=35527, ...}, AT_EMPTY_PATH) = 0 <0.000040>
4073  23:34:32.322125 <... mmap resumed>) = 0x7f693d0af000 <0.000028>
4070  23:34:32.329245 <... read resumed>"/root\\n", 4096) = 6 <0.007127>
4070  23:34:32.329300 read(3</p/a>, "x", 1) = 1
""")
    assert reads(records) == [("/p/a", 0, 1)]
    assert stats.unmatched_resumed == 3 and stats.skipped_lines == 0


def test_resumed_with_a_different_call_name_does_not_join() -> None:
    records, stats = parse("""
7 read(3</p/a>,  <unfinished ...>
7 <... pread64 resumed>"x", 1, 0) = 1
""")
    assert records == [] and stats.unmatched_resumed == 1


@pytest.mark.parametrize("line", [
    'openat(AT_FDCWD</r>, "/p/missing", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000036>',
    'newfstatat(AT_FDCWD</tmp/stx>, "nope", 0x7ffd455ea460, 0) = -1 ENOENT (No such file or directory)',
    'read(3</p/a>, 0x7ffd, 4096) = -1 EAGAIN (Resource temporarily unavailable)',
    'read(3</p/a>,  <unavailable>) = ?',
    'pread64(3</p/a>, 0x7f, 10, 0) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)',
])
def test_failed_calls_are_counted_and_skipped(line: str) -> None:
    records, stats = parse("1 " + line)
    assert records == [] and stats.failed_calls == 1 and stats.skipped_lines == 0


@pytest.mark.parametrize("line", [
    "--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=4071, si_status=0} ---",
    "+++ exited with 0 +++",
    "close(3</p/a>) = 0",
    "write(1, \"done\\n\", 5) = 5",
    "exit_group(0) = ?",
])
def test_other_strace_lines_are_ignored_quietly(line: str) -> None:
    records, stats = parse(f"4070  23:34:33.288641 {line}\nstrace: Process 4071 attached")
    assert records == [] and stats.skipped_lines == 0 and stats.failed_calls == 0 and stats.lines == 2


def test_unreadable_lines_are_counted_with_where_the_first_is() -> None:
    records, stats = parse("""
1 read(3</p/a>, "x", 1) = 1
this is not strace
1 read(3</p/a>, "x", 1
[pid abc] read(3</p/a>, "x", 1) = 1
1 read(3</p/a>, "x", 1) = many
1 read(3</p/a>, "x", 1) = 1
""", where="f.log")
    assert reads(records) == [("/p/a", 0, 1), ("/p/a", 1, 1)]
    assert stats.skipped_lines == 4 and stats.first_skipped == "f.log:2" and stats.lines == 6


@pytest.mark.parametrize("tail", ["", "\n", " ", "\r\n", " <0.0001>"])
@pytest.mark.parametrize("call", ['read(3</p/a>, "x", 1)', 'pread64(3</p/a>, "x", 1, 0)', 'lseek(3</p/a>, 5, SEEK_SET)'])
def test_a_line_torn_after_the_equals_sign_is_counted_not_fatal(call: str, tail: str) -> None:
    """A render killed mid-write leaves `read(...) = ` and nothing after it, with or without its newline."""
    lines = [f"1  12:00:00.000001 {call} = {tail}", '1  12:00:00.000002 read(3</p/a>, "x", 1) = 1\n']
    records, stats = agree(lines)
    assert reads(records) == [("/p/a", 0, 1)] and stats.skipped_lines == 1 and stats.lines == 2


# --- paths ---------------------------------------------------------------------------------

STRACE_61_SPECIAL = r'''
4716  23:50:37.943032 openat(AT_FDCWD</tmp/stx>, "a>b c\"d,\303\251).txt", O_RDONLY|O_CLOEXEC) = 3</tmp/stx/a\76b c\"d,\303\251).txt> <0.000062>
4716  23:50:37.943181 pread64(3</tmp/stx/a\76b c\"d,\303\251).txt>, "ell", 3, 1) = 3 <0.000066>
4716  23:50:37.943318 read(3</tmp/stx/a\76b c\"d,\303\251).txt>, "he", 2) = 2 <0.000049>
4716  23:50:37.943433 lseek(3</tmp/stx/a\76b c\"d,\303\251).txt>, 0, SEEK_SET) = 0 <0.000054>
4716  23:50:37.943568 preadv2(3</tmp/stx/a\76b c\"d,\303\251).txt>, [{iov_base="he", iov_len=2}, {iov_base="llo", iov_len=3}], 2, 0, 0) = 5 <0.000060>
4716  23:50:37.943984 getdents64(4</tmp/stx>, 0x560b86a14880 /* 4 entries */, 32768) = 120 <0.000072>
4716  23:50:37.944136 getdents64(4</tmp/stx>, 0x560b86a14880 /* 0 entries */, 32768) = 0 <0.000060>
4716  23:50:37.947403 newfstatat(3</tmp/stx/a\76b c\"d,\303\251).txt>, "", {st_mode=S_IFREG|0644, st_size=5, ...}, AT_EMPTY_PATH) = 0 <0.000052>
4716  23:50:37.947623 mmap(NULL, 5, PROT_READ, MAP_SHARED, 3</tmp/stx/a\76b c\"d,\303\251).txt>, 0) = 0x7fc0bd374000 <0.000057>
4716  23:50:37.947874 newfstatat(AT_FDCWD</tmp/stx>, "a>b c\"d,\303\251).txt", {st_mode=S_IFREG|0644, st_size=5, ...}, 0) = 0 <0.000040>
'''


def test_escaped_paths_from_strace_61() -> None:
    """A file named `a>b c"d,é).txt`: strace escapes `>`, quotes and UTF-8 bytes."""
    records, stats = parse(STRACE_61_SPECIAL)
    name = '/tmp/stx/a>b c"d,é).txt'
    assert [(a.path, a.op, a.offset, a.length) for a in records] == [
        (name, Op.OPEN, 0, 0), (name, Op.READ, 1, 3), (name, Op.READ, 0, 2), (name, Op.READ, 0, 5),
        ("/tmp/stx", Op.READDIR, 0, 0), (name, Op.STAT, 0, 5), (name, Op.READ, 0, 5), (name, Op.STAT, 0, 5)]
    assert stats.skipped_lines == 0


@pytest.mark.parametrize("raw, path", [
    ("/plain/path", "/plain/path"),
    (r"/a\76b", "/a>b"),
    (r"/caf\303\251", "/café"),
    (r'/q\"uote\\d', '/q"uote\\d'),
    (r"/tab\there", "/tab\there"),
    (r"/hex\x41", "/hexA"),
])
def test_unescape(raw: str, path: str) -> None:
    assert unescape(raw) == path


@pytest.mark.parametrize("line, expected", [
    # the result's -y annotation is canonical (here: a symlinked directory resolved)
    ('openat(AT_FDCWD</tmp>, "/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY|O_CLOEXEC) = 3</usr/lib/x86_64-linux-gnu/libc.so.6>',
     ("/usr/lib/x86_64-linux-gnu/libc.so.6", Op.OPEN)),
    ('openat(AT_FDCWD</studio/render>, "../proj/a.exr", O_RDONLY) = 3', ("/studio/proj/a.exr", Op.OPEN)),
    ('openat(7</studio/proj/tex>, "b.tx", O_RDONLY) = 3', ("/studio/proj/tex/b.tx", Op.OPEN)),
    ('open("/studio/proj/c.vdb", O_RDONLY) = 3</studio/proj/c.vdb>', ("/studio/proj/c.vdb", Op.OPEN)),
    ('open("/studio/proj/c.vdb", O_RDONLY) = 3', ("/studio/proj/c.vdb", Op.OPEN)),
    ('openat2(AT_FDCWD, "/p/x", {flags=O_RDONLY, mode=0, resolve=0}, 24) = 3</p/x>', ("/p/x", Op.OPEN)),
    ('newfstatat(AT_FDCWD</studio/render>, "/studio/proj/d", {st_mode=S_IFDIR|0755, ...}, 0) = 0', ("/studio/proj/d", Op.STAT)),
    ('newfstatat(AT_FDCWD</studio/render>, "rel.txt", {st_mode=S_IFREG|0644, ...}, 0) = 0', ("/studio/render/rel.txt", Op.STAT)),
    ('newfstatat(4</p/e.png>, "", {st_mode=S_IFREG|0644, st_size=99542, ...}, AT_EMPTY_PATH) = 0', ("/p/e.png", Op.STAT)),
    ('statx(AT_FDCWD, "/p/f.usd", AT_STATX_SYNC_AS_STAT, STATX_ALL, {stx_mask=STATX_BASIC_STATS, ...}) = 0', ("/p/f.usd", Op.STAT)),
    ('stat("/p/g", {st_mode=S_IFREG|0644, st_size=5, ...}) = 0', ("/p/g", Op.STAT)),
    ('lstat("/p/h", {st_mode=S_IFLNK|0777, ...}) = 0', ("/p/h", Op.STAT)),
    ('fstat(3</p/i (deleted)>, {st_mode=S_IFREG|0644, ...}) = 0', ("/p/i", Op.STAT)),
    ('getdents64(3</studio/proj/tex>, 0x5581 /* 12 entries */, 32768) = 384', ("/studio/proj/tex", Op.READDIR)),
])
def test_metadata_calls(line: str, expected: tuple[str, Op]) -> None:
    records, _ = parse("9 " + line)
    assert [(a.path, a.op) for a in records] == [expected]


@pytest.mark.parametrize("line, size", [
    ('newfstatat(4</p/e.png>, "", {st_mode=S_IFREG|0644, st_size=99542, ...}, AT_EMPTY_PATH) = 0', 99542),
    ('fstat(3</p/a{b}.tx>, {st_mode=S_IFREG|0644, st_size=33243798, ...}) = 0', 33243798),
    ('statx(AT_FDCWD, "/p/f.usd", AT_STATX_SYNC_AS_STAT, STATX_ALL, {stx_mask=STATX_BASIC_STATS|STATX_MNT_ID, '
     'stx_attributes=0, stx_mode=S_IFREG|0644, stx_size=1234, ...}) = 0', 1234),
    ('stat("/p/st_size=9", {st_mode=S_IFREG|0644, st_size=5, ...}) = 0', 5),
    ('newfstatat(AT_FDCWD, "/p/d", {st_mode=S_IFDIR|0755, st_size=4096, ...}, 0) = 0', 0),
    ('newfstatat(AT_FDCWD, "/p/x", {st_mode=S_IFREG|0644, ...}, 0) = 0', 0),
])
def test_a_stat_carries_the_size_it_returned_for_a_regular_file(line: str, size: int) -> None:
    """A raw trace's stat sizes are what a plan tells a changed file by (no size shown: 0, unknown)."""
    records, _ = parse("9 " + line)
    assert [(a.op, a.length) for a in records] == [(Op.STAT, size)]


@pytest.mark.parametrize("line", [
    'read(0<pipe:[12345]>, "", 1) = 1',
    'read(5<socket:[8812]>, "x", 1) = 1',
    'read(3, "x", 1) = 1',
    'read(9<anon_inode:[eventfd]>, "\\1\\0\\0\\0\\0\\0\\0\\0", 8) = 8',
    'mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f2',
    'newfstatat(AT_FDCWD, "relative/without/dir", {st_mode=S_IFREG, ...}, 0) = 0',
    'stat("relative", {st_mode=S_IFREG, ...}) = 0',
    'getdents64(3</p/empty>, 0x5581 /* 0 entries */, 32768) = 0',
])
def test_descriptors_without_absolute_paths_are_ignored(line: str) -> None:
    records, stats = parse("1 " + line)
    assert records == [] and stats.skipped_lines == 0


def test_mmap_of_a_file_is_a_read_of_the_mapped_region() -> None:
    records, _ = parse('1 mmap(NULL, 1048576, PROT_READ, MAP_PRIVATE, 3</p/big.vdb>, 0x200000) = 0x7f0000000000')
    assert reads(records) == [("/p/big.vdb", 0x200000, 1048576)]


def test_outputs_are_not_inputs() -> None:
    """Blender writes beauty.0001.png (O_TRUNC) and stats it: neither is a read to warm."""
    records, _ = parse("""
4070  23:34:34.812914 openat(AT_FDCWD</studio/render>, "/studio/proj/shot100/render/beauty.0001.png", O_RDWR|O_CREAT|O_TRUNC, 0666) = 4</studio/proj/shot100/render/beauty.0001.png> <0.000071>
4070  23:34:34.813091 newfstatat(4</studio/proj/shot100/render/beauty.0001.png>, "", {st_mode=S_IFREG|0644, st_size=0, ...}, AT_EMPTY_PATH) = 0 <0.000026>
4070  23:34:34.813100 openat(AT_FDCWD, "/p/log.txt", O_WRONLY|O_APPEND) = 5</p/log.txt>
4070  23:34:34.813200 openat(AT_FDCWD, "/p/in.exr", O_RDONLY|O_CLOEXEC) = 6</p/in.exr>
""")
    assert [(a.path, a.op) for a in records] == [("/p/in.exr", Op.OPEN)]


def test_resolve_maps_and_filters_each_path() -> None:
    seen: list[str] = []

    def resolve(path: str) -> str | None:
        seen.append(path)
        return path.replace("/net/filer01/proj", "/studio/proj") if path.startswith("/net/") else None

    records, stats = parse("""
1 read(3</net/filer01/proj/a.tx>, "", 10) = 10
1 read(3</net/filer01/proj/a.tx>, "", 10) = 10
1 read(4</usr/lib/libc.so.6>, "", 10) = 10
""", resolve=resolve, frame=1001)
    assert [(a.path, a.offset, a.frame) for a in records] == [("/studio/proj/a.tx", 0, 1001), ("/studio/proj/a.tx", 10, 1001)]
    assert seen == ["/net/filer01/proj/a.tx", "/usr/lib/libc.so.6"] * 6  # once per distinct path, in each of
    assert stats.filtered == 1 and stats.records == 2                      # the 6 parses `parse` makes


def test_streams_without_reading_ahead() -> None:
    """An endless log yields records as it goes: memory does not depend on log length."""
    endless = itertools.cycle(['1 read(3</p/a>, "", 10) = 10\n'])
    first = list(itertools.islice(parse_strace(endless, ImportStats()), 1000))
    assert first[-1].offset == 9990


# --- facts read off the real traces ----------------------------------------------------------

def real_frame(real_traces: Path, shot: str, frame: int) -> tuple[list[Access], ImportStats]:
    with gzip.open(real_traces / shot / "traces" / f"frame.{frame:04d}.strace.gz", "rt") as fh:
        return agree(list(fh), frame=frame)


@pytest.mark.parametrize("shot", ["shot100", "shot200"])
def test_fast_path_agrees_with_the_general_parser_on_every_real_trace(real_traces: Path, shot: str) -> None:
    for f in sorted((real_traces / shot / "traces").iterdir()):
        with gzip.open(f, "rt") as fh:
            lines = list(fh)
        records, stats = agree(lines, frame=1)
        assert stats.records == len(records) > 500 and stats.lines == len(lines)
        # and cut anywhere (a trace torn mid-line, split calls left unfinished)
        agree(lines[: len(lines) // 3] + [lines[len(lines) // 3][:40]] + lines[len(lines) // 2:], frame=1)


SHOT100 = "/studio/proj/shot100"
BLEND = f"{SHOT100}/shot100_lighting_v001.blend"
ABC = f"{SHOT100}/cache/crate_anim.abc"
EXR = "/studio/proj/assets/tex/studio_hdri.exr"
PNG = "/studio/proj/assets/tex/crate_diff.1001.png"


def test_shot100_blend_footer_read_after_seek_from_end(real_traces: Path) -> None:
    records, _ = real_frame(real_traces, "shot100", 1)
    blend = [(a.op, a.offset, a.length) for a in records if a.path == BLEND]
    # opened; 7 magic bytes at 0; lseek(-4, SEEK_END) = 160492 then 4 bytes; -5 -> 1 byte; -9 -> 4 bytes
    assert blend[:5] == [(Op.OPEN, 0, 0), (Op.READ, 0, 7), (Op.READ, 160492, 4), (Op.READ, 160491, 1), (Op.READ, 160487, 4)]
    # lseek(-41, SEEK_END) = 160455, then eight 4-byte reads walking forward
    assert blend[5:13] == [(Op.READ, 160455 + 4 * i, 4) for i in range(8)]
    # after lseek(243) the 100116-byte block, after lseek(100359) the 60096-byte one: the file's end
    assert (Op.READ, 243, 100116) in blend and (Op.READ, 100359, 60096) in blend
    assert max(o + n for _, o, n in blend) == 160455 + 41 == 160496  # sizes.json: 160496


def test_shot100_alembic_reads_follow_lseek(real_traces: Path) -> None:
    records, _ = real_frame(real_traces, "shot100", 1)
    abc = [(a.offset, a.length, a.tid) for a in records if a.path == ABC and a.op is Op.READ]
    # 8191 bytes at 0; lseek(8) back to just after the 8-byte magic and 8191 more;
    # lseek(3014235) and a read of 8191 that returned only 56: the file's last bytes
    assert abc[:4] == [(0, 8191, 4076), (8, 8191, 4076), (3014235, 56, 4076), (3014243, 48, 4076)]


def test_shot100_exr_pread64_runs(real_traces: Path) -> None:
    records, _ = real_frame(real_traces, "shot100", 1)
    exr = [(a.offset, a.length) for a in records if a.path == EXR and a.op is Op.READ]
    # two 4096-byte header reads through read(), then pread64(8, 0) and pread64(4096, 8)
    assert exr[:4] == [(0, 4096), (0, 4096), (0, 8), (8, 4096)]


def test_shot100_png_unfinished_resumed_reads(real_traces: Path) -> None:
    records, stats = real_frame(real_traces, "shot100", 1)
    png = {round(a.t or 0, 6): (a.op, a.offset, a.length) for a in records if a.path == PNG and a.tid == 4076}
    # 23:34:33.414840 pread64(... <unfinished ...>; resumed `"\211PNG\r\n\32\n", 8, 0) = 8`
    assert png[84873.414840] == (Op.READ, 0, 8)
    # lseek(0) split in two, then 4096-byte read() calls, all split but the fifth, at 0, 4096, ...
    assert [png[t] for t in (84873.415941, 84873.416639, 84873.416755, 84873.417174, 84873.417315)] == [
        (Op.READ, offset, 4096) for offset in range(0, 5 * 4096, 4096)]
    assert stats.unmatched_resumed == 12 and stats.skipped_lines == 0 and stats.failed_calls == 0


@pytest.mark.parametrize("shot, frame, expected", [
    # per file: (read calls, bytes read) from an independent awk pass over the raw log
    ("shot100", 1, {PNG: (100, 392133), EXR: (1033, 6324240), f"{SHOT100}/anim_tex/monitor.0001.png": (30, 103670),
                    ABC: (390, 2673542), BLEND: (30, 321006)}),
    ("shot200", 1, {"/studio/proj/assets/lookdev/tex/rock_col.tx": (223, 431231),
                    "/studio/proj/assets/lookdev/tex/rock_nrm.tx": (223, 433316),
                    "/studio/proj/assets/lookdev/tex/terrain_col.tx": (271, 550125),
                    "/studio/proj/assets/lookdev/tex/terrain_spec.tx": (271, 550198)}),
])
def test_per_file_totals_match_an_independent_count(real_traces: Path, shot: str, frame: int,
                                                      expected: dict[str, tuple[int, int]]) -> None:
    records, _ = real_frame(real_traces, shot, frame)
    totals: dict[str, tuple[int, int]] = {}
    for a in records:
        if a.op is Op.READ:
            calls, size = totals.get(a.path, (0, 0))
            totals[a.path] = (calls + 1, size + a.length)
    assert totals == expected


@pytest.mark.parametrize("shot, path, count, offset_sum, max_end", [
    # position tracking re-done in awk (openat -> 0, lseek -> return, read -> += return)
    ("shot100", ABC, 390, 725441080, 3014291),
    ("shot100", PNG, 100, 18288640, 388005),
    ("shot200", "/studio/proj/assets/lookdev/tex/rock_col.tx", 223, 6473672595, 33430219),
])
def test_offsets_match_an_independent_position_tracker(real_traces: Path, shot: str, path: str, count: int,
                                                       offset_sum: int, max_end: int) -> None:
    records, _ = real_frame(real_traces, shot, 1)
    got = [a for a in records if a.path == path and a.op is Op.READ]
    assert (len(got), sum(a.offset for a in got), max(a.offset + a.length for a in got)) == (count, offset_sum, max_end)
