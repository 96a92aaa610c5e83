"""Path tokens: expansion per frame, tile matching, and generalising traced paths back to patterns."""

from __future__ import annotations

import pytest

from prewarm.plan.patterns import PathPattern, PatternMatch


@pytest.mark.parametrize(("text", "frame", "path"), [
    ("/s/monitor.####.png", 1, "/s/monitor.0001.png"),
    ("/s/monitor.####.png", 12345, "/s/monitor.12345.png"),
    ("/s/monitor.#.png", 7, "/s/monitor.7.png"),             # one `#` per digit: unpadded
    ("/s/monitor.#.png", 1001, "/s/monitor.1001.png"),
    ("/s/a.@@@.png", 5, "/s/a.005.png"),
    ("/s/a.%04d.exr", 42, "/s/a.0042.exr"),
    ("/s/a.%d.exr", 42, "/s/a.42.exr"),
    ("/s/a.$F.bgeo", 42, "/s/a.42.bgeo"),
    ("/s/a.$F4.bgeo", 42, "/s/a.0042.bgeo"),
    ("/s/a.${F4}_v2.bgeo", 42, "/s/a.0042_v2.bgeo"),
    ("/s/a.####.exr", -10, "/s/a.-010.exr"),                 # the sign counts in the width (printf, Nuke)
    ("/s/a.####.exr", -1234, "/s/a.-1234.exr"),
    ("/s/####/beauty.####.exr", 3, "/s/0003/beauty.0003.exr"),
    ("/s/plain.abc", 3, "/s/plain.abc"),
])
def test_expand(text: str, frame: int, path: str) -> None:
    pattern = PathPattern(text)
    assert pattern.expand(frame) == path
    assert pattern.for_frame(frame).text == path
    assert pattern.for_frame(frame) == PathPattern(path)


@pytest.mark.parametrize("text", [
    "/s/a_$F4_v2.bgeo",       # Houdini reads $F4_v2 as one variable: write ${F4}_v2
    "/s/$FF.bgeo",
    "/s/$FPS.txt",
    "/s/%4d.exr",             # space padding is not a frame token
    "/s/100%.txt",
])
def test_not_tokens(text: str) -> None:
    pattern = PathPattern(text)
    assert pattern.is_literal and pattern.expand() == text


@pytest.mark.parametrize(("text", "has_frame", "has_tile"), [
    ("/t/a.<UDIM>.tx", False, True),
    ("/t/a.%(UDIM)d.tx", False, True),
    ("/t/a.<UVTILE>.tx", False, True),
    ("/t/a_u<U>_v<V>.tx", False, True),
    ("/t/a_MAPID_.tex", False, True),
    ("/t/####/a.<UDIM>.exr", True, True),
    ("/t/a.####.exr", True, False),
    ("/t/a.exr", False, False),
])
def test_token_kinds(text: str, has_frame: bool, has_tile: bool) -> None:
    pattern = PathPattern(text)
    assert (pattern.has_frame, pattern.has_tile) == (has_frame, has_tile)


def test_for_frame_keeps_tile_tokens() -> None:
    pattern = PathPattern("/t/####/a.####.<UDIM>.exr").for_frame(12)
    assert pattern.text == "/t/0012/a.0012.<UDIM>.exr"
    assert pattern.has_tile and not pattern.has_frame
    assert pattern.directory == "/t/0012"


def test_directory_needs_frame_first() -> None:
    with pytest.raises(ValueError, match="expand a frame first"):
        _ = PathPattern("/t/####/a.<UDIM>.exr").directory
    assert PathPattern("/t/x/a.####.<UDIM>.exr").directory == "/t/x"


