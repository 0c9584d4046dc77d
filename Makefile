# Entry points; scripts/bootstrap.py installs what they need (fast when nothing changed).
# Caches (npm, Maven, KCL jars) live in $${LAZYREP_CACHE:-$$HOME/.cache/lazy-replication}.

PYTHON ?= python3
BIN := .venv/bin

.PHONY: help bootstrap test lint typecheck pytest demo clean cli-docs reliability

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

bootstrap:  ## create or update .venv, the KCL jars, kinesalite and nghttpx
	$(PYTHON) scripts/bootstrap.py

lint: bootstrap  ## ruff check
	$(BIN)/ruff check .

typecheck: bootstrap  ## mypy --strict (configured in pyproject.toml)
	$(BIN)/mypy

# Two workers, one test file each at a time: the daemon tests spend most of their time
# waiting on the KCL's lease timers, so they overlap well with the rest. Each worker
# starts its own local stack on free ports. Files go out longest first
# (tests/conftest.py LONGEST_FIRST), not in xdist's most-tests-first order.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

pytest: bootstrap  ## the test suite (unit, wire, daemon)
	$(PYTEST)

test: bootstrap  ## everything CI runs: ruff, mypy, pytest
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(PYTEST)

demo: bootstrap  ## the end-to-end demo on the local stack
	$(BIN)/lazyrep demo

cli-docs: bootstrap  ## regenerate docs/CLI.md and README.md's command table from --help
	$(BIN)/python -m lazyrep.cli_reference

reliability: bootstrap  ## the reliability suite at full scale, JSON lines (docs/RELIABILITY.md)
	$(BIN)/lazyrep bench reliability --json

clean:  ## remove .venv and tool caches inside the repo (keeps the shared cache)
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis .lazyrep
