# The README's two commands: `make demo` and `make test`. Each creates the virtual environment first.
# The interpreter .venv is built with: an optimized build when the machine has one (scripts/pick-python.sh says
# which and why), else python3; `make install PYTHON=...` names another. An existing .venv keeps its own.
PYTHON ?= $(shell scripts/pick-python.sh)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install demo test unit bench up down lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "axiswatch needs Python >= 3.11, but $(PYTHON) is %s; name another: make install PYTHON=/path/to/python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,lint]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

## The whole pipeline in one process: in-process bus, SQLite, dashboard at http://localhost:5006
demo: $(STAMP)
	$(PY) -m demo $(DEMO_ARGS)

## Every test; starts the repo's own Kafka and PostgreSQL when none is configured and Docker is absent
test: $(STAMP)
	scripts/with-services.sh $(PY) -m pytest $(PYTEST_ARGS)

## Unit tests only (no services)
unit: $(STAMP)
	$(PY) -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

## Benchmarks; results under bench/results/
bench: $(STAMP)
	scripts/with-services.sh $(PY) -m bench $(BENCH_ARGS)

## Lint and format check (ruff, configured in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Multi-process run without Docker: local Kafka + PostgreSQL + the four services (+ the notifier with NOTIFIER_CONFIG)
up: $(STAMP)
	scripts/local-stack.sh up

down:
	scripts/local-stack.sh down

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts var
