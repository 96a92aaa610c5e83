"""What a warm did and whether the data is really cached: reports, proof of cache, metrics.

`build` turns values into the report (pure), `html` renders it, `load` gathers it
from Redis, `verify` samples the gateway, `metrics` exports Prometheus series.
"""
