# wma-ensemble: the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CI and tests pin the CPU build of torch that this project's machines carry;
# the `torch` extra itself stays a range for GPU deployments.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help install check format test test-fast demo up mock-bundle bench clean

help:
	@echo "make demo        - set up and run the local mock stack on the bundled sample frames"
	@echo "make test        - install, lint/type-check, and run every test suite"
	@echo "make test-fast   - install and run the tests not marked slow, stopping at the first failure"
	@echo "make check       - ruff check, ruff format --check, mypy --strict"
	@echo "make format      - ruff format and ruff check --fix"
	@echo "make up          - run the local stack (wma up) in the foreground"
	@echo "make bench       - the benchmark commands of docs/benchmarks.md"
	@echo "make mock-bundle - rebuild calibrators/mock.json and the chart's copy"
	@echo "make install     - create .venv and install the project with the dev and torch extras"
	@echo "make clean       - remove .venv and the tool caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The Makefile too: a new TORCH_PIN reinstalls.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

install: $(STAMP)

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: check
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow" -x -q

demo: install
	$(BIN)/wma demo

up: install
	$(BIN)/wma up

# Rebuild calibrators/mock.json from its seeded synthetic training set, and the
# chart's copy of it (docs/calibrators.md).
mock-bundle: install
	mkdir -p build/mock-bundle
	$(BIN)/wma calibrate synth --seed 7 --out build/mock-bundle/mock-train.csv
	$(BIN)/wma calibrate fit build/mock-bundle/mock-train.csv --out calibrators/mock.json \
		--created 2024-01-01T00:00:00Z
	cp calibrators/mock.json charts/wma-ensemble/files/mock.json

# The commands of docs/benchmarks.md, as written there.
bench: install
	$(BIN)/python benchmarks/model_server_bench.py --duration 5 --cpu-threads 0 1
	$(BIN)/python benchmarks/gateway_bench.py --requests 32

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
