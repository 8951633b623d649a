# The README's two commands: `make demo` runs the demo network, `make test` runs the tests.
# Each builds .venv from pyproject.toml on a fresh machine and reuses it while pyproject
# has not changed (the stamp file records the last install).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-from-pyproject
BIN := $(VENV)/bin

.PHONY: demo test lint clean chromium postgresql

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/liaison demo

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file on one worker
# so that a module's shared network starts once (docs/testing.md says why and how many).
TEST_WORKERS ?= 4

# The desk's browser test drives Debian's chromium (tests/integration/test_desk_browser.py):
# installed here when missing and we are root (as CI is, on a clean machine); otherwise a
# clear message, and that test fails saying the same. Playwright's own browser download
# (`playwright install`) is never used.
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the desk's browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	else \
		echo "$(CHROMIUM) is missing and this is not root: run 'sudo apt-get install -y chromium'" \
		     "(the desk's browser test fails without it)"; \
	fi

# The store's contract suite and the PostgreSQL node tests (tests/postgres/) start a
# throwaway cluster from Debian's postgresql server binaries: installed here when missing
# and we are root (as CI is); otherwise a clear message, and those tests fail saying so.
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

postgresql:
	@if [ -n "$(PG_INITDB)" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's postgresql for the store's PostgreSQL tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }; \
	else \
		echo "PostgreSQL's server is missing and this is not root: run" \
		     "'sudo apt-get install -y postgresql' (tests/postgres fail without it)"; \
	fi

test: lint chromium postgresql
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests

lint: $(STAMP)
	$(BIN)/ruff check liaison_net tests fuzz
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
