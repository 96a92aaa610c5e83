"""Resolving inputs on real files in tmp_path, through the site's file system and its guard.

Errors root cannot cause (permission denied, stale handles) are injected by `Spy`, which
wraps the real site file system and also counts what was asked of it, by studio path.
"""

from __future__ import annotations

import os
import textwrap
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from prewarm.flow.jobs import load_manifest
from prewarm.plan.inputs import (
    Failure,
    Missing,
    ResolvedFile,
    ResolvedInputs,
    Stat,
    resolve_inputs,
)
from prewarm.plan.manifest import Manifest, parse_manifest
from prewarm.plan.pathmap import PathMap
from prewarm.plan.records import FileInfo
from prewarm.site.fs import SiteFS, reason
from prewarm.site.guard import Guard

SAMPLES = Path(__file__).resolve().parents[1] / "sample_jobs"
STUDIO = "/studio/proj"


def studio_map(root: Path) -> PathMap:
    return PathMap.parse([{"studio": STUDIO, "local": str(root)}], "test")


class Spy:
    """The site's file system over `root`, with OSErrors injected and calls counted by studio path."""

    def __init__(self, root: Path, errors: dict[str, OSError] | None = None,
                 list_errors: dict[str, OSError] | None = None, workers: int = 16) -> None:
        self.site = SiteFS(Guard((STUDIO,), studio_map(root)), workers)
        self.errors = errors or {}
        self.list_errors = list_errors or {}
        self.stats: Counter[str] = Counter()
        self.listings: Counter[str] = Counter()
        self.lock = threading.Lock()

    def stat_many(self, paths: Sequence[str]) -> list[Stat | Failure]:
        with self.lock:
            self.stats.update(paths)
        real = self.site.stat_many([p for p in paths if p not in self.errors])
        it = iter(real)
        return [Failure(reason(self.errors[p])) if p in self.errors else next(it) for p in paths]

    def listdir(self, path: str) -> list[str] | Failure:
        self.listings[path] += 1
        if path in self.list_errors:
            return Failure(reason(self.list_errors[path]))
        return self.site.listdir(path)


def resolve_with(root: Path, manifest: Manifest, **kwargs: object) -> ResolvedInputs:
    return resolve_inputs(manifest, kwargs.pop("fs", None) or Spy(root, **kwargs))  # type: ignore[arg-type]


def make(root: Path, *names: str, size: int = 10) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)


def resolve(root: Path, frames: str, *inputs: str, **kwargs: object) -> ResolvedInputs:
    body = "\n".join(f"  - {line}" for line in inputs)
    manifest = parse_manifest(f"job: j\nframes: {frames}\ninputs:\n{body}\n", "job.yaml")
    return resolve_with(root, manifest, **kwargs)


def found(resolved: ResolvedInputs) -> list[tuple[str, int | None, str | None]]:
    return [(f.path.removeprefix(STUDIO + "/"), f.frame, f.tile) for f in resolved.files]


def test_a_file_keeps_its_studio_path_size_and_mtime(tmp_path: Path) -> None:
    make(tmp_path, "shot/scene.blend", size=1234)
    os.utime(tmp_path / "shot/scene.blend", (1_700_000_000, 1_700_000_000))
    resolved = resolve(tmp_path, "1-3", f"{STUDIO}/shot/scene.blend")
    assert resolved.files == (ResolvedFile(f"{STUDIO}/shot/scene.blend", 1234, 1_700_000_000.0, 0),)
    assert resolved.files[0].info == FileInfo(f"{STUDIO}/shot/scene.blend", 1234, 1_700_000_000.0)
    assert resolved.missing == () and resolved.listed_dirs == ()


def test_a_missing_file_is_a_finding_not_an_error(tmp_path: Path) -> None:
    make(tmp_path, "a.abc")
    resolved = resolve(tmp_path, "1", f"{STUDIO}/a.abc", f"{STUDIO}/tex/gone.tx")
    assert found(resolved) == [("a.abc", None, None)]
    assert resolved.missing == (Missing(f"{STUDIO}/tex/gone.tx", 5, "not found", 1),)


def test_sequence_with_missing_frames(tmp_path: Path) -> None:
    make(tmp_path, "seq/m.0001.png", "seq/m.0002.png", "seq/m.0004.png", "seq/m.0006.png")
    resolved = resolve(tmp_path, "1-5", f"{STUDIO}/seq/m.####.png")
    assert found(resolved) == [("seq/m.0001.png", 1, None), ("seq/m.0002.png", 2, None),
                               ("seq/m.0004.png", 4, None)]
    assert resolved.missing == (Missing(f"{STUDIO}/seq/m.0003.png", 4, "not found", 0, 3),
                                Missing(f"{STUDIO}/seq/m.0005.png", 4, "not found", 0, 5))


