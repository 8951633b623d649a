# The README's two commands: `make demo` runs the demo network, `make test` runs the tests.
# Each builds .venv from pyproject.toml on a fresh machine and reuses it while pyproject
# has not changed (the stamp file records the last install).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-from-pyproject
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/liaison demo

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file on one worker
# so that a module's shared network starts once (docs/testing.md says why and how many).
TEST_WORKERS ?= 4

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests

lint: $(STAMP)
	$(BIN)/ruff check liaison_net tests fuzz
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
