# The two quick-start commands, `make serve` and `make test`, set everything up themselves:
# a virtual environment in .venv with the project installed (editable) and its dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint proto bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: $(STAMP)
	$(BIN)/smallguard serve $(ARGS)

test: $(STAMP)
	scripts/install-prometheus.sh
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

proto: $(STAMP)
	PYTHON=$(BIN)/python scripts/generate-proto.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/server_shape.py $(ARGS)