def test_sequence_follows_the_spec_order_and_negative_frames(tmp_path: Path) -> None:
    make(tmp_path, "seq/m.-002.exr", "seq/m.0000.exr", "seq/m.0002.exr")
    resolved = resolve(tmp_path, "2,-2,0", f"{STUDIO}/seq/m.####.exr")
    assert [f for _, f, _ in found(resolved)] == [2, -2, 0]


def test_udim_tiles_that_exist(tmp_path: Path) -> None:
    make(tmp_path, "tex/crate_diff.1001.png", "tex/crate_diff.1002.png", "tex/crate_diff.1011.png",
         "tex/crate_diff.1000.png", "tex/crate_diff.2001.png", "tex/crate_diff.10011.png",
         "tex/unused_prop.png", "tex/crate_diff.1003.png.bak")
    (tmp_path / "tex/crate_diff.1021.png").mkdir()
    resolved = resolve(tmp_path, "1-24", f"{STUDIO}/tex/crate_diff.<UDIM>.png")
    assert found(resolved) == [("tex/crate_diff.1001.png", None, "1001"), ("tex/crate_diff.1002.png", None, "1002"),
                               ("tex/crate_diff.1011.png", None, "1011")]
    assert resolved.listed_dirs == (f"{STUDIO}/tex",)
    assert resolved.missing == (Missing(f"{STUDIO}/tex/crate_diff.1021.png", 4,
                                        "is a folder: end the path with / to warm everything below it", 0),)


def test_no_tiles_and_no_folder(tmp_path: Path) -> None:
    make(tmp_path, "tex/other.1001.png")
    resolved = resolve(tmp_path, "1", f"{STUDIO}/tex/a.<UDIM>.png", f"{STUDIO}/gone/a_u<U>_v<V>.tx")
    assert resolved.files == ()
    assert resolved.missing == (
        Missing(f"{STUDIO}/tex/a.<UDIM>.png", 4, "no tiles found", 0),
        Missing(f"{STUDIO}/gone/a_u<U>_v<V>.tx", 5, f"cannot list {STUDIO}/gone/: not found", 1),
    )
    assert resolved.listed_dirs == (f"{STUDIO}/tex", f"{STUDIO}/gone")


def test_frame_and_tile_tokens_together(tmp_path: Path) -> None:
    make(tmp_path, "r/0001/d.1001.exr", "r/0001/d.1002.exr", "r/0002/d.1001.exr")
    resolved = resolve(tmp_path, "1-3", f"{STUDIO}/r/####/d.<UDIM>.exr")
    assert found(resolved) == [("r/0001/d.1001.exr", 1, "1001"), ("r/0001/d.1002.exr", 1, "1002"),
                               ("r/0002/d.1001.exr", 2, "1001")]
    assert resolved.missing == (Missing(f"{STUDIO}/r/0003/d.<UDIM>.exr", 4,
                                        f"cannot list {STUDIO}/r/0003/: not found", 0, 3),)
    assert resolved.listed_dirs == (f"{STUDIO}/r/0001", f"{STUDIO}/r/0002", f"{STUDIO}/r/0003")


def test_folder_input_walks_everything_below(tmp_path: Path) -> None:
    make(tmp_path, "look/b.tx", "look/a.tx", "look/sub/c.tx", "look/sub/deeper/d.exr", "look/z.txt")
    (tmp_path / "look/empty").mkdir()
    resolved = resolve(tmp_path, "1", f"{STUDIO}/look/")
    assert found(resolved) == [("look/a.tx", None, None), ("look/b.tx", None, None),
                               ("look/sub/c.tx", None, None), ("look/sub/deeper/d.exr", None, None),
                               ("look/z.txt", None, None)]
    assert resolved.missing == ()
    assert resolved.listed_dirs == (f"{STUDIO}/look", f"{STUDIO}/look/empty", f"{STUDIO}/look/sub",
                                    f"{STUDIO}/look/sub/deeper")


def test_include_exclude_and_excluded_folders_are_not_listed(tmp_path: Path) -> None:
    make(tmp_path, "look/a.tx", "look/a.png", "look/old/b.tx", "look/hero/c.tx", "look/hero/c.png")
    (tmp_path / "look/old.tx").symlink_to(tmp_path / "nothing")     # excluded: not a finding either
    manifest = parse_manifest(textwrap.dedent(f"""\
        job: j
        frames: 1
        inputs:
          - path: {STUDIO}/look/
            include: ["*.tx", "hero/*"]
            exclude: [old, old.tx]
        """), "job.yaml")
    resolved = resolve_with(tmp_path, manifest)
    assert resolved.missing == ()
    assert found(resolved) == [("look/a.tx", None, None), ("look/hero/c.png", None, None),
                               ("look/hero/c.tx", None, None)]
    assert f"{STUDIO}/look/old" not in resolved.listed_dirs


