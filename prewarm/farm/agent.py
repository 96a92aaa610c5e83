"""The knfsd-cache-utils agent over HTTP, and the check that a gateway's workers warm the proxy they should.

Behind DNS round-robin or a load balancer every knfsd proxy keeps its own cache and
each client is pinned to one. A warm therefore fills the cache of whichever proxy the
worker's mount reaches, which is not necessarily the proxy the gateway's render nodes
use. Where a gateway's agent URL is configured (`agent_url`, `gateway_agents`), the
check asks two agents for `/api/v1/nodeInfo`:
- the configured one: the proxy this gateway's warm is meant for;
- the one behind this machine's mount: port 80 of the address the NFS client is
  connected to (`addr=` in mountinfo), which behind a load balancer with client
  affinity answers as the proxy this client is pinned to (the twin declares its own).
Different proxies: the warm goes to a cache the render nodes may not use.

`prewarm doctor` runs the check; a worker can run it for its gateway at start-up.
Answers are gzip-encoded whatever the client asks (requests decodes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests

from prewarm.errors import ServiceError
from prewarm.site.agent import (
    MountCounters,
    NodeInfo,
    parse_mount_stats,
    parse_node_info,
)
from prewarm.site.mounts import Mount, mount_of, read_mounts
from prewarm.site.settings import Settings

TIMEOUT_S = 3.0
"""Per agent call: the agent answers from memory and /proc, in milliseconds."""


class Agent:
    """One proxy's agent, e.g. `Agent("http://10.0.0.5")`."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str) -> Any:
        where = self.url + path
        try:
            resp = requests.get(where, timeout=self.timeout_s)
            resp.raise_for_status()
            return resp.json()
        except requests.RequestException as exc:
            raise ServiceError(f"gateway agent {where}: {exc}") from exc
        except ValueError as exc:
            raise ServiceError(f"gateway agent {where}: the answer is not JSON") from exc

    def node_info(self) -> NodeInfo:
        return parse_node_info(self._get("/api/v1/nodeInfo"), self.url)

    def mount_stats(self) -> tuple[MountCounters, ...]:
        return parse_mount_stats(self._get("/api/v1/mountStats"), self.url)


class Match(StrEnum):
    SAME = "same"
    """This machine's mount reaches the configured proxy."""
    OTHER = "other"
    """It reaches another proxy: the warm fills a cache the gateway's render nodes may not use."""
    UNKNOWN = "unknown"
    """One of the two agents did not answer, or the mount names no server to ask."""


@dataclass(frozen=True, slots=True)
class ProxyCheck:
    gateway: str
    local: str
    """The mount (a path map's local prefix) whose proxy was checked."""
    match: Match
    expected: NodeInfo | None
    reached: NodeInfo | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "local": self.local, "match": self.match.value, "detail": self.detail,
                "expected": None if self.expected is None else str(self.expected),
                "reached": None if self.reached is None else str(self.reached)}


def check_proxy(gateway: str, agent_url: str, local: str, mount: Mount | None) -> ProxyCheck:
    """Whether reads of `local` (on `mount`) reach the proxy whose agent is `agent_url`."""
    try:
        expected = Agent(agent_url).node_info()
    except ServiceError as exc:
        return ProxyCheck(gateway, local, Match.UNKNOWN, None, None, f"configured agent: {exc}")
    reached_url = mount.agent_url() if mount is not None else None
    if reached_url is None:
        return ProxyCheck(gateway, local, Match.UNKNOWN, expected, None,
                          f"{local} is not an NFS mount naming its server (addr=): cannot tell which proxy it reaches")
    try:
        reached = Agent(reached_url).node_info()
    except ServiceError as exc:
        return ProxyCheck(gateway, local, Match.UNKNOWN, expected, None, f"agent behind {local}: {exc}")
    if expected.same_proxy(reached):
        return ProxyCheck(gateway, local, Match.SAME, expected, reached, f"{local} reaches {reached}, as configured")
    return ProxyCheck(gateway, local, Match.OTHER, expected, reached,
                      f"{local} reaches proxy {reached}, but gateway {gateway}'s agent is {expected}: "
                      f"this warm fills a cache its render nodes may not use")


def check_gateway(settings: Settings, gateway: str) -> list[ProxyCheck]:
    """The proxy check for every local mount of the path map, for a gateway with an agent configured."""
    url = settings.agent_for(gateway)
    if url is None:
        return []
    table = read_mounts()
    locals_ = sorted({e.local for e in settings.path_map.entries if e.local})
    return [check_proxy(gateway, url, local, mount_of(local, table)) for local in locals_]
