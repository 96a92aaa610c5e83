"""`python -m prewarm.twin ORIGIN MOUNTPOINT ...`: the twin's server process.

Started by `prewarm.twin.control.start_twin` (the CLI and the pytest fixture), never
in the process that reads the mount: a process serving its own FUSE reads can
deadlock. It binds the stats port, writes its state file (pid and URL) so the
starter can find it, then serves FUSE in the foreground until unmounted or signalled.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from prewarm.twin.gateway import Gateway, TwinConfig
from prewarm.twin.stats_http import start_stats_server

_DEFAULTS = TwinConfig()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prewarm.twin", description=__doc__)
    p.add_argument("origin", type=Path)
    p.add_argument("mountpoint")
    p.add_argument("--rtt-ms", type=float, default=_DEFAULTS.rtt_ms)
    p.add_argument("--mbps", type=float, default=_DEFAULTS.mbps, help="MB/s; 0: unlimited")
    p.add_argument("--granule", type=int, default=_DEFAULTS.granule, help="bytes")
    p.add_argument("--capacity", type=int, default=_DEFAULTS.capacity, help="bytes")
    p.add_argument("--attr-ttl", type=float, default=_DEFAULTS.attr_ttl_s, help="seconds")
    p.add_argument("--log-reads", action="store_true")
    p.add_argument("--client-cache", action="store_true", help="kernel page cache answers re-reads within an open")
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--max-threads", type=int, default=64, help="FUSE worker threads: reads served at once")
    p.add_argument("--state-file", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prewarm.twin.fs import (
        serve,  # mfusepy loads libfuse at import: only this process needs it
    )

    config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps or None, granule=args.granule,
                        capacity=args.capacity, attr_ttl_s=args.attr_ttl, log_reads=args.log_reads,
                        client_cache=args.client_cache)
    gateway = Gateway(args.origin.resolve(), args.cache_dir, config)
    server = start_stats_server(gateway, args.mountpoint, args.http_port)
    state = {"pid": os.getpid(), "url": f"http://127.0.0.1:{server.server_address[1]}",
             "mountpoint": args.mountpoint, "origin": str(args.origin.resolve()),
             "cache_dir": str(args.cache_dir)}
    tmp = args.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(args.state_file)
    try:
        serve(gateway, args.mountpoint, args.max_threads)
    finally:
        server.shutdown()
        shutil.rmtree(args.cache_dir / "chunks", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
