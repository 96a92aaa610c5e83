# Everything a fresh machine needs is installed by these targets; nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps demo lint test test-fast bench native native-clean

# The hot modules (setup.py's COMPILED: the strace parser, the range algebra, the predictor and
# its models, the plan's ordering and the warm's batch cutting) are compiled by the package's own build, one mypyc compilation of
# all of them: `make setup` runs that build in place (`setup.py build_ext --inplace`, the same
# compilation `pip install .` and `pip wheel .` run), and again whenever one of their sources
# or setup.py is newer than the build, so every make target runs current code (a pytest run
# without make stops on a stale build: tests/conftest.py). Needs gcc and the Python headers.
# PREWARM_PURE=1 make setup installs without them and removes the builds: plain Python.
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
COMPILED := $(shell sed -n 's/^ *"\(prewarm\/[a-z_/]*\)\.py",$$/\1/p' setup.py)
NATIVE := prewarm/native__mypyc$(EXT_SUFFIX) $(addsuffix $(EXT_SUFFIX),$(COMPILED))

# Bytecode written once: where PYTHONDONTWRITEBYTECODE is set (CI images, this sandbox) every
# command would otherwise compile the package again at start (about 0.1 s each).
setup: $(VENV)/.installed $(if $(filter 1,$(PREWARM_PURE)),native-clean,native)
	@$(PY) -m compileall -q prewarm workers >/dev/null

# Editable and pure: the compiled modules are built in place by `native` with the venv's own
# mypy, so an edit rebuilds them without reinstalling.
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	PREWARM_PURE=1 $(PY) -m pip install -q -e '.[dev,twin,scenes,textures]'
	touch $@

$(NATIVE) &: $(addsuffix .py,$(COMPILED)) setup.py $(VENV)/.installed | system-deps
	@command -v gcc >/dev/null || { echo "compiling $(COMPILED) needs gcc (apt-get install gcc)" >&2; exit 1; }
	@$(PY) -c 'import os, sysconfig, sys; h = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
		os.path.exists(h) or sys.exit("compiling needs the Python headers: no " + h + " (apt-get install python3-dev)")'
	@mkdir -p build
	$(PY) setup.py build_ext --inplace >build/native.log 2>&1 || { cat build/native.log >&2; exit 1; }
	touch $(NATIVE)

native: $(NATIVE)

native-clean:
	rm -f prewarm/native__mypyc.*.so $(foreach m,$(COMPILED),$(m).*.so $(m)__mypyc.*.so)

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
	$(VENV)/bin/prewarm demo sample_jobs/shot100

# Lint and types: ruff (with a complexity limit) and mypy --strict on the package.
lint: setup
	$(VENV)/bin/ruff check prewarm workers tests bench setup.py
	$(VENV)/bin/mypy

# The whole test suite: lint, then unit tests and integration tests on real Redis, Celery and
# FUSE (the fixtures start those services and stop them by PID; tests/test_layers.py checks
# the import contracts).
test: setup system-deps lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not integration and not slow"

bench: setup system-deps
	$(PY) bench/predict.py
