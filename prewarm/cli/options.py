"""Options every command shares, parsed one way: the settings file, `--redis`, `--local`, `--alias`,
and a job's parameter values (`-p Name=Value`, `--parameter-values FILE`).

The person running a command is this machine's operator, so `--local` joins the
site's path map (where studio paths are here) exactly as the settings file would;
a job's manifest never can. Commands call `site_settings` once and hand the result on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from prewarm.errors import ConfigError
from prewarm.plan.pathmap import PathMap, parse_pair
from prewarm.site.settings import Settings

if TYPE_CHECKING:
    import redis

    from prewarm.flow.jobs import Job



def add_redis_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", metavar="URL", help="Redis of the workers (default $PREWARM_REDIS_URL or the config)")


def add_path_map_flags(p: argparse.ArgumentParser) -> None:
    """`--local` and `--alias`, for every command that touches studio files."""
    p.add_argument("--local", action="append", default=[], metavar="STUDIO=LOCAL",
                   help="reach studio prefix STUDIO at LOCAL on this machine (the gateway mount); repeatable")
    p.add_argument("--alias", action="append", default=[], metavar="OTHER=STUDIO",
                   help="trace paths under OTHER are studio paths under STUDIO; repeatable")


def path_map_from(args: argparse.Namespace) -> PathMap:
    items: list[dict[str, Any]] = []
    for text in getattr(args, "local", []):
        studio, local = parse_pair(text, "--local")
        items.append({"studio": studio, "local": local})
    for text in getattr(args, "alias", []):
        other, studio = parse_pair(text, "--alias")
        items.append({"studio": studio, "aliases": [other]})
    return PathMap.parse(items, "command line")


def site_settings(args: argparse.Namespace) -> Settings:
    """The settings file, then the environment, then this command's flags."""
    settings = Settings.load(path=args.config)
    if getattr(args, "redis", None):
        settings = replace(settings, redis_url=args.redis)
    flags = path_map_from(args)
    if flags.entries:
        settings = replace(settings, path_map=settings.path_map.merged(flags))
    return settings


def redis_of(settings: Settings, command: str) -> redis.Redis[bytes]:
    """A connection that fails within a second when Redis is not there, with what to do about it."""
    from prewarm.state.client import connect, ping

    if not settings.redis_url:
        raise ConfigError("--redis", f"`prewarm {command}` needs Redis: pass --redis URL or set PREWARM_REDIS_URL")
    ping(connect(settings.redis_url, ride_out_restarts=False), settings.redis_url)
    return connect(settings.redis_url)


def add_job_flags(p: argparse.ArgumentParser) -> None:
    """A job bundle's parameter values, as `deadline bundle submit` takes them."""
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="a job bundle's parameter value (over the bundle's own); repeatable")
    p.add_argument("--parameter-values", metavar="FILE",
                   help="a job bundle's parameter values file (parameterValues: [{name, value}]); -p wins")


def add_local_job_flags(p: argparse.ArgumentParser) -> None:
    """`add_job_flags`, and a Deadline 10 pair read on this machine (`prewarm submit` sends its pair
    to the service with --deadline-job/--deadline-plugin)."""
    add_job_flags(p)
    p.add_argument("--plugin-info", metavar="FILE",
                   help="JOB is a Deadline 10 job info file, and this its plugin info file (SceneFile=...)")


def parameters_of(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """`--parameter-values FILE` (no larger than the site's `max_request_bytes`), then each `-p Name=Value` on top."""
    from prewarm.flow.adapters.openjd import MAX_VALUE_CHARS
    from prewarm.flow.jobs import parameter_file

    out = parameter_file(args.parameter_values, settings) if getattr(args, "parameter_values", None) else {}
    for text in getattr(args, "parameter", []):
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ConfigError("-p", f"expected NAME=VALUE, got {text[:80]!r}")
        if len(value) > MAX_VALUE_CHARS:
            raise ConfigError(f"-p {name.strip()[:80]}", f"{len(value):,} characters, more than a parameter "
                                                         f"value may have ({MAX_VALUE_CHARS:,})")
        out[name.strip()] = value
    return out


def load_job(args: argparse.Namespace, source: str, settings: Settings) -> Job:
    """The job in `source` (`prewarm.flow.jobs.load`) with this command's parameter values; its notes on stderr."""
    from prewarm.flow.jobs import deadline_files, load

    if getattr(args, "plugin_info", None):
        job = deadline_files(source, args.plugin_info, settings)
    else:
        job = load(source, settings, parameters_of(args, settings))
    for note in job.notes:
        print(f"{source}: {note}", file=sys.stderr)
    return job
