# Howhot — the two commands that matter: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install models browser up test test-fast lint bench clean

## install: create .venv in the repo root, install Howhot with its test extras, fetch and convert the models
install: $(STAMP) models

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

models: $(STAMP)
	$(BIN)/howhot models fetch

## up: install everything, then start the whole local stack and print the URLs (Ctrl-C stops it)
up: install
	$(BIN)/howhot up

## browser: Debian's headless Chromium for the browser tests (installed when missing and we are root)
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium missing and not root: browser tests will be skipped"; fi; }

## test: lint, then the whole test suite (unit, contract, integration on real loopback backends, end-to-end)
test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf .howhot test-artifacts .pytest_cache
