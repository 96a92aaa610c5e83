"""`prewarm doctor`'s checks: what a warm on this machine will do, and why, before it is wasted.

For each mount to warm through: its type and options against knfsd-cache-utils'
(rsize, attribute timeouts, nocto, fsc, nconnect), the kernel and its fscache caveats,
the read mode `auto` picks there (or the forced one, and what it costs), whether
O_DIRECT opens, and one timed read. Then the site: the agents of the gateways and the
proxy each reaches (`prewarm.farm.agent`), Redis, the Celery workers consuming each
gateway's queue, and the roots and path map.

Every check ends `ok`, `info`, `warn` or `fail`; `fail` means a warm here would be
useless (nothing to read, O_DIRECT on the gateway's fsc mount, no roots, nobody
consuming a queue, a warm going to another proxy), and `prewarm doctor` exits 1.

Each check is bounded: one file read, a directory walk of at most `WALK_LIMIT`
entries, `TIMEOUT_S` per network call.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prewarm.errors import ServiceError
from prewarm.farm.agent import Agent, Match, check_gateway
from prewarm.plan.pathmap import PathMap
from prewarm.site.guard import Guard
from prewarm.site.mounts import (
    Kernel,
    Mount,
    ReadChoice,
    ReadMode,
    choose_read,
    compare_options,
    mount_of,
    read_mounts,
    this_kernel,
)
from prewarm.site.settings import Settings
from prewarm.state import keys
from prewarm.warm.reader import MountReader

WALK_LIMIT = 2000
"""Directory entries looked at, at most, to find a file for the test read."""

SAMPLE_BYTES = 64 * 1024
"""The timed read: one tile's worth."""

TIMEOUT_S = 2.0
"""Redis ping and Celery's inspect each wait this long at most."""


