"""What a knfsd-cache-utils agent says, as values: which proxy answered, and its mounts' counters. Pure.

The agent runs on every proxy (port 80, GET only, gzip-encoded JSON). Two answers matter here:
- `/api/v1/nodeInfo`: the proxy's name and address. Behind DNS round-robin or a load
  balancer each proxy has its own cache, so this is how a client learns which one its
  reads (and so its warm) reach;
- `/api/v1/mountStats`: per origin mount, cumulative NFS client counters and `age`
  (how long it has been mounted). Counters reset on a remount, so an `age` lower than
  last time means the proxy restarted: data on its cache disk may have survived, its
  attribute and dentry caches did not.

An agent answers an unknown path as it answers `/` (nodeInfo), so an answer is checked
for the shape asked for; a wrong shape is a `ServiceError` naming the endpoint.
The HTTP side is `prewarm.farm.agent`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prewarm.errors import ServiceError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|μs|ns|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a Go `time.Duration` string ("1h17m46s", "46.5s", "250ms"); ValueError if it is not one."""
    body = text.removeprefix("-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            raise ValueError(f"not a duration: {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return -total if text.startswith("-") else total


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Which proxy answered."""

    name: str
    hostname: str
    address: str

    def same_proxy(self, other: NodeInfo) -> bool:
        return (self.name, self.hostname, self.address) == (other.name, other.hostname, other.address)

    def __str__(self) -> str:
        return f"{self.name} ({self.address})" if self.address else self.name


@dataclass(frozen=True, slots=True)
class MountCounters:
    """One origin mount of a proxy, as `/api/v1/mountStats` reports it."""

    mount: str
    device: str
    age_s: float
    normal_read: int
    direct_read: int
    server_read: int
    options: Mapping[str, str] = field(default_factory=dict)


def _fail(where: str, what: str) -> ServiceError:
    return ServiceError(f"gateway agent {where}: {what}")


def parse_node_info(data: Any, where: str) -> NodeInfo:
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise _fail(where, "no nodeInfo in the answer (not a knfsd-cache-utils agent?)")
    iface = data.get("interfaceConfig")
    address = iface.get("ipAddress") if isinstance(iface, Mapping) else None
    return NodeInfo(data["name"], str(data.get("hostname") or ""), str(address or ""))


def parse_mount_stats(data: Any, where: str) -> tuple[MountCounters, ...]:
    """The mounts of a mountStats answer; an answer without them (an old agent answers nodeInfo) is refused."""
    if not isinstance(data, Mapping) or not isinstance(data.get("mounts"), list):
        raise _fail(where, "no mountStats in the answer (an agent older than /api/v1/mountStats?)")
    out = []
    for i, m in enumerate(data["mounts"]):
        try:
            stats = m["stats"]
            counts = stats["bytes"]
            out.append(MountCounters(str(m["mount"]), str(m.get("device", "")), parse_duration(stats["age"]),
                                     int(counts["normalRead"]), int(counts["directRead"]), int(counts["serverRead"]),
                                     {str(k): str(v) for k, v in (m.get("options") or {}).items()}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _fail(where, f"mounts[{i}] is not a mount's stats ({exc!r})") from exc
    return tuple(out)


def restarted(before: Sequence[MountCounters], after: Sequence[MountCounters]) -> tuple[str, ...]:
    """Mounts remounted between two samples: their `age` went down, or they were not there before.

    Without an earlier sample nothing can be said: the first one never reports a restart.
    """
    if not before:
        return ()
    old = {m.mount: m for m in before}
    return tuple(m.mount for m in after if m.mount not in old or m.age_s < old[m.mount].age_s)
