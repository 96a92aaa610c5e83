"""Frame specs as studios and farms write them, and the one-line errors for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prewarm.errors import ManifestError
from prewarm.plan.framespec import MAX_FRAMES, format_frames, parse_frames


@pytest.mark.parametrize(("spec", "frames"), [
    ("1001-1005", (1001, 1002, 1003, 1004, 1005)),
    ("1-20x5", (1, 6, 11, 16)),
    ("1-20:5", (1, 6, 11, 16)),                      # a step, not fileseq's stagger
    ("1-10y3", (2, 3, 5, 6, 8, 9)),                  # the complement of 1-10x3
    ("1,3,5", (1, 3, 5)),
    ("5,1,3", (5, 1, 3)),                            # the spec's order
    ("-3-2", (-3, -2, -1, 0, 1, 2)),
    ("-10--7", (-10, -9, -8, -7)),
    ("5-1", (5, 4, 3, 2, 1)),
    ("10-1x3", (10, 7, 4, 1)),
    ("10-1:-3", (10, 7, 4, 1)),                      # OpenJD writes descending steps negative
    ("1-5,3-7", (1, 2, 3, 4, 5, 6, 7)),              # repeats dropped, first place kept
    ("1-10x5,1-10", (1, 6, 2, 3, 4, 5, 7, 8, 9, 10)),
    (" 1 - 3 , 7 ", (1, 2, 3, 7)),
    ("42", (42,)),
    ("-5", (-5,)),
    (1001, (1001,)),
    (["1-3", 10, "2"], (1, 2, 3, 10)),
])
def test_parse_frames(spec: str | int | list[str | int], frames: tuple[int, ...]) -> None:
    assert parse_frames(spec, "job.yaml:2") == frames


SYNTAX = "expected e.g. 1001-1100, 1-100x5, 1-100:5, 1-100y5, 1,3,5"


@pytest.mark.parametrize(("spec", "message"), [
    ("1-x", f"job.yaml:2: frames: cannot parse '1-x'; {SYNTAX}"),
    ("1,,3", f"job.yaml:2: frames: cannot parse '1,,3' (an empty item); {SYNTAX}"),
    ("1,2-x", f"job.yaml:2: frames: cannot parse '1,2-x' (at '2-x'); {SYNTAX}"),
    ("1.5", f"job.yaml:2: frames: cannot parse '1.5'; {SYNTAX}"),
    ("1-10#", f"job.yaml:2: frames: cannot parse '1-10#'; {SYNTAX}"),
    ("1 5", f"job.yaml:2: frames: cannot parse '1 5'; {SYNTAX}"),
    ("1-10x0", "job.yaml:2: frames: cannot parse '1-10x0': step 0 in '1-10x0'"),
    ("1-10:-2", "job.yaml:2: frames: cannot parse '1-10:-2': negative step in '1-10:-2' "
                "points away from the end of the range"),
    ("", "job.yaml:2: frames: empty, expected a frame spec such as 1001-1100"),
    ("1-5y1", "job.yaml:2: frames: '1-5y1' selects no frames"),
    ("1-99999999", f"job.yaml:2: frames: '1-99999999' has 99,999,999 frames, more than {MAX_FRAMES:,}"),
    ([], "job.yaml:2: frames: empty list, expected at least one frame"),
    ([1, [2]], "job.yaml:2: frames[1]: expected a frame or a frame spec, got a list"),
    (True, "job.yaml:2: frames: expected a frame spec such as 1001-1100, got a boolean"),
    (1.5, "job.yaml:2: frames: expected a frame spec such as 1001-1100, got a number"),
])
def test_bad_specs_fail_in_one_line(spec: object, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_frames(spec, "job.yaml:2")  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.where == "job.yaml:2"


def test_field_names_the_spec_in_errors() -> None:
    with pytest.raises(ManifestError, match=r"^j\.info:3: Frames: cannot parse"):
        parse_frames("x", "j.info:3", field="Frames")


def test_too_many_frames_across_items() -> None:
    with pytest.raises(ManifestError, match="more than 100,000 frames"):
        parse_frames("1-60000,70000-130000", "m:1")


@pytest.mark.parametrize(("frames", "text"), [
    ((1, 2, 3, 4), "1-4"),
    ((1, 3, 5, 7, 100), "1-7x2,100"),
    ((10, 9, 8), "10-8"),
    ((-3, -2, -1), "-3--1"),
    ((), ""),
])
def test_format_frames(frames: tuple[int, ...], text: str) -> None:
    assert format_frames(frames) == text


@given(st.lists(st.integers(-5000, 5000), min_size=1, max_size=60, unique=True))
def test_format_then_parse_gives_the_same_frames_in_order(frames: list[int]) -> None:
    assert parse_frames(format_frames(frames), "m:1") == tuple(frames)


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(1, 50))
def test_steps_match_python_ranges(start: int, end: int, step: int) -> None:
    direction = 1 if end >= start else -1
    expected = tuple(range(start, end + direction, direction * step))
    assert parse_frames(f"{start}-{end}x{step}", "m:1") == expected
    assert parse_frames(f"{start}-{end}:{step}", "m:1") == expected
    complement = tuple(f for f in range(start, end + direction, direction) if f not in expected)
    if complement:
        assert parse_frames(f"{start}-{end}y{step}", "m:1") == complement
