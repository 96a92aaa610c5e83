"""Typed settings with documented defaults, from a YAML file and the environment.

Precedence: command-line flags > environment (`PREWARM_*`) > config file > defaults.
The config file is `$PREWARM_CONFIG`, else `/etc/prewarm/config.yaml` if it exists.
The environment is a parameter so tests never touch `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from prewarm.errors import ConfigError
from prewarm.plan.limits import MAX_IN_FLIGHT, granule_problem
from prewarm.plan.manifest import safe_load
from prewarm.plan.model import DEFAULT_GRANULE
from prewarm.plan.pathmap import PathMap
from prewarm.site.mounts import ReadMode

MiB = 1024 * 1024

DEFAULT_CONFIG_FILE = "/etc/prewarm/config.yaml"


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    """Broker and state store. None: `prewarm warm` runs embedded, in-process."""

    granule: int = DEFAULT_GRANULE
    """Planned ranges are widened to whole granules: the unit the plan is scored and budgeted in."""

    read_size: int = MiB
    """Largest single read a warm sends, and the unit the cross-job dedupe remembers: the
    gateway's `rsize` (knfsd-cache-utils mounts with 1 MiB), the largest READ its NFS
    client sends, so one read costs one round trip however the plan was aligned."""

    max_gap: int = 0
    """Planned ranges of a file this close are joined. 0: warming is bandwidth-bound (many
    reads in flight hide round trips), so filling a gap costs bytes and saves nothing."""

    path_map: PathMap = field(default_factory=PathMap)
    """Studio paths <-> trace aliases <-> local (gateway mount) paths."""

    roots: tuple[str, ...] = ()
    """Workers read only below these studio prefixes; empty: below any studio prefix of `path_map`."""

    queue: str = "prewarm"
    """Celery queue of the default gateway node; one queue per gateway node."""

    in_flight: int = 16
    """Reads in flight per worker: at 30 ms RTT and 50 MB/s, 16 fill the link, 1 gets 40%."""

    throttle_bps: int | None = None
    """Bytes per second shared by all workers of a gateway; None: unthrottled."""

    dedupe_ttl_s: int = 6 * 3600
    """How long a warmed range is trusted to still be in the gateway cache."""

    dispatch_window: int = 8
    """Batches per gateway sitting in the broker at once: enough to keep every worker busy,
    few enough that a job whose frames start sooner overtakes the queue within a batch or two."""

    visibility_timeout_s: int = 60
    """Seconds before the broker hands an unacknowledged batch (its worker died) to another worker,
    and after which `prewarm status` calls a batch overdue. A batch carries about half a second of
    transfer (`prewarm.warm.batches.TARGET_SECONDS`), so a minute is a hundred times what a live
    worker needs, and a killed worker's batches run again within about a minute. A batch that runs
    longer is handed out twice: harmless, its result is recorded once."""

    service_token: str | None = None
    """Bearer token `prewarm serve` requires on every call that changes something (also
    $PREWARM_SERVICE_TOKEN); without one the service refuses to start unless told `--no-token`."""

    max_request_bytes: int = 8 * MiB
    """Largest request body the service accepts (413 beyond): a manifest or a bundle is kilobytes."""

    service_dedupe_s: int = 6 * 3600
    """A job submitted again within this long, while its warm is queued, running or done, is not warmed twice."""

    trace_store: str | None = None
    """Folder of the trace store (`ROOT/show/shot/job/frame.NNNN.jsonl.gz`; also $PREWARM_TRACE_STORE).
    Files, not Redis: traces are large and append-only, and render nodes can write them to a
    shared folder. None: no store, plans use only the traces they are given."""

    trace_store_max_bytes: int | None = None
    """The store is pruned to this size (oldest jobs first) after each import; None: unbounded."""

    trace_rules: tuple[str, ...] = ()
    """Regular expressions on job names: jobs whose names give the same first group share traces
    (e.g. `^(\\w+_lighting)_` for every lighting job of a shot). Tried after show/shot and the
    version-number rule (`shot010_lighting_v003` finds `shot010_lighting_v002`)."""

    read_mode: ReadMode = ReadMode.AUTO
    """How workers read: `auto` decides per mount (buffered on the gateway's own fsc mount, where
    O_DIRECT would skip fscache; O_DIRECT elsewhere, so reads reach the gateway), or force one."""

    agent_url: str | None = None
    """The knfsd-cache-utils agent (http://proxy:80) of the default gateway; `prewarm doctor` asks it."""

    gateway_agents: Mapping[str, str] = field(default_factory=dict)
    """Agent URL of each named gateway node: its workers must reach that proxy (checked by nodeInfo)."""

    agent_poll_s: int = 30
    """How often a worker asks its gateways' agents for their counters, to see a restart and warm
    its recent jobs' metadata again (`prewarm.farm.restarts`)."""

    def agent_for(self, gateway: str) -> str | None:
        return self.gateway_agents.get(gateway) or (self.agent_url if gateway == self.queue else None)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: str | None = None) -> Settings:
        env = os.environ if env is None else env
        cfg_path = path or env.get("PREWARM_CONFIG") or (
            DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).exists() else None)
        data: dict[str, Any] = {}
        if cfg_path:
            try:
                with open(cfg_path, "rb") as fh:
                    text = fh.read(CONFIG_MAX_BYTES + 1).decode("utf-8", "replace")
            except OSError as exc:
                raise ConfigError(cfg_path, f"cannot read config file: {exc.strerror}") from exc
            if len(text) > CONFIG_MAX_BYTES:
                raise ConfigError(cfg_path, f"larger than {CONFIG_MAX_BYTES >> 10} KiB: not a settings file")
            loaded = safe_load(text, cfg_path, error=ConfigError)
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(cfg_path, "expected a mapping of settings")
            data = loaded or {}
        settings = cls.from_mapping(data, where=cfg_path or "config")
        if env.get("PREWARM_REDIS_URL"):
            settings = replace(settings, redis_url=env["PREWARM_REDIS_URL"])
        if env.get("PREWARM_SERVICE_TOKEN"):
            settings = replace(settings, service_token=env["PREWARM_SERVICE_TOKEN"])
        if env.get("PREWARM_TRACE_STORE"):
            settings = replace(settings, trace_store=env["PREWARM_TRACE_STORE"])
        return settings

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(where, f"unknown setting(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name == "path_map":
                if not isinstance(value, list):
                    raise ConfigError(f"{where}: path_map", "expected a list")
                kwargs[name] = PathMap.parse(value, f"{where}: path_map")
            elif name == "roots":
                if not isinstance(value, list) or not all(isinstance(r, str) and r.startswith("/") for r in value):
                    raise ConfigError(f"{where}: roots", "expected a list of absolute paths")
                kwargs[name] = tuple(r.rstrip("/") or "/" for r in value)
            elif name == "trace_rules":
                kwargs[name] = _trace_rules(value, f"{where}: trace_rules")
            elif name in ("read_mode", "agent_url", "gateway_agents"):
                kwargs[name] = _site_value(name, value, f"{where}: {name}")
            elif name in ("redis_url", "queue", "service_token", "trace_store"):
                if value is not None and not isinstance(value, str):
                    raise ConfigError(f"{where}: {name}", "expected a string")
                kwargs[name] = value
            else:
                kwargs[name] = _number(name, value, f"{where}: {name}")
        return cls(**kwargs)

    def gateways(self, named: tuple[str, ...]) -> tuple[str, ...]:
        """The gateway nodes a plan warms: those it names, else the default one. Each has its own cache."""
        return named or (self.queue,)

    def allowed_roots(self) -> tuple[str, ...]:
        """Studio prefixes under which reads are allowed (the guard against hostile plans)."""
        if self.roots:
            return self.roots
        return tuple(e.studio for e in self.path_map.entries)


CONFIG_MAX_BYTES = 1 << 20
"""A settings file is a few hundred bytes; a bigger one is the wrong file."""

_CEILINGS = {"in_flight": MAX_IN_FLIGHT, "dispatch_window": 10_000, "visibility_timeout_s": 7 * 86400,
             "dedupe_ttl_s": 30 * 86400, "service_dedupe_s": 30 * 86400, "max_request_bytes": 1 << 30}
"""Beyond these a setting is a typo that would start a million threads or keep keys for ever."""


def _number(name: str, value: object, where: str) -> int | None:
    """An integer setting within its range: granules 4 KiB-64 MiB, counts within `_CEILINGS`."""
    floor = 0 if name == "max_gap" else 1
    if value is None:
        if name not in ("throttle_bps", "trace_store_max_bytes"):
            raise ConfigError(where, "expected an integer, not null")
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < floor or value > 1 << 62:
        raise ConfigError(where, f"expected an integer >= {floor}")
    problem = granule_problem(value) if name in ("granule", "read_size") else None
    if name in _CEILINGS and value > _CEILINGS[name]:
        problem = f"at most {_CEILINGS[name]:,}, got {value:,}"
    if problem:
        raise ConfigError(where, problem)
    return value


def _trace_rules(value: object, where: str) -> tuple[str, ...]:
    """Each rule must compile and capture the part of the name that jobs share."""
    import re

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, "expected a list of regular expressions")
    for i, rule in enumerate(value):
        try:
            groups = re.compile(rule).groups
        except re.error as exc:
            raise ConfigError(f"{where}[{i}]", f"not a valid regular expression: {exc}") from exc
        if groups < 1:
            raise ConfigError(f"{where}[{i}]", "needs a group: the part of the job name that jobs share")
    return tuple(value)


def _site_value(name: str, value: object, where: str) -> Any:
    """The read mode and the agents: what this site's mounts and proxies are."""
    if name == "read_mode":
        try:
            return ReadMode(str(value))
        except ValueError:
            raise ConfigError(where, f"expected one of {', '.join(m.value for m in ReadMode)}") from None
    if name == "agent_url":
        if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise ConfigError(where, "expected an http:// or https:// URL")
        return value
    urls = value.items() if isinstance(value, dict) else ()
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://")) for k, v in urls):
        raise ConfigError(where, "expected a mapping of gateway name to agent URL (http://...)")
    return dict(value)
