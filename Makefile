# Everything a fresh machine needs is installed by these targets; nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps demo lint test test-fast bench native native-clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,twin,scenes,textures]'
	touch $@

# Optional: the strace parser compiled by mypyc from the same source (about 2x: what
# `bench/trace_import.py` needs for 0.1x a bare line loop). It is built in place beside
# prewarm/traces/strace.py and shadows it, so rebuild after editing that file, or
# `make native-clean` to run the plain Python again; `compiled` in the bench says which ran.
native: setup
	$(VENV)/bin/pip install -q 'mypy>=1.10'
	$(VENV)/bin/mypyc prewarm/traces/strace.py
	rm -rf .mypy_cache

native-clean:
	rm -f prewarm/traces/strace.*.so prewarm/traces/strace__mypyc.*.so

system-deps:
	./scripts/system-deps.sh

# The main job on the sample job, with the embedded default (no Redis): plan it, then
# warm it through a gateway twin (FUSE, 30 ms / 50 MB/s) and replay its frames cold
# against warm. With PREWARM_REDIS_URL set, the warm goes through a Celery worker.
demo: setup system-deps
	$(VENV)/bin/prewarm sample build sample_jobs/shot100 --root .demo/proj
	$(VENV)/bin/prewarm plan sample_jobs/shot100/manifest.yaml --traces sample_jobs/shot100/traces \
		--local /studio/proj=.demo/proj --summary -o .demo/shot100.plan.json
	$(PY) bench/e2e.py --demo

# Lint and types: ruff (with a complexity limit) and mypy --strict on the package.
lint: setup
	$(VENV)/bin/ruff check prewarm workers tests bench
	$(VENV)/bin/mypy

# The whole test suite: lint, then unit tests and integration tests on real Redis, Celery and
# FUSE (the fixtures start those services and stop them by PID; tests/test_layers.py checks
# the import contracts).
test: setup system-deps lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not integration"

bench: setup system-deps
	$(PY) bench/predict.py
