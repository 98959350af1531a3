# Two commands set everything up from nothing but python3:
#   make demo   - run the demo (simulator + the MCP server over stdio + an MCP client)
#   make test   - lint (ruff), types (mypy) and the whole test suite (pytest): what CI runs
#   make test-fast - lint, types and the unit tests only (under a minute): for day-to-day work
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck pytest pytest-unit bench ext-apps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m luma_mcp.demo

test: lint typecheck pytest

test-fast: lint typecheck pytest-unit

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/pytest

# tests/unit only: no subprocesses, no PostgreSQL, no HTTP server processes.
pytest-unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/run.py

# The player view's client library, shipped inside the package (src/luma_mcp/ui/ext-apps): the
# self-contained build of @modelcontextprotocol/ext-apps at this version, with its licence.
# Refresh or bump it with `make ext-apps` (or `make ext-apps EXT_APPS_VERSION=x.y.z`), then run
# the tests: tests/e2e/test_player.py compares the shipped file with npm's release.
EXT_APPS_VERSION ?= 2.0.4
EXT_APPS_DIR := src/luma_mcp/ui/ext-apps

ext-apps:
	rm -rf .cache/ext-apps && mkdir -p .cache/ext-apps
	cd .cache/ext-apps && npm pack --silent @modelcontextprotocol/ext-apps@$(EXT_APPS_VERSION) >/dev/null && tar xzf *.tgz
	cp .cache/ext-apps/package/dist/src/app-with-deps.js .cache/ext-apps/package/LICENSE $(EXT_APPS_DIR)/
	echo $(EXT_APPS_VERSION) > $(EXT_APPS_DIR)/VERSION
	cd $(EXT_APPS_DIR) && sha256sum app-with-deps.js > SHA256SUMS

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
