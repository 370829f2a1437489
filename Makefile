# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install ladd with the CPU torch wheel, run `ladd run`
#   make test   the same install, then the test suite (what .ci/run calls)
# On a CUDA machine, install a CUDA build instead: make install TORCH="torch --index-url <your wheel index>".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test bench

$(BIN)/ladd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/ladd

run: install
	$(BIN)/ladd run

test: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/dense_label_speed.py
	$(BIN)/python benchmarks/ladd_accuracy.py
