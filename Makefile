# wma-ensemble: the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every package comes from requirements/dev.lock (versions and sha256 hashes;
# torch is the CPU build). `make lock` re-resolves the locks from pyproject.toml.
LOCK := requirements/dev.lock
PIP_PIN := pip==26.3
STAMP := $(VENV)/.installed

.PHONY: help install lock e2e check format test test-fast demo up mock-bundle bench soak drills fuzz clean

help:
	@echo "make demo        - set up and run the local mock stack on the bundled sample frames"
	@echo "make test        - install, lint/type-check, and run every test suite"
	@echo "make test-fast   - install and run the tests not marked slow, stopping at the first failure"
	@echo "make check       - ruff check, ruff format --check, mypy --strict"
	@echo "make format      - ruff format and ruff check --fix"
	@echo "make e2e         - build both images offline and run the chart's release in containers"
	@echo "make up          - run the local stack (wma up) in the foreground"
	@echo "make bench       - the benchmark commands of docs/benchmarks.md"
	@echo "make soak        - SOAK_CALLS calls (2000) at 8 clients, ~5 % malformed, on a real local stack"
	@echo "make drills      - member kill, hang, all down and gateway SIGTERM under load (docs/reliability.md)"
	@echo "make fuzz        - schemathesis (FUZZ_EXAMPLES per route) and hostile requests on real processes"
	@echo "make mock-bundle - rebuild services/local/wma_local/mock.json and the chart's copy"
	@echo "make install     - create .venv and install exactly the locked versions (requirements/dev.lock)"
	@echo "make lock        - re-resolve requirements/*.lock from pyproject.toml (scripts/lock.sh)"
	@echo "make clean       - remove .venv and the tool caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIP_PIN)

# The locked packages first (hashes checked), then the project itself, editable,
# with no dependency resolution and the locked setuptools.
$(STAMP): pyproject.toml $(LOCK) Makefile | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

lock:
	bash scripts/lock.sh

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

# Needs root (or a Docker engine that answers) and Debian's docker.io and debootstrap
# packages; docs/deploy.md says what it proves.
e2e: install
	bash scripts/e2e.sh

demo: install
	$(BIN)/wma demo

up: install
	$(BIN)/wma up

# Rebuild services/local/wma_local/mock.json from its seeded synthetic training set, and the
# chart's copy of it (docs/calibrators.md).
mock-bundle: install
	mkdir -p build/mock-bundle
	$(BIN)/wma calibrate synth --seed 7 --out build/mock-bundle/mock-train.csv
	$(BIN)/wma calibrate fit build/mock-bundle/mock-train.csv --out services/local/wma_local/mock.json \
		--created 2024-01-01T00:00:00Z
	cp services/local/wma_local/mock.json charts/wma-ensemble/files/mock.json

# The commands of docs/benchmarks.md, as written there (the GPU check, bash
# benchmarks/gpu_check.sh, needs a CUDA machine and is not among them).
bench: install
	$(BIN)/python benchmarks/e2e_bench.py
	$(BIN)/python benchmarks/gateway_bench.py --requests 32
	$(BIN)/python benchmarks/peers_bench.py
	$(BIN)/python benchmarks/model_server_bench.py --duration 5 --cpu-threads 0 1

# docs/reliability.md: every answer checked against the core; exit 1 on anything unexpected.
SOAK_CALLS ?= 2000
soak: install
	$(BIN)/python benchmarks/soak.py --calls $(SOAK_CALLS) --clients 8 --bad-fraction 0.05

drills: install
	$(BIN)/python benchmarks/drills.py

# Both services' OpenAPI documents fuzzed, and the hostile cases of tests_support/fuzzing.py,
# against real processes, tokens off and on (docs/reliability.md); exit 1 on any failure.
FUZZ_EXAMPLES ?= 60
fuzz: install
	$(BIN)/python scripts/fuzz.py --examples $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
