# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install ladd and torch 2.13.0, run `ladd run`
#   make test   the same install, then the test suite (what .ci/run calls)
# TORCH is the pip arguments that install torch, e.g. a CPU-only or a CUDA build:
#   rm -rf .venv && make install TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test bench

$(BIN)/ladd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
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
