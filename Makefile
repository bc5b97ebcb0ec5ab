# clinic-ops. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/clinic: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/clinic ## create .venv and install the app and its dev tools (pinned by constraints.txt)

run: install ## run everything on the embedded default (web UI + API, worker, beat) with demo data
	./scripts/run-all $(HOST) $(PORT)

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check clinic worker tests bench migrations
	$(BIN)/ruff format --check clinic worker tests bench migrations
	$(BIN)/mypy

test: lint ## lint, types and every test on SQLite and PostgreSQL (needs PostgreSQL and Redis on localhost)
	$(BIN)/pytest -p no:cacheprovider

# The whole suite again on a shifted clock (CLINIC_TEST_NOW, tests/clock.py): 02:30 UTC two years
# ahead. At 02:30 UTC it is still the evening before in the Americas (a UTC date taken for a local one
# shows), and two years on no test can lean on a calendar date. One run covers both, which keeps CI
# well inside its budget; `make test-clock-tomorrow` is the same at tomorrow 02:30 UTC.
# Every test runs, browser and fuzz included: the subprocesses get the same clock via libfaketime.
test-clock: install ## the suite at 02:30 UTC two years ahead (needs faketime)
	CLINIC_TEST_NOW=$$(date -u -d '+2 years' +%F)T02:30:00Z $(BIN)/pytest -p no:cacheprovider

test-clock-tomorrow: install ## the suite at tomorrow 02:30 UTC (needs faketime)
	CLINIC_TEST_NOW=$$(date -u -d tomorrow +%F)T02:30:00Z $(BIN)/pytest -p no:cacheprovider

bench: install ## run the benchmarks; each prints NAME ours=… baseline=… ratio=…
	$(BIN)/python -m bench

fmt: install ## format the code
	$(BIN)/ruff format clinic worker tests bench migrations
	$(BIN)/ruff check --fix clinic worker tests bench migrations

lock: ## refresh constraints.txt from the current .venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

.PHONY: help install run lint test test-clock test-clock-tomorrow bench fmt lock
