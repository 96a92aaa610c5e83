"""The reader applies the read mode per file's mount: real files, mount tables as mountinfo text.

Whether a mode fills a cache is proven on the twin (test_twin_fsc.py); here, that the
reader opens each file the way its mount's line says, and follows mounts that appear.
"""

from __future__ import annotations

import os
from pathlib import Path

from prewarm.plan.pathmap import PathMap
from prewarm.site.guard import Guard
from prewarm.site.mounts import Kernel, Mount, ReadMode, device_of, parse_mountinfo
from prewarm.site.settings import Settings
from prewarm.warm.reader import MountReader


def table_for(path: Path, fstype: str, source: str, options: str) -> tuple[Mount, ...]:
    """A mountinfo where `path`'s device is the given kind of mount."""
    dev = device_of(os.stat(path).st_dev)
    return parse_mountinfo(f"1 0 {dev} / / rw - {fstype} {source} {options}")


def guard(root: Path) -> Guard:
    """The files below `root` may be read, named by their own paths."""
    return Guard((str(root),), PathMap())


def file_of(tmp_path: Path) -> Path:
    f = tmp_path / "tex.tx"
    f.write_bytes(os.urandom(300_000))
    return f


def test_on_the_gateways_fsc_mount_auto_reads_buffered(tmp_path: Path) -> None:
    f = file_of(tmp_path)
    table = table_for(f, "nfs", "filer:/vol", "rw,vers=3,rsize=1048576,fsc")
    new = MountReader(guard(tmp_path), ReadMode.AUTO, lambda: table, Kernel(6, 8))
    old = MountReader(guard(tmp_path), ReadMode.AUTO, lambda: table, Kernel(5, 13))
    for reader, drops in ((new, True), (old, False)):
        opened = reader.open(str(f))
        try:
            assert opened.read(1000, 200_000) == 200_000
            assert (opened.direct, opened.drop_pages) == (False, drops)  # type: ignore[attr-defined]
        finally:
            opened.close()


def test_elsewhere_auto_reads_with_o_direct(tmp_path: Path) -> None:
    f = file_of(tmp_path)
    table = table_for(f, "nfs4", "proxy:/files", "rw,vers=4.2,addr=10.0.0.5")
    opened = MountReader(guard(tmp_path), ReadMode.AUTO, lambda: table, Kernel(6, 8)).open(str(f))
    try:
        assert opened.direct  # type: ignore[attr-defined]
        assert opened.read(0, 4096) == 4096
    finally:
        opened.close()


def test_forced_direct_on_an_fsc_mount_is_obeyed(tmp_path: Path) -> None:
    f = file_of(tmp_path)
    table = table_for(f, "nfs", "filer:/vol", "rw,fsc")
    reader = MountReader(guard(tmp_path), "direct", lambda: table, Kernel(6, 8))
    assert reader.choice(str(f)).direct and "caches nothing" in reader.choice(str(f)).why


def test_a_mount_that_appears_later_is_found(tmp_path: Path) -> None:
    f = file_of(tmp_path)
    tables = [parse_mountinfo("1 0 9:99 / /elsewhere rw - ext4 /dev/x rw"),
              table_for(f, "nfs", "filer:/vol", "rw,fsc")]
    calls: list[int] = []

    def mounts() -> tuple[Mount, ...]:
        calls.append(1)
        return tables[min(len(calls) - 1, 1)]

    reader = MountReader(guard(tmp_path), ReadMode.AUTO, mounts, Kernel(6, 8))
    assert os.stat("/proc/version").st_dev != os.stat(f).st_dev
    assert reader.choice("/proc/version").direct  # reads the first table: no line for /proc's device
    assert not reader.choice(str(f)).direct       # a device not seen before: read again, fsc found
    reader.choice(str(f))
    assert len(calls) == 2


def test_read_mode_is_a_setting() -> None:
    assert Settings().read_mode is ReadMode.AUTO
    assert Settings.from_mapping({"read_mode": "buffered"}, "cfg").read_mode is ReadMode.BUFFERED