def test_folder_findings(tmp_path: Path) -> None:
    make(tmp_path, "file.tx", "only/readme.md")
    (tmp_path / "empty").mkdir()
    manifest = parse_manifest(textwrap.dedent(f"""\
        job: j
        frames: 1
        inputs:
          - {STUDIO}/gone/
          - {STUDIO}/file.tx/
          - {STUDIO}/empty/
          - path: {STUDIO}/only/
            include: ["*.tx"]
          - path: {STUDIO}/alsogone/
            optional: true
        """), "job.yaml")
    resolved = resolve_with(tmp_path, manifest)
    assert resolved.files == ()
    assert resolved.missing == (
        Missing(f"{STUDIO}/gone/", 4, "not found", 0),
        Missing(f"{STUDIO}/file.tx/", 5, "not a folder", 1),
        Missing(f"{STUDIO}/empty/", 6, "no files below", 2),
        Missing(f"{STUDIO}/only/", 7, "no files match include/exclude", 3),
        Missing(f"{STUDIO}/alsogone/", 9, "not found", 4, optional=True),
    )


def test_symlinks_are_followed_and_loops_walked_once(tmp_path: Path) -> None:
    make(tmp_path, "look/a.tx", "elsewhere/b.tx")
    (tmp_path / "look/loop").symlink_to(tmp_path / "look")
    (tmp_path / "look/linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "look/dangling.tx").symlink_to(tmp_path / "nothing")
    resolved = resolve(tmp_path, "1", f"{STUDIO}/look/")
    assert found(resolved) == [("look/a.tx", None, None), ("look/linked/b.tx", None, None)]
    assert resolved.missing == (Missing(f"{STUDIO}/look/dangling.tx", 4, "not found", 0),)


def test_per_frame_folders(tmp_path: Path) -> None:
    make(tmp_path, "r/0001/a.exr", "r/0001/b.exr", "r/0002/a.exr")
    resolved = resolve(tmp_path, "1-2", f"{STUDIO}/r/####/")
    assert found(resolved) == [("r/0001/a.exr", 1, None), ("r/0001/b.exr", 1, None), ("r/0002/a.exr", 2, None)]


def test_a_folder_named_as_a_file_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "dir.tx").mkdir()
    os.mkfifo(tmp_path / "pipe")
    resolved = resolve(tmp_path, "1", f"{STUDIO}/dir.tx", f"{STUDIO}/pipe")
    assert resolved.missing == (
        Missing(f"{STUDIO}/dir.tx", 4, "is a folder: end the path with / to warm everything below it", 0),
        Missing(f"{STUDIO}/pipe", 5, "not a regular file", 1),
    )


def test_permission_denied_and_other_errors_keep_their_words(tmp_path: Path) -> None:
    """Tests run as root, so chmod cannot deny anything: `Spy` injects the errors."""
    make(tmp_path, "a.abc", "locked/b.tx", "tex/a.1001.png", "stale.abc")
    errors: dict[str, OSError] = {f"{STUDIO}/a.abc": PermissionError(13, "Permission denied"),
                                  f"{STUDIO}/locked": PermissionError(13, "Permission denied"),
                                  f"{STUDIO}/stale.abc": OSError(116, "Stale file handle")}
    resolved = resolve(tmp_path, "1", f"{STUDIO}/a.abc", f"{STUDIO}/locked/", f"{STUDIO}/tex/a.<UDIM>.png",
                       f"{STUDIO}/stale.abc", errors=errors,
                       list_errors={f"{STUDIO}/tex": PermissionError(13, "Permission denied")})
    assert resolved.files == ()
    assert resolved.missing == (
        Missing(f"{STUDIO}/a.abc", 4, "permission denied", 0),
        Missing(f"{STUDIO}/locked/", 5, "permission denied", 1),
        Missing(f"{STUDIO}/tex/a.<UDIM>.png", 6, f"cannot list {STUDIO}/tex/: permission denied", 2),
        Missing(f"{STUDIO}/stale.abc", 7, "stale file handle", 3),
    )


