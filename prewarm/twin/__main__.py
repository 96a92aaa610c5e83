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

from prewarm.site.mounts import twin_source
from prewarm.twin.gateway import Gateway, TwinConfig
from prewarm.twin.stats_http import start_stats_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prewarm.twin", description=__doc__)
    p.add_argument("origin", type=Path)
    p.add_argument("mountpoint")
    p.add_argument("--config", type=json.loads, default={}, help="TwinConfig fields as a JSON object")
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--max-threads", type=int, default=64, help="FUSE worker threads: reads served at once")
    p.add_argument("--state-file", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prewarm.twin.fs import (
        serve,  # mfusepy loads libfuse at import: only this process needs it
    )

    config = TwinConfig(**args.config)
    gateway = Gateway(args.origin.resolve(), args.cache_dir, config)
    server = start_stats_server(gateway, args.mountpoint, args.http_port)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    state = {"pid": os.getpid(), "url": url,
             "mountpoint": args.mountpoint, "origin": str(args.origin.resolve()),
             "cache_dir": str(args.cache_dir)}
    tmp = args.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(args.state_file)
    try:
        serve(gateway, args.mountpoint, args.max_threads, twin_source({**config.mount_options(), "agent": url}))
    finally:
        server.shutdown()
        gateway.close()
        for kind in ("chunks", "pages"):
            shutil.rmtree(args.cache_dir / kind, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
