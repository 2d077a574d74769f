# Install, test and run the service from a local virtual environment in .venv.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# Folder of class subfolders for `make run`: NAS_DATA_DIR, else the flowers photos beside
# this checkout, else nothing (the demo downloads tf_flowers).
SHARED_FLOWERS := $(wildcard ../shared/datasets/flowers)
DATA ?= $(or $(NAS_DATA_DIR),$(SHARED_FLOWERS))

# The PostgreSQL server the postgres-marked tests use (.ci/run starts it).
NAS_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export NAS_TEST_POSTGRES_URL

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit lint clean

help:
	@echo "Targets:"
	@echo "  install  create $(VENV) and install the project with its tensorflow and dev extras"
	@echo "  run      run the demo search (DATA=folder, default NAS_DATA_DIR, else tf_flowers)"
	@echo "  test     ruff check, then the test suite (NAS_TEST_POSTGRES_URL=$(NAS_TEST_POSTGRES_URL))"
	@echo "  test-unit  tests/unit alone: no process, network or database server, under a minute"
	@echo "  lint     ruff check, ruff format --check and the import contracts (lint-imports)"
	@echo "  clean    remove var/, $(VENV) and the caches"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[tensorflow,dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/nas demo $(DATA)

# Two pytest workers (most tests wait on worker processes, HTTP or leases), then alone the
# tests that stop a shared server.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

test-unit: $(STAMP)
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf var $(VENV) .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
