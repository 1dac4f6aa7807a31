# truthwatch: `make demo` runs the main job, `make test` runs every check. Both set up .venv first.
# The install is stamped with a hash of the lock and project files, so a second run starts in seconds.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCKS := requirements/dev.txt pyproject.toml
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) 2>/dev/null | sha256sum | cut -c1-16)
ARTIFACTS ?= artifacts
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help setup lint format test test-fast demo train evaluate bench clean lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): $(LOCKS)
	@rm -f $(VENV)/.installed-*
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet --requirement requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $@

setup: $(STAMP) ## create .venv with the pinned development set

lint: setup ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers $(wildcard functions/*/*.py)

format: setup ## rewrite files with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint ## every check, then every test
	$(BIN)/pytest

test-fast: setup ## the tests that train nothing and start nothing
	$(BIN)/pytest -m "not slow and not e2e"

train: setup ## train on the digits and export a new model version
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train

demo: setup ## the main job: train if no model is exported, then score the held-out digits
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train --if-missing
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) evaluate

bench: setup ## run every benchmark in bench/ and record its figures in bench/results/
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train --if-missing
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

lock: ## re-pin requirements/dev.txt from the groups in pyproject.toml (needs the package registry)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet --group dev setuptools wheel
	.venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v "^pip==" | sort -f > requirements/dev.txt
	rm -rf .venv-lock

clean: ## remove caches (keeps .venv and artifacts)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
