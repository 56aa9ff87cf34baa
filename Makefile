# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs, runs the default workflow on bundled data
#   make test   the same set-up, then the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo lint test test-slow bench validation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bayes-trial run workflows/oss_demo.toml

# The layer and style checks first (seconds), then the tests.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks workflows

test: lint
	$(BIN)/python -m pytest -q --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Speed: default path against plain Bambi + PyMC NUTS, written to benchmarks/RESULTS.md (~30 min on 2 cores).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The validation runs committed under data/validation/ (hours on 2 cores; resumable; add --scheduler for a cluster).
validation: $(STAMP)
	$(BIN)/python workflows/validation_runs.py sbc
	$(BIN)/python workflows/validation_runs.py recovery
	$(BIN)/python workflows/validation_runs.py power
	$(BIN)/python workflows/validation_runs.py consultants
	$(BIN)/python workflows/validation_runs.py attrition

clean:
	rm -rf results .pytest_cache
