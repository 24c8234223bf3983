# Every target sets up what it needs. `make demo` and `make test` are the README's Quickstart.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test wheel-check bench lint format clean

setup: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch pulls CUDA.
# constraints.txt pins every package to the versions the documented results were measured with.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/worldmodels run --preset demo --run-dir runs/demo

test: setup
	$(BIN)/ruff check src tests benchmarks experiments examples
	$(BIN)/ruff format --check src tests benchmarks experiments examples
	$(BIN)/pytest -q -n 2 --dist loadgroup

# Build the sdist and wheel, install the wheel into a fresh venv, run the shipped agents and the README's API
# example from outside the repository (CI runs it after the tests).
wheel-check: setup
	bash .ci/wheel

bench: setup
	for b in collect_throughput vae_throughput mdnrnn_throughput dream_vs_real dream_env carracing_env agent_throughput cpu_bf16; do $(BIN)/python benchmarks/$$b.py || exit 1; done

format: setup
	$(BIN)/ruff format src tests benchmarks experiments examples
	$(BIN)/ruff check --fix src tests benchmarks experiments examples

clean:
	rm -rf $(VENV) runs .pytest_cache
