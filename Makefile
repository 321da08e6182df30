# cocreate — every target sets up what it needs, from nothing but Python 3 and make.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(shell find protos -name '*.proto')
SITE = $(shell $(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

.PHONY: help install proto run test test-faults test-fast lint format events-page bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Generated code lives in gen/ (not committed); regenerate only when a .proto changed.
# Generation goes to a fresh folder that replaces gen/ whole, so a reader never sees half of it.
gen/.stamp: $(PROTOS) $(VENV)/.installed
	@tmp=$$(mktemp -d gen.XXXXXX) && \
	$(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--descriptor_set_out=$$tmp/descriptors.binpb --include_imports \
		$(PROTOS) && \
	touch $$tmp/.stamp && rm -rf gen && mv $$tmp gen
	@echo "$(CURDIR)/gen" > $(SITE)/cocreate-gen.pth
	@echo "generated protobuf code in gen/"

# The browser tests (tests/web) drive Debian's chromium through Playwright;
# Playwright's own browser download is never used (and cannot work offline).
# An image that only runs the platform skips it: make install BROWSER=
CHROMIUM := /usr/bin/chromium
BROWSER ?= $(CHROMIUM)
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests (tests/web)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "$(CHROMIUM) is missing: install Debian's chromium (apt-get install chromium) as root" >&2; \
		exit 1; \
	fi

install: gen/.stamp $(BROWSER) ## Create .venv, install the project and generate the protobuf code (and Debian's chromium for tests/web)

proto: gen/.stamp ## Generate the protobuf code (only when a .proto changed)

run: install ## Start the whole platform locally (embedded Postgres + NATS, all services, gateway)
	$(BIN)/python -m deploy.localstack

test: install ## Run the whole test suite against real Postgres and NATS
	$(BIN)/python -m pytest

SEEDS ?= 5
FAULT_SECONDS ?= 90
test-faults: install ## Crash schedules: SEEDS=N seeded runs of FAULT_SECONDS each (replay one: COCREATE_FAULT_SEED=S)
	COCREATE_FAULT_SEEDS=$(SEEDS) COCREATE_FAULT_SECONDS=$(FAULT_SECONDS) \
		$(BIN)/python -m pytest tests/faults/test_crash_schedules.py -k lost_or_paid_twice -s

# buf breaking compares the API with API_BASE's (a branch, tag or commit): a
# change on a branch that would break a client built on main fails lint.
# On main itself it compares with main (nothing to find); name a release tag
# to check against what clients have, e.g. make lint API_BASE=v0.3.0.
API_BASE ?= main
lint: install ## ruff, mypy, buf lint and buf breaking (against API_BASE, default main)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd protos && ../$(BIN)/buf lint
	@if git rev-parse --verify --quiet "$(API_BASE)^{commit}" >/dev/null; then \
		cd protos && ../$(BIN)/buf breaking --against "../.git#ref=$(API_BASE),subdir=protos"; \
	else \
		echo "buf breaking skipped: $(API_BASE) is not in this clone (fetch it, or set API_BASE)" >&2; \
	fi

format: install ## Format the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

events-page: install ## Regenerate docs/events.md (every event, its subject, producer and consumers)
	$(BIN)/python -m services.kit.topology > docs/events.md

bench: install ## Run the benchmarks (bench/), each against a baseline in the same run
	$(BIN)/python -m bench

clean: ## Remove the virtual environment, generated code and local data
	rm -rf $(VENV) gen .dev .pytest_cache .mypy_cache .ruff_cache .test-output
