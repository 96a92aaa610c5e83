"""Mount parsing and the read mode it decides: real mountinfo lines in, choices out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prewarm.site.mounts import (
    Kernel,
    ReadMode,
    by_device,
    by_path,
    choose_read,
    compare_options,
    device_of,
    mount_of,
    parse_kernel,
    parse_mountinfo,
    read_mounts,
    twin_source,
)

GATEWAY = ("603 23 0:46 / /srv/nfs/files rw,noatime shared:328 - nfs 10.0.0.2:/files rw,vers=3,rsize=1048576,"
           "wsize=1048576,namlen=255,acregmin=600,acregmax=600,acdirmin=600,acdirmax=600,hard,nocto,proto=tcp,"
           "nconnect=16,timeo=600,retrans=2,sec=sys,mountaddr=10.0.0.2,fsc,local_lock=none,addr=10.0.0.2")
RENDER = ("88 23 0:51 / /mnt/studio rw,relatime shared:40 - nfs4 proxy.internal:/files rw,vers=4.2,"
          "rsize=1048576,wsize=1048576,hard,proto=tcp,clientaddr=10.1.0.7,addr=10.67.4.79")
TWIN = ("120 27 0:40 / /tmp/x/mnt\\040a ro,nosuid,nodev,relatime - fuse.prewarm-twin "
        + twin_source({"vers": "3", "rsize": "1048576", "fsc": "", "agent": "http://127.0.0.1:4321"})
        + " ro,user_id=0,group_id=0")
ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard"
TEXT = f"{ROOT}\n{GATEWAY}\ngarbage line\n{RENDER}\n{TWIN}\n"


def test_lines_parse_with_both_option_sets_merged() -> None:
    root, gw, render, _ = parse_mountinfo(TEXT)
    assert (gw.mount_id, gw.device, gw.mountpoint, gw.fstype, gw.source) == (
        603, "0:46", "/srv/nfs/files", "nfs", "10.0.0.2:/files")
    assert gw.options["noatime"] == "" and gw.options["rsize"] == "1048576" and gw.fsc
    assert render.nfs and not render.fsc and render.options["vers"] == "4.2"
    assert not root.nfs and not root.fsc


def test_the_twin_declares_its_options_in_its_source_and_reads_like_nfs() -> None:
    twin = parse_mountinfo(TEXT)[3]
    assert twin.mountpoint == "/tmp/x/mnt a"          # octal escapes undone
    assert twin.twin and twin.nfs and twin.fsc
    assert twin.options["rsize"] == "1048576" and twin.options["user_id"] == "0"
    assert twin.agent_url() == "http://127.0.0.1:4321"


def test_agent_of_an_nfs_mount_is_port_80_of_the_address_it_is_connected_to() -> None:
    _, gw, render, _ = parse_mountinfo(TEXT)
    assert render.agent_url() == "http://10.67.4.79"
    assert gw.agent_url() == "http://10.0.0.2"
    assert parse_mountinfo(ROOT)[0].agent_url() is None


def test_lookup_by_device_and_by_longest_path() -> None:
    mounts = parse_mountinfo(TEXT)
    assert by_device(mounts, "0:46") is mounts[1]
    assert by_device(mounts, "9:9") is None
    assert by_path(mounts, "/srv/nfs/files/a/b.tx") is mounts[1]
    assert by_path(mounts, "/srv/nfs/filesystem") is mounts[0]
    stacked = parse_mountinfo(TEXT + "\n130 603 0:60 / /srv/nfs/files rw - tmpfs tmpfs rw")
    assert by_path(stacked, "/srv/nfs/files/x").fstype == "tmpfs"  # type: ignore[union-attr]


@pytest.mark.parametrize("release, kernel", [("6.18.44-fc-v1045", Kernel(6, 18)), ("5.13.0-1031-gcp", Kernel(5, 13)),
                                             ("4.19.0", Kernel(4, 19)), ("weird", None)])
def test_kernel_releases_parse(release: str, kernel: Kernel | None) -> None:
    assert parse_kernel(release) == kernel


def test_caveats_follow_the_kernel_version() -> None:
    assert Kernel(6, 4).drops_safely and not Kernel(6, 3).drops_safely
    assert Kernel(6, 8).fscache_caveats() == ()
    assert any("40 MB/s" in c for c in Kernel(6, 1).fscache_caveats())
    assert any("cancel" in c for c in Kernel(5, 13).fscache_caveats())
    assert any("5.11" in c for c in Kernel(5, 4).fscache_caveats())


def test_auto_reads_the_gateways_fsc_mount_buffered_and_drops_pages_only_from_6_4() -> None:
    _, gw, _, twin = parse_mountinfo(TEXT)
    new, old = choose_read(ReadMode.AUTO, gw, Kernel(6, 8)), choose_read(ReadMode.AUTO, gw, Kernel(5, 13))
    assert (new.mode, new.drop_pages) == (ReadMode.BUFFERED, True)
    assert (old.mode, old.drop_pages) == (ReadMode.BUFFERED, False) and "6.4" in old.why
    assert choose_read(ReadMode.AUTO, twin, Kernel(6, 8)).mode is ReadMode.BUFFERED


def test_auto_reads_everything_else_with_o_direct() -> None:
    root, _, render, _ = parse_mountinfo(TEXT)
    for mount in (render, root, None):
        choice = choose_read(ReadMode.AUTO, mount, Kernel(6, 8))
        assert (choice.mode, choice.drop_pages) == (ReadMode.DIRECT, True)


def test_forced_modes_win_and_say_when_they_defeat_the_cache() -> None:
    _, gw, render, _ = parse_mountinfo(TEXT)
    forced = choose_read(ReadMode.DIRECT, gw, Kernel(6, 8))
    assert forced.direct and "caches nothing" in forced.why
    assert not choose_read(ReadMode.BUFFERED, render, Kernel(6, 8)).direct
    assert not choose_read(ReadMode.BUFFERED, gw, Kernel(5, 15)).drop_pages


def test_options_against_knfsd_cache_utils() -> None:
    _, gw, render, _ = parse_mountinfo(TEXT)
    assert all(c.ok for c in compare_options(gw.options))
    bad = {c.option: c for c in compare_options(render.options) if not c.ok}
    assert set(bad) == {"fsc", "nocto", "acregmin", "acregmax", "acdirmin", "acdirmax", "nconnect"}
    assert bad["nconnect"].have is None and bad["nconnect"].why


def test_this_machines_mounts_find_a_real_file(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"1")
    mounts = read_mounts()
    m = mount_of(str(f), mounts)
    assert m is not None and m.device == device_of(os.stat(f).st_dev)
    assert mount_of(str(tmp_path / "missing"), mounts) is not None   # by path when it cannot be stat-ed
