# wearfhir — every target sets up what it needs (venv, pip packages) on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test lint typecheck unit bench clean servers

# Test servers: redis-server and chromium (the viewer's browser tests) from Debian (apt-get, as root or with sudo);
# the FHIR server (sekmet-fhir) and Playwright (driving the system chromium) are pip dev dependencies.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
servers:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (apt-get) for the tests"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }; }
	@command -v redis-server >/dev/null || { echo "redis-server is required by the tests: apt-get install redis-server"; exit 1; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }
	@command -v chromium >/dev/null || { echo "chromium is required by the browser tests: apt-get install chromium"; exit 1; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "wearfhir needs Python 3.11 or 3.12 (Bytewax 0.21 wheels)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

demo: setup  ## generate a synthetic Apple Health export and import it to FHIR NDJSON (no servers)
	$(BIN)/wearfhir demo --workdir demo-output

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

unit: setup servers
	$(BIN)/pytest -q

test: lint typecheck unit

bench: setup  ## the import benchmark (see bench/README.md); BENCH_RECORDS=1000000 by default
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/import_bench.py --records $${BENCH_RECORDS:-1000000}

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache bench/work
