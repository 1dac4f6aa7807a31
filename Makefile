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
.PHONY: help setup lint format test test-fast demo serve train evaluate bench clean lock openapi model-bundle lint-infra fuzz audit

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
	$(BIN)/mypy layers infra $(wildcard functions/*/*.py)

format: setup ## rewrite files with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The infrastructure checks run from their own pinned venvs: SAM CLI, cfn-lint and hadolint in
# .venv-tools, checkov in .venv-checkov (it pins an older boto3 than SAM CLI does).
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat requirements/tools.txt 2>/dev/null | sha256sum | cut -c1-16)
CHECKOV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV)/.installed-$(shell cat requirements/tools-checkov.txt 2>/dev/null | sha256sum | cut -c1-16)
# The checks read files only; fake credentials and a region keep SAM CLI from looking for real ones.
INFRA_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# The image's Dockerfile, as template.yaml's InferenceFunction Metadata names it.
DOCKERFILE := $(shell sed -n 's/^ *Dockerfile: *//p' template.yaml)

$(TOOLS_STAMP): requirements/tools.txt
	@rm -f $(TOOLS)/.installed-*
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet pip==26.3
	$(TOOLS)/bin/python -m pip install --quiet --requirement requirements/tools.txt
	@touch $@

$(CHECKOV_STAMP): requirements/tools-checkov.txt
	@rm -f $(CHECKOV)/.installed-*
	@test -x $(CHECKOV)/bin/python || $(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet pip==26.3
	$(CHECKOV)/bin/python -m pip install --quiet --requirement requirements/tools-checkov.txt
	@touch $@

lint-infra: $(TOOLS_STAMP) $(CHECKOV_STAMP) ## cfn-lint, sam validate --lint, checkov, hadolint
	$(TOOLS)/bin/cfn-lint template.yaml
	$(INFRA_ENV) $(TOOLS)/bin/sam validate --lint --template template.yaml
	$(CHECKOV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --quiet --compact
	$(TOOLS)/bin/hadolint $(DOCKERFILE)

test: lint lint-infra audit ## every check, then every test
	$(BIN)/pytest

test-fast: setup ## the tests that train nothing and start nothing
	$(BIN)/pytest -m "not slow and not e2e"

# pip-audit lives in .venv-audit. Offline it cannot reach a vulnerability service: infra/audit.py
# then reports NOT AUDITED and passes; AUDIT_STRICT=1 (a CI job with the network) makes that fail.
AUDIT_VENV := .venv-audit
AUDIT_STAMP := $(AUDIT_VENV)/.installed-$(shell cat requirements/tools-audit.txt 2>/dev/null | sha256sum | cut -c1-16)

$(AUDIT_STAMP): requirements/tools-audit.txt
	@rm -f $(AUDIT_VENV)/.installed-*
	@test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install --quiet pip==26.3
	$(AUDIT_VENV)/bin/python -m pip install --quiet --requirement requirements/tools-audit.txt
	@touch $@

audit: setup $(AUDIT_STAMP) ## pip-audit over every pinned set; says what could not be audited
	$(BIN)/python -m infra.audit --pip-audit $(AUDIT_VENV)/bin/pip-audit $(if $(AUDIT_STRICT),--strict)

fuzz: setup ## schemathesis and raw-request fuzzing of the API: 1,000 requests per test, figures in bench/results/
	@rm -f bench/results/fuzz.json
	TRUTHWATCH_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) TRUTHWATCH_FUZZ_RESULTS=bench/results/fuzz.json \
		$(BIN)/pytest -p no:cacheprovider tests/functional/test_fuzz_api.py

train: setup ## train on the digits and export a new model version
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train

demo: setup ## the main job: train if needed, start the local stack, play healthy / drifted / recovered
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train --if-missing
	$(BIN)/python -m infra.local demo --model-dir $(ARTIFACTS)/models/digits

serve: setup ## the local stack: moto, the API on 127.0.0.1:3000, label uploads, alarms, outbox (Ctrl-C stops)
	$(BIN)/python -m infra.local serve --model-dir $(ARTIFACTS)/models/digits

bench: setup ## run every benchmark in bench/ and record its figures in bench/results/
	$(BIN)/truthwatch --artifacts $(ARTIFACTS) train --if-missing
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

openapi: setup ## write docs/openapi.json from the inference handler's routes and models
	$(BIN)/python -m functions.inference.openapi docs/openapi.json

model-bundle: setup ## copy the LATEST exported model into functions/inference/model/ for the image
	$(BIN)/python -m truthwatch.inference_bundle $(ARTIFACTS)/models/digits --target functions/inference/model

lock: ## re-pin requirements/dev.txt from the groups in pyproject.toml (needs the package registry)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet --group dev setuptools wheel
	.venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v "^pip==" | sort -f > requirements/dev.txt
	rm -rf .venv-lock

clean: ## remove caches (keeps .venv and artifacts)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
