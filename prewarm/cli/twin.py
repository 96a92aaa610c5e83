"""`prewarm twin start|stop|stats`: run the FUSE gateway twin from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prewarm.errors import ConfigError
from prewarm.plan.units import parse_size


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("twin", help="a FUSE stand-in for the caching NFS gateway, for tests and benchmarks",
                              description="Mirror ORIGIN at MOUNTPOINT through a simulated WAN link and gateway cache.")
    sub = p.add_subparsers(dest="twin_command", required=True, metavar="ACTION")

    start = sub.add_parser("start", help="mount a twin (returns once the mount is live)")
    start.add_argument("origin", type=Path, help="directory standing in for the studio filer")
    start.add_argument("mountpoint", type=Path)
    start.add_argument("--rtt-ms", type=float, default=30.0,
                       help="WAN round trip per miss or metadata call (default 30)")
    start.add_argument("--mbps", type=float, default=50.0,
                       help="shared WAN bandwidth in MB/s, 0 for unlimited (default 50)")
    start.add_argument("--fsc", action="store_true",
                       help="play the gateway's own fsc mount (O_DIRECT reads bypass the cache), "
                            "not a render-side client of its export")
    start.add_argument("--cache-model", choices=("page", "chunk"), default="page",
                       help="page (default): pages and Linux readahead, as a gateway fetches; chunk: whole granules")
    start.add_argument("--granule", default="1MiB", help="chunk model: fetch and cache unit (default 1MiB)")
    start.add_argument("--rsize", default="1MiB", help="largest READ to the origin (default 1MiB)")
    start.add_argument("--read-ahead-kb", type=int, default=8192, help="page model: largest readahead (default 8192)")
    start.add_argument("--node-name", default="", help="proxy name in /api/v1/nodeInfo (default prewarm-twin-PORT)")
    start.add_argument("--capacity", default="10GiB", help="cache capacity, LRU beyond it (default 10GiB)")
    start.add_argument("--attr-ttl", type=float, default=600.0, help="attribute cache seconds (default 600)")
    start.add_argument("--cache-dir", type=Path, help="where cached chunks live (default: beside the state files)")
    start.add_argument("--http-port", type=int, default=0, help="stats port on 127.0.0.1 (default: any free port)")
    start.add_argument("--log-reads", action="store_true", help="keep every client read for GET /reads")
    start.add_argument("--state-dir", type=Path,
                       help="pid/state files (default $PREWARM_TWIN_STATE_DIR or $XDG_RUNTIME_DIR/prewarm-twin)")

    stop = sub.add_parser("stop", help="unmount a twin and end its process")
    stop.add_argument("mountpoint", type=Path)
    stop.add_argument("--state-dir", type=Path)

    restart = sub.add_parser("restart", help="restart the gateway keeping its cache disk: data stays, "
                                             "attributes and dentries go cold, counters and age restart")
    restart.add_argument("target", help="the twin's MOUNTPOINT or its stats URL")
    restart.add_argument("--state-dir", type=Path)

    stats = sub.add_parser("stats", help="print a twin's counters as JSON")
    stats.add_argument("target", help="the twin's MOUNTPOINT or its stats URL (http://127.0.0.1:PORT)")
    stats.add_argument("--mountstats", action="store_true", help="the knfsd agent's mountStats shape instead")
    stats.add_argument("--state-dir", type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prewarm.twin import control
    from prewarm.twin.gateway import TwinConfig

    if args.twin_command == "start":
        if args.rtt_ms < 0 or args.mbps < 0 or args.attr_ttl < 0:
            raise ConfigError("--rtt-ms/--mbps/--attr-ttl", "must not be negative")
        rsize = parse_size(args.rsize, "command line", "--rsize")
        if rsize < 4096 or args.read_ahead_kb < 4:
            raise ConfigError("--rsize/--read-ahead-kb", "must be at least one 4 KiB page")
        config = TwinConfig(rtt_ms=args.rtt_ms, mbps=args.mbps or None, cache_model=args.cache_model,
                            granule=parse_size(args.granule, "command line", "--granule"), rsize=rsize,
                            read_ahead_kb=args.read_ahead_kb, fsc=args.fsc, node_name=args.node_name,
                            capacity=parse_size(args.capacity, "command line", "--capacity"), attr_ttl_s=args.attr_ttl,
                            log_reads=args.log_reads)
        handle = control.start_twin(args.origin, args.mountpoint, config, cache_dir=args.cache_dir,
                                    http_port=args.http_port, state_dir=args.state_dir, detach=True)
        print(json.dumps({"mountpoint": str(handle.mount), "pid": handle.pid, "url": handle.url}))
        return 0
    if args.twin_command == "stop":
        if not control.stop_twin(args.mountpoint, state_dir=args.state_dir):
            print(f"no twin at {args.mountpoint}")
        return 0
    url = args.target.rstrip("/")
    if not url.startswith(("http://", "https://")):
        info = control.read_info(Path(args.target), args.state_dir)
        if info is None:
            raise ConfigError(args.target, "no twin runs here (give its mountpoint or its stats URL)")
        url = info.url
    if args.twin_command == "restart":
        control.http_json(url + "/restart", method="POST")
        print(f"restarted the gateway twin at {url}: data kept, attributes and dentries cold")
        return 0
    print(json.dumps(control.http_json(url + ("/api/v1/mountStats" if args.mountstats else "/stats")), indent=2))
    return 0
