"""The gateway twin: a FUSE stand-in for a knfsd re-export gateway with fscache.

It mirrors an origin directory through a simulated WAN link (latency, one shared
bandwidth) and a local chunk cache, and counts what crosses the link, so prewarm can
be tested and measured without a kernel NFS server.

    link.py        the WAN link model (pure, injected clock)
    cache.py       chunk cache: LRU, capacity, single-flight, on disk
    gateway.py     attribute cache, read path and counters (no FUSE)
    fs.py          mfusepy operations over the gateway (the only mfusepy import)
    stats_http.py  counters over HTTP, also in the knfsd agent's mountStats shape
    control.py     start/stop a twin process, stale-mount cleanup
    __main__.py    the twin server process

Importing this package does not import mfusepy: workers never need it.
"""