class Status(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class Target:
    """A local directory to warm through, and the studio prefix mapped to it (if any)."""

    local: str
    studio: str | None = None


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    read_modes: dict[str, str] = field(default_factory=dict)
    """Per target: `direct` or `buffered`, as the warm will read there."""

    @property
    def useless(self) -> bool:
        return any(c.status is Status.FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        first = next(iter(self.read_modes.values()), None)
        return {"read_mode": first, "read_modes": self.read_modes, "useless": self.useless,
                "checks": [c.to_json() for c in self.checks]}


def targets_of(settings: Settings) -> list[Target]:
    """Every local prefix of the path map: where this machine's warms read."""
    return [Target(e.local, e.studio) for e in settings.path_map.entries if e.local]


def mount_checks(target: Target, settings: Settings, kernel: Kernel | None,
                 mounts: Sequence[Mount]) -> tuple[list[Check], ReadChoice]:
    """What a warm through `target.local` does: mount, options, kernel, read mode, O_DIRECT, a timed read."""
    where = target.local
    if not os.path.isdir(where):
        what = "does not exist" if not os.path.exists(where) else "is not a directory"
        return ([Check(f"mount {where}", Status.FAIL, f"{where} {what}: a warm here reads nothing")],
                choose_read(settings.read_mode, None, kernel))
    mount = mount_of(where, mounts)
    out = [_mount_kind(where, mount)]
    out += _options(where, mount)
    out.append(_kernel(kernel, mount))
    choice = choose_read(settings.read_mode, mount, kernel)
    forced_waste = settings.read_mode is ReadMode.DIRECT and mount is not None and mount.fsc
    out.append(Check(f"read mode {where}", Status.FAIL if forced_waste else Status.OK,
                     f"{choice.mode.value} ({settings.read_mode.value}): {choice.why}",
                     {"read_mode": choice.mode.value, "setting": settings.read_mode.value,
                      "drop_pages": choice.drop_pages}))
    guard, top = _guard_of(target)
    sample = _a_file(guard, top)
    if sample is None:
        out.append(Check(f"test read {where}", Status.WARN, f"no readable file found under {where} "
                                                              f"(looked at {WALK_LIMIT} entries at most)"))
        return out, choice
    out.append(_o_direct(guard, sample, choice))
    out.append(_timed_read(guard, sample, settings.read_mode))
    return out, choice


def _mount_kind(where: str, mount: Mount | None) -> Check:
    if mount is None:
        return Check(f"mount {where}", Status.WARN, "no mount found for it in /proc/self/mountinfo")
    data = {"fstype": mount.fstype, "source": mount.source, "mountpoint": mount.mountpoint, "fsc": mount.fsc}
    if mount.fsc:
        what = "the gateway's own NFS client mount (fsc): a worker here warms fscache directly"
    elif mount.nfs:
        what = "an NFS client of the gateway's export (no fsc), as render nodes mount it"
    else:
        return Check(f"mount {where}", Status.WARN, f"{mount.fstype} at {mount.mountpoint}: not an NFS mount, "
                                                    f"so reads here reach no caching gateway", data)
    twin = " (the prewarm gateway twin)" if mount.twin else ""
    return Check(f"mount {where}", Status.OK, f"{mount.fstype} {mount.source.split(':', 1)[0]}{twin} "
                                              f"at {mount.mountpoint}: {what}", data)


def _options(where: str, mount: Mount | None) -> list[Check]:
    if mount is None or not mount.nfs:
        return []
    if not mount.fsc:
        rsize = mount.options.get("rsize")
        small = rsize is not None and rsize.isdigit() and int(rsize) < 1 << 20
        return [Check(f"options {where}", Status.WARN if small else Status.OK,
                      f"rsize={rsize}" + (": below 1 MiB, more round trips per MiB warmed" if small else ""),
                      {"options": dict(mount.options)})]
    out = []
    for c in compare_options(mount.options):
        shown = "not set" if c.have is None else (c.option if c.have == "" else f"{c.option}={c.have}")
        want = c.option if c.want == "" else f"{c.option}={c.want}"
        out.append(Check(f"option {c.option} {where}", Status.OK if c.ok else Status.WARN,
                         f"{shown} (knfsd-cache-utils: {want})" + ("" if c.ok else f": {c.why}")))
    return out


def _kernel(kernel: Kernel | None, mount: Mount | None) -> Check:
    if kernel is None:
        return Check("kernel", Status.WARN, f"cannot read a version from {os.uname().release!r}")
    caveats = kernel.fscache_caveats()
    gateway_side = mount is not None and mount.fsc
    status = Status.WARN if caveats and gateway_side else (Status.INFO if caveats else Status.OK)
    said = f": {'; '.join(caveats)}" if caveats else ": no known fscache caveat"
    return Check("kernel", status, f"{kernel}{said}", {"kernel": str(kernel), "caveats": list(caveats)})


def _guard_of(target: Target) -> tuple[Guard, str]:
    """The guard a warm through `target` would use, and the studio prefix to look under.

    A bare MOUNT stands for itself (its own root, no mapping), so even the doctor opens
    and lists nothing a warm could not: symlinks out of it are refused the same way.
    """
    studio = target.studio or target.local
    mapping = [{"studio": studio, "local": target.local}] if target.studio else []
    return Guard((studio,), PathMap.parse(mapping, "doctor")), studio


def _walk(guard: Guard, top: str) -> Iterator[str]:
    """Regular files under `top` (studio paths), breadth first, at most `WALK_LIMIT` entries looked at."""
    seen, queue = 0, [top]
    while queue and seen < WALK_LIMIT:
        d = queue.pop(0)
        try:
            names = guard.listdir(d)
        except OSError:
            continue
        for name in names:
            seen += 1
            if seen > WALK_LIMIT:
                return
            path = f"{d.rstrip('/')}/{name}"
            try:
                mode = guard.stat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield path
            elif stat.S_ISDIR(mode):
                queue.append(path)


def _a_file(guard: Guard, top: str) -> str | None:
    """The first non-empty file under `top` the guard lets a warm open."""
    for path in _walk(guard, top):
        try:
            if guard.stat(path).st_size > 0:
                fd, _ = guard.open(path)
                os.close(fd)
                return path
        except OSError:
            continue
    return None


def _o_direct(guard: Guard, path: str, choice: ReadChoice) -> Check:
    try:
        fd, _ = guard.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        status = Status.INFO if not choice.direct else Status.WARN
        fallback = "" if not choice.direct else ": reads fall back to buffered + POSIX_FADV_DONTNEED"
        why = "EINVAL, refused by the file system" if exc.errno == errno.EINVAL else (exc.strerror or str(exc))
        return Check("O_DIRECT", status, f"open(O_DIRECT) of {path}: {why}{fallback}", {"o_direct": False})
    os.close(fd)
    used = "used" if choice.direct else "not used here (it would skip fscache)"
    return Check("O_DIRECT", Status.OK, f"open(O_DIRECT) works on {path}; {used}", {"o_direct": True})


def _timed_read(guard: Guard, path: str, mode: ReadMode) -> Check:
    """One read as the warm makes it: its latency is a gateway round trip (cold) or a hit."""
    reader = MountReader(guard, mode)
    try:
        f = reader.open(path)
        try:
            size = f.size
            offset = max(0, min(size - SAMPLE_BYTES, size // 2)) // 4096 * 4096
            t0 = time.perf_counter()
            got = f.read(offset, SAMPLE_BYTES)
            secs = time.perf_counter() - t0
        finally:
            f.close()
    except OSError as exc:
        return Check("test read", Status.FAIL, f"{path}: {exc.strerror or exc}")
    rate = f" ({got / secs / 1e6:.1f} MB/s)" if secs > 0 and got >= 4096 else ""
    return Check("test read", Status.OK, f"{got} bytes of {path} at {offset} in {secs * 1e3:.1f} ms{rate}",
                 {"bytes": got, "ms": round(secs * 1e3, 3), "path": path})


def site_checks(settings: Settings, targets: Sequence[Target]) -> list[Check]:
    """Roots and path map: what plans may read here, and where."""
    out = []
    roots = settings.allowed_roots()
    if not roots:
        out.append(Check("roots", Status.FAIL, "no roots and no path map configured: this worker refuses every "
                                               "file; set `roots` or `path_map` in the config file "
                                               "($PREWARM_CONFIG or /etc/prewarm/config.yaml)"))
    else:
        out.append(Check("roots", Status.OK, "reads allowed below " + ", ".join(roots), {"roots": list(roots)}))
    mapped = {e.local for e in settings.path_map.entries if e.local}
    for t in targets:
        if t.studio is None and t.local.rstrip("/") not in mapped:
            out.append(Check(f"path map {t.local}", Status.WARN,
                             f"no path_map entry maps studio paths to {t.local}: plans will not read there"))
        elif t.studio is not None:
            out.append(Check(f"path map {t.local}", Status.OK, f"{t.studio} -> {t.local}"))
    return out


def agent_checks(settings: Settings) -> list[Check]:
    """Each configured agent: which proxy answers, its mounts' age; then which proxy each gateway's warm reaches."""
    out = []
    for gw in _gateways(settings):
        url = settings.agent_for(gw)
        if url is None:
            continue
        out.append(_agent_check(f"agent {gw}", url, ""))
        if out[-1].status is not Status.OK:
            continue
        for pc in check_gateway(settings, gw):
            status = {Match.SAME: Status.OK, Match.OTHER: Status.FAIL, Match.UNKNOWN: Status.WARN}[pc.match]
            out.append(Check(f"proxy {gw} {pc.local}", status, pc.detail, pc.to_json()))
    if not out:   # none configured: the agents this machine's mounts declare (`agent=`)
        table = read_mounts()
        for local in sorted({e.local for e in settings.path_map.entries if e.local}):
            mount = mount_of(local, table)
            declared = mount.options.get("agent") if mount is not None else None
            if declared:
                out.append(_agent_check(f"agent {local}", declared, f" (declared by the mount of {local})"))
    if not out:
        out.append(Check("agent", Status.INFO, "no agent_url configured and no mount declares one (agent=): "
                                               "the gateway's own counters are not checked"))
    return out


def _agent_check(name: str, url: str, how: str) -> Check:
    """Which proxy the agent at `url` is, and its mounts' age."""
    agent = Agent(url, TIMEOUT_S)
    try:
        node = agent.node_info()
        mounts = agent.mount_stats()
    except ServiceError as exc:
        return Check(name, Status.WARN, str(exc))
    ages = ", ".join(f"{m.mount} up {m.age_s:.0f}s" for m in mounts) or "no mounts"
    return Check(name, Status.OK, f"{url}{how}: proxy {node} answered; {ages}",
                 {"proxy": node.name, "address": node.address})


def _gateways(settings: Settings, seen: Iterable[str] = ()) -> list[str]:
    """The default gateway, every gateway with its own agent, and those `seen` (in Redis, on the workers'
    queues): the queues workers must consume."""
    named = {*settings.gateway_agents, *seen} - {settings.queue}
    return [settings.queue, *sorted(named)]


def _gateways_in_use(settings: Settings, served: Mapping[str, set[str]]) -> set[str]:
    """Gateways the site really has: those whose queues some worker consumes and those Redis holds warms of."""
    from prewarm.state.client import connect

    found = {g for q in served if (g := keys.gateway_of_queue(q)) is not None}
    r = connect(settings.redis_url or "", ride_out_restarts=False)
    found.update(keys.gateway_of(k) for k in r.scan_iter(match=keys.gateway_pattern("jobs"), count=1000))
    return found


def consumers_of(settings: Settings, timeout_s: float) -> dict[str, set[str]]:
    """Queue -> the workers consuming it, as they answer within `timeout_s` (`state.celery_app.consumers`)."""
    from prewarm.state.celery_app import consumers, make_app

    app = make_app(settings)
    try:
        return consumers(app, timeout_s)
    finally:
        app.close()


def service_checks(settings: Settings) -> list[Check]:
    """Redis, then the workers consuming each gateway's queue."""
    if not settings.redis_url:
        return [Check("redis", Status.INFO, "no redis_url: `prewarm warm` runs embedded, in its own process")]
    from prewarm.state.client import connect, ping

    try:
        ping(connect(settings.redis_url, ride_out_restarts=False), settings.redis_url)
    except ServiceError as exc:
        return [Check("redis", Status.FAIL, str(exc))]
    out = [Check("redis", Status.OK, f"{settings.redis_url} answers")]
    from kombu.exceptions import KombuError
    from redis import RedisError

    try:
        served = consumers_of(settings, TIMEOUT_S)
        in_use = _gateways_in_use(settings, served)
    except (OSError, KombuError, RedisError) as exc:
        return [*out, Check("workers", Status.FAIL, f"cannot ask the workers: {exc}")]
    for gw in _gateways(settings, in_use):
        queue = keys.queue(gw)
        who = sorted(served.get(queue, ()))
        if who:
            out.append(Check(f"workers {gw}", Status.OK, f"{len(who)} worker(s) consume {queue}: {', '.join(who)}",
                             {"queue": queue, "workers": who}))
        else:
            answered = ", ".join(sorted({w for ws in served.values() for w in ws})) or "none"
            out.append(Check(f"workers {gw}", Status.FAIL,
                             f"no worker consumes {queue} (answered within {TIMEOUT_S:.0f} s: {answered}); "
                             f"warms of gateway {gw} would stay queued", {"queue": queue, "workers": []}))
    return out


def diagnose(settings: Settings, targets: Sequence[Target], kernel: Kernel | None = None) -> Report:
    """Every check, in the order a person reads them: the mounts, then the site, then the services."""
    kernel = kernel or this_kernel()
    report = Report()
    mounts = read_mounts()
    for t in targets:
        checks, choice = mount_checks(t, settings, kernel, mounts)
        report.checks += checks
        report.read_modes[t.local] = choice.mode.value
    if not targets:
        report.read_modes["-"] = choose_read(settings.read_mode, None, kernel).mode.value
        report.checks.append(Check("mounts", Status.FAIL, "nothing to check: give MOUNT or --local STUDIO=MOUNT, "
                                                          "or configure a path_map with local paths"))
    report.checks += site_checks(settings, targets)
    report.checks += agent_checks(settings)
    report.checks += service_checks(settings)
    return report
