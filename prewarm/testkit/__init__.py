"""Tools for tests, benchmarks and the demo: local services, sample trees, frame replay.

Nothing in the product imports these; `prewarm sample` and the benches do.
"""
