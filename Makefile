# KPI platform — run `make help` for the list of targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` and `make test-integration` (0: all in one process);
# docs/development.md says how the tests are spread over them.
TEST_WORKERS ?= 3
DEMO ?= 1
# Options of `make bench-soak`, e.g. SOAK_ARGS=--quick (bench/bench_soak.py --help).
SOAK_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install chromium run test test-unit test-integration test-browser demo digest lint format schemas typecheck migrate bench bench-soak bench-profile chaos audit clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[local,dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the platform with dev tools

run: $(STAMP) ## Start the platform locally with demo data (DEMO=0: no demo); Ctrl-C stops it
	$(BIN)/kpi up $(if $(filter 1,$(DEMO)),--demo,--no-demo)

chromium: ## Install Debian's chromium (+ a CJK font) for the browser tests when missing
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei)

test: $(STAMP) chromium ## Lint, check the import contracts and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-unit: $(STAMP) ## Unit tests only (no servers)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## Integration tests only (embedded PostgreSQL and broker)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests/integration $(PYTEST_ARGS)

test-browser: $(STAMP) chromium ## Dashboard tests in headless Chromium (screenshots in test-artifacts/browser)
	$(BIN)/python -m pytest -q tests/browser $(PYTEST_ARGS)

demo: $(STAMP) ## Stream the synthetic demo team into a running `make run DEMO=0`
	$(BIN)/kpi demo

digest: $(STAMP) ## Send a team's last weekly digest now (TEAM=demo-north; docs/alerts.md#team-digests)
	$(BIN)/kpi digest send $(or $(TEAM),demo-north)

lint: $(STAMP) ## ruff lint and format check, import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schemas: $(STAMP) ## Regenerate docs/schemas/ (JSON Schemas) from the models in shared/
	$(BIN)/python -m shared.schemas

typecheck: $(STAMP) ## mypy (strict) over the product code
	$(BIN)/mypy shared services kpi

migrate: $(STAMP) ## Apply migrations to KPI_DATABASE_URL (or the running `make run` database)
	$(BIN)/kpi migrate

bench: $(STAMP) ## Every headline figure in one run (~6 min with the 1M-ticket export; KPI_BENCH_TICKETS=20000 for less); writes bench/results/latest.{json,md}
	$(BIN)/python bench/run_all.py

bench-soak: $(STAMP) ## Cost of growth per 10 % of 20 M events (hours; SOAK_ARGS=--quick: 200 k, ~3 min); bench/results/soak.*
	$(BIN)/python bench/bench_soak.py $(SOAK_ARGS)

bench-profile: $(STAMP) ## Scoring consumer's µs per event by stage on the `make bench` workload (~1 min)
	$(BIN)/python bench/profile_scoring.py

chaos: $(STAMP) ## Full chaos campaign (~20 min): stream + faults, checks lost/dup/mismatch/alerts
	$(BIN)/python -m chaos

audit: $(STAMP) ## pip-audit of the installed dependencies (known vulnerabilities)
	$(BIN)/pip-audit --progress-spinner off --skip-editable

clean: ## Remove the virtualenv, local data (.kpi/) and caches
	rm -rf $(VENV) .kpi .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis test-artifacts
