# Everything a fresh machine needs is installed by these targets; nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps demo lint test test-fast bench native native-clean

# The strace parser, compiled by mypyc from its own source into an extension beside it
# (what `bench/trace_import.py` needs for 0.1x a bare line loop; the plain module is the
# same code at about a quarter of the speed). Rebuilt whenever strace.py is newer, and
# prewarm/traces/__init__.py runs the source instead of a build older than it, so a stale
# build never hides an edit. Needs gcc and the Python headers; `make native-clean` removes it.
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
NATIVE := prewarm/traces/strace$(EXT_SUFFIX)

setup: $(VENV)/.installed $(NATIVE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,twin,scenes,textures]'
	touch $@

$(NATIVE): prewarm/traces/strace.py $(VENV)/.installed | system-deps
	@command -v gcc >/dev/null || { echo "compiling the strace parser needs gcc (apt-get install gcc)" >&2; exit 1; }
	@$(PY) -c 'import os, sysconfig, sys; h = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
		os.path.exists(h) or sys.exit("compiling the strace parser needs the Python headers: no " + h + " (apt-get install python3-dev)")'
	mkdir -p build
	$(VENV)/bin/mypyc --cache-dir build/mypyc-cache prewarm/traces/strace.py >build/mypyc.log 2>&1 || { cat build/mypyc.log >&2; exit 1; }
	touch prewarm/traces/strace*$(EXT_SUFFIX)

native: $(NATIVE)

native-clean:
	rm -f prewarm/traces/strace.*.so prewarm/traces/strace__mypyc.*.so

system-deps:
	./scripts/system-deps.sh

# The main job on the sample job, with the embedded default (no Redis): plan it, then
# warm it through a gateway twin (FUSE, 30 ms / 50 MB/s) and replay its frames cold
# against warm. With PREWARM_REDIS_URL set, the warm goes through a Celery worker.
demo: setup system-deps
	$(VENV)/bin/prewarm sample build sample_jobs/shot100 --root .demo/proj
	@echo "planning shot100 from the traces of its frames 1-6 (the e2e run below replays later frames)"
	$(VENV)/bin/prewarm plan sample_jobs/shot100/manifest.yaml --local /studio/proj=.demo/proj \
		$(foreach f,1 2 3 4 5 6,--traces sample_jobs/shot100/traces/frame.000$(f).strace.gz) \
		--summary -o .demo/shot100.plan.json
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
