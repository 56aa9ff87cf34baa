# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs, compiles the bundled specs once, runs the default workflow on bundled data
#   make test   the same set-up (without compiling the specs beforehand), then the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WARMED := $(VENV)/.warmed-stamp

.PHONY: install warm demo lint test test-slow bench validation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Once per install: the bundled specs whose compiled model serves any data layout, for 2 to 5 arms
# (`bayes-trial cache warm`; about 2 minutes on 2 cores), so that a first fit of one loads it from disk.
$(WARMED): $(STAMP)
	$(BIN)/bayes-trial cache warm
	touch $(WARMED)

install: $(WARMED)

warm: $(STAMP)
	$(BIN)/bayes-trial cache warm

demo: $(WARMED)
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
