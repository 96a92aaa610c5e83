"""The pure core of planning: values in, values out, no IO.

Manifests (`manifest`), frame specs (`framespec`), path tokens (`patterns`), path
prefixes (`pathmap`), sizes (`units`), range algebra (`ranges`), trace records
(`access`) and their aggregation (`aggregate`), resolving inputs against a file
system that is passed in (`inputs`), prediction (`predict`, its models `sequences`,
`shared`, `refit` and `unseen`, its options `knobs`), granules, budget and
order (`ordering`), the plan itself (`model`) and its scoring (`evaluate`).

Nothing here opens a file, reads the clock or talks to Redis, Celery or HTTP: an
import contract in pyproject.toml keeps it so (`tests/test_layers.py`).
"""
