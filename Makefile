# The two quick-start commands, `make serve` and `make test`, set everything up themselves:
# a virtual environment in .venv with the project installed (editable) and its dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint proto bench bench-ab fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: $(STAMP)
	$(BIN)/smallguard serve $(ARGS)

test: $(STAMP)
	scripts/install-prometheus.sh
	scripts/install-postgresql.sh
	scripts/install-chromium.sh
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

# Two versions of the server in alternating rounds, e.g. make bench-ab ARGS="--against HEAD~1 --in-flight 64"
bench-ab: $(STAMP)
	$(BIN)/python benchmarks/ab_rounds.py $(ARGS)

# A longer fuzzing soak than the tests': N generated requests (default 100000), counts by status and RSS.
fuzz: $(STAMP)
	SMALLGUARD_FUZZ_EXAMPLES=$(or $(N),100000) SMALLGUARD_FUZZ_IN_FLIGHT=16 SMALLGUARD_FUZZ_GARBAGE=10000 $(BIN)/pytest -q -s tests/transport/test_fuzz.py
