"""The knfsd agent's answers as values, and the HTTP client against a real twin's agent endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from prewarm.errors import ServiceError
from prewarm.farm.agent import Agent
from prewarm.site.agent import (
    MountCounters,
    parse_duration,
    parse_mount_stats,
    parse_node_info,
    restarted,
)
from tests.fixtures.studio import Studio
from tests.fixtures.twin import StartTwin


@pytest.mark.parametrize("text, secs", [("0s", 0.0), ("0", 0.0), ("46s", 46.0), ("1m0s", 60.0),
                                        ("1h17m46s", 4666.0), ("2.5s", 2.5), ("250ms", 0.25), ("1h0.5m", 3630.0)])
def test_go_durations_parse(text: str, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["", "12", "1x", "s", "1h 2m"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


NODE = {"name": "nfsproxy-hr7s", "hostname": "nfsproxy-hr7s.internal",
        "interfaceConfig": {"ipAddress": "10.67.4.79", "networkName": "vpc", "networkURI": "x"}}


def stats(age: str, normal: int = 10, server: int = 5) -> dict[str, object]:
    return {"mounts": [{"device": "10.0.0.2:/files", "mount": "/srv/nfs/files", "export": "/files",
                        "options": {"fsc": "", "rsize": "1048576"},
                        "stats": {"age": age, "bytes": {"normalRead": normal, "directRead": 0, "serverRead": server},
                                  "events": {}, "operations": []}}]}


def test_node_info_and_mount_stats_parse() -> None:
    node = parse_node_info(NODE, "http://p")
    assert (node.name, node.address, str(node)) == ("nfsproxy-hr7s", "10.67.4.79", "nfsproxy-hr7s (10.67.4.79)")
    (m,) = parse_mount_stats(stats("1h17m46s"), "http://p")
    assert (m.mount, m.age_s, m.normal_read, m.server_read, m.options["rsize"]) == (
        "/srv/nfs/files", 4666.0, 10, 5, "1048576")


def test_an_old_agent_answering_node_info_for_mount_stats_is_told_apart() -> None:
    with pytest.raises(ServiceError, match="no mountStats"):
        parse_mount_stats(NODE, "http://p")
    with pytest.raises(ServiceError, match="mounts\\[0\\]"):
        parse_mount_stats({"mounts": [{"mount": "/x", "stats": {"age": "soon"}}]}, "http://p")
    with pytest.raises(ServiceError, match="no nodeInfo"):
        parse_node_info({"mounts": []}, "http://p")


def counters(mount: str, age: float) -> MountCounters:
    return MountCounters(mount, "", age, 0, 0, 0)


def test_a_restart_is_an_age_that_went_down_or_a_new_mount() -> None:
    before = [counters("/srv/a", 500.0), counters("/srv/b", 500.0)]
    assert restarted(before, [counters("/srv/a", 560.0), counters("/srv/b", 560.0)]) == ()
    assert restarted(before, [counters("/srv/a", 3.0), counters("/srv/b", 560.0)]) == ("/srv/a",)
    assert restarted(before, [*before, counters("/srv/c", 1.0)]) == ("/srv/c",)
    assert restarted([], before) == (), "a first sample says nothing"


@pytest.mark.integration
def test_the_client_reads_a_twins_agent_endpoints(studio: Studio, gateway_twin: StartTwin) -> None:
    twin = gateway_twin(studio.root, rtt_ms=1, mbps=None, node_name="proxy-x")
    agent = Agent(twin.url)
    assert agent.node_info().name == "proxy-x"
    (m,) = agent.mount_stats()
    assert m.mount == str(twin.mount) and m.age_s >= 0


def test_an_agent_that_is_not_there_is_a_service_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="gateway agent http://127.0.0.1:1"):
        Agent("http://127.0.0.1:1", timeout_s=0.5).node_info()