def test_nothing_is_stat_ed_or_listed_twice(tmp_path: Path) -> None:
    """Overlapping inputs and many frames: one stat per path, one listing per folder."""
    make(tmp_path, *(f"seq{i}/f.{frame:04d}.exr" for i in range(20) for frame in range(1, 51)))
    make(tmp_path, "tex/t.1001.tx", "tex/t.1002.tx", "tex/other.tx")
    inputs = [f"{STUDIO}/seq{i}/f.####.exr" for i in range(20)] + [
        f"{STUDIO}/seq0/f.0001.exr", f"{STUDIO}/seq0/", f"{STUDIO}/tex/", f"{STUDIO}/tex/t.<UDIM>.tx",
        f"{STUDIO}/tex/t.1001.tx", f"{STUDIO}/seq1/f.0099.exr"]
    body = "\n".join(f"  - {line}" for line in inputs)
    spy = Spy(tmp_path)
    resolved = resolve_inputs(parse_manifest(f"job: j\nframes: 1-60\ninputs:\n{body}\n", "job.yaml"), spy)
    assert len(resolved.files) == 20 * 50 + 1 + 50 + 3 + 2 + 1
    assert len(resolved.missing) == 20 * 10 + 1
    assert max(spy.stats.values()) == 1 and max(spy.listings.values()) == 1
    assert len(spy.stats) == 20 * 50 + 1 + 3 + 2   # the frames that exist, seq1's 0099, the tex files, 2 roots
    assert set(spy.listings) == {f"{STUDIO}/seq{i}" for i in range(20)} | {f"{STUDIO}/tex"}


def test_missing_frames_cost_no_stat_when_the_folder_is_listed(tmp_path: Path) -> None:
    make(tmp_path, "seq/m.0001.png", "seq/m.0003.png")
    spy = Spy(tmp_path)
    resolved = resolve(tmp_path, "1-4", f"{STUDIO}/seq/m.####.png", fs=spy)
    assert [f for _, f, _ in found(resolved)] == [1, 3]
    assert [(m.frame, m.reason) for m in resolved.missing] == [(2, "not found"), (4, "not found")]
    assert sorted(spy.stats) == [f"{STUDIO}/seq/m.0001.png", f"{STUDIO}/seq/m.0003.png"]
    assert resolved.listed_dirs == ()          # renderers open frames by name: nothing to re-list


def test_sequence_in_a_folder_that_cannot_be_listed_falls_back_to_stat(tmp_path: Path) -> None:
    make(tmp_path, "seq/m.0001.png")
    denied = {f"{STUDIO}/seq": PermissionError(13, "Permission denied")}   # an execute-only folder
    resolved = resolve(tmp_path, "1-2", f"{STUDIO}/seq/m.####.png", list_errors=denied)
    assert [f for _, f, _ in found(resolved)] == [1]
    assert resolved.missing == (Missing(f"{STUDIO}/seq/m.0002.png", 4, "not found", 0, 2),)


def test_one_worker_and_many_give_the_same_result(tmp_path: Path) -> None:
    make(tmp_path, *(f"look/d{i}/f{j}.tx" for i in range(5) for j in range(300)), "seq/a.0001.exr")
    inputs = (f"{STUDIO}/look/", f"{STUDIO}/seq/a.####.exr", f"{STUDIO}/gone.abc")
    assert resolve(tmp_path, "1-3", *inputs, workers=1) == resolve(tmp_path, "1-3", *inputs, workers=8)


def test_the_site_maps_studio_paths_and_the_plan_keeps_them(tmp_path: Path) -> None:
    make(tmp_path / "mnt", "proj/a.abc")
    manifest = parse_manifest("job: j\nframes: 1\ninputs: [/studio/proj/a.abc]\n", "job.yaml")
    path_map = PathMap.parse([{"studio": "/studio", "local": str(tmp_path / "mnt")}], "test")
    spy = Spy(tmp_path)
    spy.site = SiteFS(Guard(("/studio",), path_map))
    resolved = resolve_inputs(manifest, spy)
    assert [f.path for f in resolved.files] == ["/studio/proj/a.abc"]
    assert list(spy.stats) == ["/studio/proj/a.abc"]


@pytest.mark.parametrize(("shot", "frames", "files"), [
    ("shot100", 24, 1 + 1 + 3 + 1 + 24),   # blend, abc, 3 UDIM tiles, EXR, one monitor image per frame
    ("shot200", 36, 6),                    # the six lookdev .tx textures
])
def test_sample_manifests_resolve_on_the_real_shot_trees(shot_trees: Path, shot: str, frames: int,
                                                         files: int) -> None:
    manifest = load_manifest(SAMPLES / shot / "manifest.yaml")
    resolved = resolve_with(shot_trees, manifest)
    assert len(manifest.frames) == frames
    assert len(resolved.files) == files
    assert resolved.missing == ()
    assert all(f.path.startswith(STUDIO + "/") and f.size > 0 for f in resolved.files)
    assert not any("unused_prop" in f.path for f in resolved.files)
    if shot == "shot100":
        assert resolved.listed_dirs == (f"{STUDIO}/assets/tex",)
        assert [f.tile for f in resolved.files if f.tile] == ["1001", "1002", "1003"]
        assert [f.frame for f in resolved.files if f.frame is not None] == list(range(1, 25))
