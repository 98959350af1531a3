# Two commands set everything up from nothing but python3:
#   make demo   - run the demo (simulator + the MCP server over stdio + an MCP client)
#   make test   - lint (ruff), types (mypy) and the whole test suite (pytest): what CI runs
#   make test-fast - lint, types and the unit tests only (under a minute): for day-to-day work
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck pytest pytest-unit bench ext-apps dist bundle clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m luma_mcp.simulator.demo

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

# The player view's client library, shipped inside the package (src/luma_mcp/server/ui/ext-apps): the
# self-contained build of @modelcontextprotocol/ext-apps at this version, with its licence.
# Refresh or bump it with `make ext-apps` (or `make ext-apps EXT_APPS_VERSION=x.y.z`), then run
# the tests: tests/e2e/test_player.py compares the shipped file with npm's release.
EXT_APPS_VERSION ?= 2.0.4
EXT_APPS_DIR := src/luma_mcp/server/ui/ext-apps

ext-apps:
	rm -rf .cache/ext-apps && mkdir -p .cache/ext-apps
	cd .cache/ext-apps && npm pack --silent @modelcontextprotocol/ext-apps@$(EXT_APPS_VERSION) >/dev/null && tar xzf *.tgz
	cp .cache/ext-apps/package/dist/src/app-with-deps.js .cache/ext-apps/package/LICENSE $(EXT_APPS_DIR)/
	echo $(EXT_APPS_VERSION) > $(EXT_APPS_DIR)/VERSION
	cd $(EXT_APPS_DIR) && sha256sum app-with-deps.js > SHA256SUMS

# Releases (tests/e2e/test_install.py builds and runs each of these, from a temporary DIST):
#   make dist   - the wheel and sdist, with the standard build frontend, checked by twine
#   make bundle - the Claude Desktop extension (DIST/luma-mcp.mcpb), validated then packed by the
#                 official mcpb CLI (pinned, installed from the npm registry into .cache/mcpb), and
#                 DIST/server.json: the registry entry with the bundle's sha256 filled in
DIST ?= dist
MCPB_VERSION ?= 2.1.2
MCPB := .cache/mcpb/node_modules/.bin/mcpb
BUNDLE_STAGE ?= .cache/bundle

dist: $(BIN)/.installed
	rm -rf $(DIST)/*.whl $(DIST)/*.tar.gz
	$(BIN)/python -m build --installer uv --outdir $(DIST) .
	$(BIN)/twine check --strict $(DIST)/*.whl $(DIST)/*.tar.gz

.cache/mcpb/$(MCPB_VERSION).installed:
	mkdir -p .cache/mcpb
	npm install --prefix .cache/mcpb --save-exact --no-audit --no-fund --silent @anthropic-ai/mcpb@$(MCPB_VERSION)
	touch $@

# The bundle holds what `uv run` needs to build and start the package, and nothing else.
bundle: .cache/mcpb/$(MCPB_VERSION).installed
	rm -rf $(BUNDLE_STAGE) && mkdir -p $(BUNDLE_STAGE) $(DIST)
	cp manifest.json pyproject.toml README.md LICENSE $(BUNDLE_STAGE)/
	cp packaging/icon.png $(BUNDLE_STAGE)/icon.png
	cp -R src $(BUNDLE_STAGE)/src
	find $(BUNDLE_STAGE)/src -name __pycache__ -prune -exec rm -rf {} +
	$(MCPB) validate $(BUNDLE_STAGE)/manifest.json
	$(MCPB) pack $(BUNDLE_STAGE) $(DIST)/luma-mcp.mcpb
	$(PYTHON) -c 'import hashlib, json, sys; entry = json.load(open("server.json")); digest = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(); [package.update(fileSha256=digest) for package in entry["packages"] if package["registryType"] == "mcpb"]; open(sys.argv[2], "w").write(json.dumps(entry, indent=2) + "\n")' $(DIST)/luma-mcp.mcpb $(DIST)/server.json

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
