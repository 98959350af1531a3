# Two commands set everything up from nothing but python3:
#   make demo   - run the demo (simulator + the MCP server over stdio + an MCP client)
#   make test   - lint (ruff), types (mypy) and the whole test suite (pytest): what CI runs
#   make test-fast - lint, types and the unit tests only (under a minute): for day-to-day work
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck pytest pytest-unit bench clean

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

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
