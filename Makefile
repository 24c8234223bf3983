# Every target sets up what it needs. `make demo` and `make test` are the README's Quickstart.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint format clean

setup: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch pulls CUDA.
# constraints.txt pins every package to the versions the documented results were measured with.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

demo: setup
	$(BIN)/worldmodels run --preset demo --run-dir runs/demo

test: setup
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments
	$(BIN)/pytest -q

bench: setup
	for b in collect_throughput vae_throughput mdnrnn_throughput dream_vs_real carracing_env agent_throughput; do $(BIN)/python benchmarks/$$b.py || exit 1; done

format: setup
	$(BIN)/ruff format src tests benchmarks experiments
	$(BIN)/ruff check --fix src tests benchmarks experiments

clean:
	rm -rf $(VENV) runs .pytest_cache
