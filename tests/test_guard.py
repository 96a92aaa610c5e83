"""The one path guard, attacked directly: symlinks out of the roots, remapped paths, loops, a swap race.

Every case runs on real files in tmp_path: `local` stands for the gateway mount that
the site's path map sends `/studio/proj` to, and `outside` for the rest of the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prewarm.plan.pathmap import PathMap
from prewarm.site.guard import MAX_LINKS, Guard, Refused

STUDIO = "/studio/proj"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    local = tmp_path / "mnt" / "proj"
    outside = tmp_path / "etc"
    (local / "tex" / "v003").mkdir(parents=True)
    (local / "tex" / "v003" / "a.tx").write_bytes(b"A" * 100)
    outside.mkdir()
    (outside / "shadow").write_bytes(b"root:secret")
    return local, outside


def guard(local: Path, *extra: dict[str, str]) -> Guard:
    return Guard((STUDIO,), PathMap.parse([{"studio": STUDIO, "local": str(local)}, *extra], "test"))


def read(g: Guard, studio: str) -> bytes:
    fd, _ = g.open(studio)
    try:
        return os.read(fd, 1000)
    finally:
        os.close(fd)


def test_a_plain_file_resolves_to_its_local_path(tree: tuple[Path, Path]) -> None:
    local, _ = tree
    where = guard(local).resolve(f"{STUDIO}/tex/v003/a.tx")
    assert where.studio == f"{STUDIO}/tex/v003/a.tx" and where.local == str(local / "tex/v003/a.tx")
    assert read(guard(local), f"{STUDIO}/tex/v003/a.tx") == b"A" * 100


def test_latest_links_inside_the_roots_keep_working(tree: tuple[Path, Path]) -> None:
    local, _ = tree
    (local / "tex" / "latest").symlink_to("v003")                                  # relative
    (local / "tex" / "abs").symlink_to(f"{STUDIO}/tex/v003")                       # a filer path
    (local / "tex" / "a_latest.tx").symlink_to("v003/a.tx")                        # a file link
    g = guard(local)
    for path in ("tex/latest/a.tx", "tex/abs/a.tx", "tex/a_latest.tx"):
        assert g.resolve(f"{STUDIO}/{path}").studio == f"{STUDIO}/tex/v003/a.tx"
        assert read(g, f"{STUDIO}/{path}") == b"A" * 100


def test_an_absolute_link_target_is_a_filer_path_mapped_by_the_site(tree: tuple[Path, Path]) -> None:
    """A link written on the filer as /net/filer01/proj/... (an alias) means the same studio file."""
    local, _ = tree
    (local / "tex" / "via_alias.tx").symlink_to("/net/filer01/proj/tex/v003/a.tx")
    g = guard(local, {"studio": STUDIO, "aliases": ["/net/filer01/proj"]})
    assert read(g, f"{STUDIO}/tex/via_alias.tx") == b"A" * 100


@pytest.mark.parametrize("target", ["{outside}/shadow", "../../../etc/shadow", "/etc/shadow", "{outside}"])
def test_links_out_of_the_roots_are_refused_and_nothing_outside_is_opened(tree: tuple[Path, Path],
                                                                           target: str) -> None:
    local, outside = tree
    (local / "evil").symlink_to(target.format(outside=outside))
    g = guard(local)
    for path in (f"{STUDIO}/evil", f"{STUDIO}/evil/shadow"):
        with pytest.raises(Refused, match="a symlink leads outside the allowed roots") as info:
            g.open(path)
        assert str(outside) not in str(info.value) and "secret" not in str(info.value)


def test_a_folder_link_to_etc_cannot_be_listed_or_stat_ed(tree: tuple[Path, Path]) -> None:
    local, outside = tree
    (local / "tex" / "etc").symlink_to(outside)
    g = guard(local)
    with pytest.raises(Refused):
        g.listdir(f"{STUDIO}/tex/etc")
    with pytest.raises(Refused):
        g.stat(f"{STUDIO}/tex/etc/shadow")
    assert g.listdir(f"{STUDIO}/tex") == ["etc", "v003"], "the link itself is only a name in its folder"


def test_a_path_remapped_to_another_root_must_still_be_inside_a_root(tree: tuple[Path, Path]) -> None:
    """A link into another studio prefix the site maps, but that is not a root, is refused."""
    local, outside = tree
    (local / "other").symlink_to("/studio/secrets/shadow")
    g = Guard((STUDIO,), PathMap.parse([{"studio": STUDIO, "local": str(local)},
                                        {"studio": "/studio/secrets", "local": str(outside)}], "test"))
    with pytest.raises(Refused, match="leads outside"):
        g.open(f"{STUDIO}/other")


@pytest.mark.parametrize("path", ["/etc/passwd", "/studio/proj/../../etc/passwd", "/studio/project2/x",
                                  "/studio/proj/./x", "relative/x", "/studio/proj/a\0b", "/studio/proj//x"])
def test_paths_whose_text_leaves_the_roots_are_refused_before_any_io(tree: tuple[Path, Path], path: str) -> None:
    local, _ = tree
    g = guard(local)
    assert not g.allows(path)
    with pytest.raises(Refused):
        g.resolve(path)


def test_symlink_loops_are_refused_not_walked(tree: tuple[Path, Path]) -> None:
    local, _ = tree
    (local / "a").symlink_to("b")
    (local / "b").symlink_to("a")
    (local / "self").symlink_to("self")
    g = guard(local)
    for name in ("a", "self"):
        with pytest.raises(Refused, match=f"more than {MAX_LINKS} symlinks"):
            g.resolve(f"{STUDIO}/{name}/x")


def test_no_roots_refuses_everything_and_says_where_to_set_them(tree: tuple[Path, Path]) -> None:
    local, _ = tree
    g = Guard((), PathMap.parse([{"studio": STUDIO, "local": str(local)}], "test"))
    with pytest.raises(Refused, match="no allowed studio roots: set `roots` or `path_map`"):
        g.open(f"{STUDIO}/tex/v003/a.tx")


def test_a_folder_swapped_for_a_link_between_check_and_open_is_caught_on_the_descriptor(
        tree: tuple[Path, Path]) -> None:
    """The race: resolve says tex/v003 is a folder; before the open, an attacker swaps it for a
    link to /etc. O_NOFOLLOW only guards the last component, so the open succeeds, and the
    descriptor check is what refuses it."""
    local, outside = tree
    g = guard(local)
    where = g.resolve(f"{STUDIO}/tex/v003/a.tx")
    (outside / "a.tx").write_bytes(b"not yours")
    os.rename(local / "tex" / "v003", local / "tex" / "v003.real")
    (local / "tex" / "v003").symlink_to(outside)
    with pytest.raises(Refused, match="changed while being opened"):
        g.open_resolved(f"{STUDIO}/tex/v003/a.tx", where)


def test_the_last_component_swapped_for_a_link_is_not_followed(tree: tuple[Path, Path]) -> None:
    local, outside = tree
    g = guard(local)
    where = g.resolve(f"{STUDIO}/tex/v003/a.tx")
    (local / "tex" / "v003" / "a.tx").unlink()
    (local / "tex" / "v003" / "a.tx").symlink_to(outside / "shadow")
    with pytest.raises(Refused, match="changed while being opened"):  # O_NOFOLLOW refused to follow it
        g.open_resolved(f"{STUDIO}/tex/v003/a.tx", where)


def test_a_missing_file_is_an_ordinary_not_found(tree: tuple[Path, Path]) -> None:
    local, _ = tree
    with pytest.raises(FileNotFoundError):
        guard(local).open(f"{STUDIO}/tex/gone.tx")


def test_open_file_keeps_a_bounded_set_of_folder_descriptors_and_reads_each_file(
        tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each folder is opened once and kept, the least recently used closed beyond `KEEP_FOLDERS`; the files
    opened through them are the files named (and a link inside the roots is still followed)."""
    import prewarm.site.guard as guard_module

    local, _ = tree
    monkeypatch.setattr(guard_module, "KEEP_FOLDERS", 2)
    for i in range(4):
        (local / f"s{i}").mkdir()
        (local / f"s{i}" / "f.tx").write_bytes(bytes([65 + i]) * 10)
    (local / "s0" / "latest.tx").symlink_to("f.tx")
    g = guard(local)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(2):
        for i in range(4):
            fd, where = g.open_file(f"{STUDIO}/s{i}/f.tx")
            try:
                assert os.read(fd, 100) == bytes([65 + i]) * 10
                assert where.local == str(local / f"s{i}" / "f.tx") and where.stat is not None
                assert os.fstat(fd).st_ino == where.stat.st_ino
            finally:
                os.close(fd)
    assert len(g._folders) == 2 and set(g._folders) == {str(local / "s2"), str(local / "s3")}
    assert len(os.listdir("/proc/self/fd")) == before + 2  # only the kept ones stay open
    fd, where = g.open_file(f"{STUDIO}/s0/latest.tx")
    os.close(fd)
    assert where.local == str(local / "s0" / "f.tx")
