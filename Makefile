# kstream_lab: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KL := $(BIN)/kstream-lab

.PHONY: help setup system-deps demo test test-unit chaos lint format bench clean

## help: this list of targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## setup: .venv with kstream_lab[dev], the Kafka and Kafka Connect jars (Maven; our converter built), replay's native fetch, Toxiproxy and helm (Go) and system tools; idempotent
setup: $(STAMP) system-deps
	@$(KL) broker fetch
	@$(KL) connect fetch
	@$(BIN)/python -m kstream_lab.kafka.native
	@bash scripts/toxiproxy.sh $(BIN)
	@bash scripts/install-helm.sh $(BIN)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (need Python 3.11+)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

## system-deps: Java 17 + Maven for the broker, gcc, prometheus (checked; installed with apt-get when root and missing)
system-deps:
	@bash scripts/system-deps.sh

## demo: the live pipeline (broker, registry, apps, workers, orders posted over HTTP, live summary; Ctrl-C stops)
demo: setup
	$(KL) demo

## lint: ruff, mypy, import layering, hadolint, the Helm chart (lint, template, schemas), promtool (rules and their tests)
lint: $(STAMP)
	$(BIN)/ruff check kstream_lab apps tests bench
	$(BIN)/ruff format --check kstream_lab apps tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	@bash scripts/install-helm.sh $(BIN)
	$(BIN)/python -m tests.support.chart
	cd deploy/prometheus && promtool check config --syntax-only prometheus.yml && promtool check rules alerts.yml && promtool test rules alerts_test.yml

## test: set-up, lint, then the unit suite and the integration, notebook and browser suites
test: setup lint
	$(BIN)/pytest -m unit -q
	$(BIN)/pytest -m "not unit" -q

## test-unit: the unit tests only (no broker)
test-unit: $(STAMP)
	$(BIN)/pytest -m unit -q

## chaos: the chaos suite with the million-order scale run; its figures go to bench/results/chaos_scale.json
chaos: setup
	KSTREAM_CHAOS_SCALE_ORDERS=1000000 KSTREAM_CHAOS_RESULTS=bench/results/chaos_scale.json $(BIN)/pytest -m chaos -q

## format: apply ruff format and ruff's import sorting
format: $(STAMP)
	$(BIN)/ruff format kstream_lab apps tests bench
	$(BIN)/ruff check --fix --select I kstream_lab apps tests bench

## bench: every benchmark; results in bench/results/, table in bench/README.md
bench: setup
	$(BIN)/python -m bench.run_all

## clean: stop the local services and remove .venv and local data
clean:
	-$(KL) connect down 2>/dev/null
	-$(KL) registry down 2>/dev/null
	-$(KL) broker down 2>/dev/null
	rm -rf $(VENV) .kstream_lab reports .pytest_cache .ruff_cache
