"""The `prewarm` command: parses, hands off to a command module, turns errors into one line.

Each command is a module in `prewarm.cli` with `register(subparsers)`, which
adds its parser and sets `func=run`. Modules import their heavy dependencies
(Celery, FUSE) inside `run`, so `prewarm plan` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from prewarm import __version__
from prewarm.errors import InputError, ServiceError

COMMANDS = ("plan", "sample", "twin", "warm", "doctor", "status", "cancel", "throttle", "serve", "submit", "traces",
            "record", "report", "evaluate", "verify", "metrics", "watch", "worker", "frame",
            "demo")

EXIT_INPUT = 2
EXIT_SERVICE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prewarm",
        description="Plan and warm the byte ranges a render job will read through a caching gateway.")
    parser.add_argument("--version", action="version", version=f"prewarm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging; -vv shows tracebacks")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (default $PREWARM_CONFIG or /etc/prewarm/config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"prewarm.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if args.verbose >= 2:
            raise
        print(f"prewarm {args.command}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ServiceError as exc:
        if args.verbose >= 2:
            raise
        print(f"prewarm {args.command}: {exc}", file=sys.stderr)
        return EXIT_SERVICE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