@pytest.mark.parametrize(("text", "error"), [
    ("/t/<UDIM>/a.tx", "tile tokens must be in the file name, not in a folder"),
    ("/t/a.<UDIM>.<UVTILE>.tx", "mixes tile styles (Mudbox, UDIM)"),
    ("/t/a_u<U>_v<v>.tx", "mixes tile styles (Mudbox, ZBrush)"),
    ("/t/a.<UVTILE>_<U>.tx", "use either <UVTILE> or <U>/<V>, not both"),
])
def test_refused_patterns(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        PathPattern(text)
    assert str(info.value) == f"{text!r}: {error}"


def test_expand_refuses_unresolved_tokens() -> None:
    with pytest.raises(ValueError, match="list its folder"):
        PathPattern("/t/a.<UDIM>.tx").expand()
    with pytest.raises(ValueError, match="a frame is needed"):
        PathPattern("/t/a.####.tx").expand()


UDIM = PathPattern("/t/crate_diff.<UDIM>.png")


@pytest.mark.parametrize(("name", "tile"), [
    ("crate_diff.1001.png", "1001"),
    ("crate_diff.1999.png", "1999"),
    ("/t/crate_diff.1011.png", "1011"),
    ("crate_diff.1000.png", None),          # not a tile: u and v start at 0 -> 1001
    ("crate_diff.2001.png", None),          # beyond 1999 (Nuke's limit)
    ("crate_diff.0001.png", None),
    ("crate_diff.10011.png", None),
    ("crate_diff.101.png", None),
    ("crate_diff.abcd.png", None),
    ("unused_prop.png", None),
    ("/u/crate_diff.1001.png", None),        # another folder
])
def test_udim_matches_only_valid_tiles(name: str, tile: str | None) -> None:
    match = UDIM.match(name)
    assert (match.tile if match else None) == tile


@pytest.mark.parametrize(("text", "name", "tile"), [
    ("/t/a.<UVTILE>.tx", "a.u1_v1.tx", "u1_v1"),
    ("/t/a.<UVTILE>.tx", "a.u10_v2.tx", "u10_v2"),
    ("/t/a.<UVTILE>.tx", "a.u0_v0.tx", None),          # 0-based is ZBrush, not Mudbox
    ("/t/a.<UVTILE>.tx", "a.u01_v1.tx", None),
    ("/t/a.%(UVTILE)d.tx", "a.u2_v3.tx", "u2_v3"),
    ("/t/a_u<U>_v<V>.tx", "a_u1_v2.tx", "u1_v2"),
    ("/t/a_u<U>_v<V>.tx", "a_u0_v2.tx", None),
    ("/t/a.<uvtile>.tx", "a.u0_v0.tx", "u0_v0"),
    ("/t/a_<u>_<v>.tx", "a_0_3.tx", "u0_v3"),
    ("/t/a_MAPID_.tex", "a_1001.tex", "1001"),
    ("/t/a_MAPID_.tex", "a_u0_v0.tex", "u0_v0"),
    ("/t/a_MAPID_.tex", "a_.tex", None),
    ("/t/a.<UDIM>.<UDIM>.tx", "a.1001.1001.tx", "1001"),  # a repeated token reads the same tile
    ("/t/a.<UDIM>.<UDIM>.tx", "a.1001.1002.tx", None),
])
def test_tile_styles(text: str, name: str, tile: str | None) -> None:
    match = PathPattern(text).match(name)
    assert (match.tile if match else None) == tile


@pytest.mark.parametrize(("path", "expected"), [
    ("/r/0001/b.0001.exr", PatternMatch(1, None)),
    ("/r/-010/b.-010.exr", PatternMatch(-10, None)),
    ("/r/0001/b.0002.exr", None),            # the frame tokens disagree
    ("/r/01/b.01.exr", None),                # not written as the pattern writes frame 1
    ("/r/12345/b.12345.exr", PatternMatch(12345, None)),
])
def test_match_reads_frames(path: str, expected: PatternMatch | None) -> None:
    assert PathPattern("/r/####/b.####.exr").match(path) == expected


def test_match_frame_and_tile() -> None:
    assert PathPattern("/t/a.####.<UDIM>.exr").match("/t/a.0007.1002.exr") == PatternMatch(7, "1002")


def test_literal_patterns_have_no_tokens() -> None:
    pattern = PathPattern.literal("/s/notes #2 @home.txt")
    assert pattern.is_literal and pattern.expand() == "/s/notes #2 @home.txt"
    assert pattern != PathPattern("/s/notes #2 @home.txt")


def test_equality_and_hash() -> None:
    assert PathPattern("/a/b.####.exr") == PathPattern("/a/b.####.exr")
    assert PathPattern("/a/b.####.exr") != PathPattern("/a/b.%04d.exr")
    assert len({PathPattern("/a/x"), PathPattern("/a/x"), PathPattern("/a/y")}) == 2
