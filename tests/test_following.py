"""The wait after a submit through Redis (`prewarm.flow.following`): what it says while nothing moves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from prewarm.errors import ServiceError
from prewarm.flow.following import STALL_S, Stall
from prewarm.warm.job import JobInfo


def test_a_stall_is_noted_once_per_interval_then_given_up_naming_the_queue_and_the_way_on() -> None:
    said: list[str] = []
    stall = Stall(["job1"], give_up_s=3 * STALL_S, say=said.append)
    live = [cast(JobInfo, SimpleNamespace(gateway="gw-a"))]
    stall.check(1.0, live)
    assert said == []
    stall.check(STALL_S, live)
    stall.check(STALL_S + 1, live)
    assert len(said) == 1 and "prewarm.gw-a" in said[0]
    stall.check(2 * STALL_S, live)
    assert len(said) == 2
    with pytest.raises(ServiceError) as err:
        stall.check(3 * STALL_S, live)
    assert "prewarm worker --gateway gw-a" in str(err.value) and "prewarm status job1" in str(err.value)
