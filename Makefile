# Two entry points for a fresh machine (Python 3.11 and pip): `make demo` and `make test`.
# Both install into .venv/ when it is missing or older than pyproject.toml or this file.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= two_tower
SEED ?= 0

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= INFO

.PHONY: install demo test test-fast bench clean chromium

install: $(STAMP)

# pip cannot express three of the requirements, so they are installed here, in this order:
# torch pinned to the CPU build, fbgemm-gpu's CPU build, then torchrec without its declared
# dependency on the CUDA build of fbgemm-gpu. The rest comes from pyproject.toml.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet fbgemm-gpu-cpu==1.8.0
	$(PY) -m pip install --quiet --no-deps torchrec==1.8.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.pipeline --model $(MODEL) --seed $(SEED)

# The report test renders the HTML report in headless Chromium (Debian's chromium package).
test: $(STAMP) chromium
	$(PY) -m pytest

chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	  || echo "warning: could not install chromium; the report's browser tests will be skipped" >&2; }

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not integration"

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf data/demo data/cache benchmarks/results
