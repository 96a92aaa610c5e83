# Everything a fresh machine needs is installed by these targets; nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps demo lint test test-fast bench native native-clean

# Hot modules compiled by mypyc from their own sources into extensions beside them: the
# strace parser (what `bench/trace_import.py` needs for 0.1x a bare line loop; the plain
# module is the same code at about a quarter of the speed), the range algebra, the
# predictor and the plan's ordering (what a plan from the trace store spends most of its
# time in: `bench/scale.py`), and the warm's batch cutting (a third of a warm's CPU on
# page-cached files: `bench/warm.py`). Each is rebuilt whenever its source is newer, and `prewarm` runs the
# source instead of a build older than it, so a stale build never hides an edit. Needs gcc
# and the Python headers; `make native-clean` removes the builds.
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
COMPILED := prewarm/traces/strace prewarm/plan/ranges prewarm/plan/ordering prewarm/plan/predict prewarm/warm/batches
NATIVE := $(addsuffix $(EXT_SUFFIX),$(COMPILED))

# Bytecode written once: where PYTHONDONTWRITEBYTECODE is set (CI images, this sandbox) every
# command would otherwise compile the package again at start (about 0.1 s each).
setup: $(VENV)/.installed $(NATIVE)
	@$(PY) -m compileall -q prewarm workers >/dev/null

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,twin,scenes,textures]'
	touch $@

prewarm/%$(EXT_SUFFIX): prewarm/%.py $(VENV)/.installed | system-deps
	@command -v gcc >/dev/null || { echo "compiling $< needs gcc (apt-get install gcc)" >&2; exit 1; }
	@$(PY) -c 'import os, sysconfig, sys; h = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
		os.path.exists(h) or sys.exit("compiling $< needs the Python headers: no " + h + " (apt-get install python3-dev)")'
	mkdir -p build
	$(VENV)/bin/mypyc --cache-dir build/mypyc-cache $< >build/mypyc.log 2>&1 || { cat build/mypyc.log >&2; exit 1; }
	touch prewarm/$*$(EXT_SUFFIX) prewarm/$*__mypyc$(EXT_SUFFIX)

native: $(NATIVE)

native-clean:
	rm -f $(foreach m,$(COMPILED),$(m).*.so $(m)__mypyc.*.so)

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
