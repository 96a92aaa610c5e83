"""Watch each gateway's agent for a restart, and warm the metadata of its recent jobs again when one comes.

A gateway that restarts keeps its fscache data but not its attributes and dentries
(`prewarm.warm.rewarm`): the next frames would pay a WAN round trip per file. The
knfsd agent's per-mount counters show it (`age` goes down). A worker polls its
gateways' agents every `agent_poll_s`; on a restart it re-runs the metadata of the jobs
warmed there within the dedupe window (what is still worth having hot), through the
same guard and read loop as any warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from prewarm.errors import ServiceError
from prewarm.farm.agent import Agent
from prewarm.site.agent import MountCounters
from prewarm.site.settings import Settings
from prewarm.state.jobs import recent_plans
from prewarm.warm.loop import WarmContext
from prewarm.warm.reader import site_reader
from prewarm.warm.rewarm import Rewarm, after_restart

log = logging.getLogger(__name__)

@dataclass
class RestartWatch:
    """The last counters of each watched gateway's agent; `poll` compares and re-warms."""

    settings: Settings
    agents: dict[str, Agent]
    clock: Callable[[], float] = time.time
    last: dict[str, tuple[MountCounters, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, gateways: Iterable[str]) -> RestartWatch:
        """Watch the gateways that have an agent configured (`agent_url`, `gateway_agents`)."""
        return cls(settings, {gw: Agent(url) for gw in gateways if (url := settings.agent_for(gw))})

    def poll(self, r: redis.Redis[bytes]) -> list[tuple[str, Rewarm]]:
        """One look at every agent; the re-warms done for gateways that restarted since the last look."""
        done = []
        for gw, agent in self.agents.items():
            try:
                now = agent.mount_stats()
            except ServiceError as exc:
                log.warning("gateway %s: agent not answering (%s): a restart would go unseen", gw, exc)
                continue
            before = self.last.get(gw)
            self.last[gw] = now
            if before is None:
                continue
            since = self.clock() - self.settings.dedupe_ttl_s
            ctx = WarmContext(reader=site_reader(self.settings), in_flight=self.settings.in_flight)
            rewarm = after_restart(before, now, recent_plans(r, gw, since), ctx)
            if rewarm is not None:
                c = rewarm.result
                log.warning("gateway %s restarted (%s): metadata of its recent jobs warmed again, %d ok, %d failed",
                            gw, ", ".join(rewarm.mounts), c.meta_done, c.meta_failed)
                done.append((gw, rewarm))
        return done
