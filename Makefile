# The README's commands. `make setup` builds .venv/ with both pinned locks (requirements.txt: what
# session-stream runs on; requirements-dev.txt: the test and lint tools); `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.8

.PHONY: setup test test-mysql84 stack-test lint bench bench-days bench-backfill demo system-deps

# The system packages each target needs (scripts/system-deps.sh): checked on every run, before the
# venv is built; as root on Debian/Ubuntu it installs what is missing, otherwise it says what to run.
# test and demo check theirs up front (one list of all that is missing, not one per stage) and
# again in their recipe, for when the venv was built by an earlier `make setup`. Silent when present.
SYSTEM_DEPS := build
test: SYSTEM_DEPS := test
demo: SYSTEM_DEPS := demo
CHECK_SYSTEM = @PYTHON="$(PYTHON)" bash scripts/system-deps.sh

system-deps:
	$(CHECK_SYSTEM) $(SYSTEM_DEPS)

setup: $(VENV)/.installed

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI images, this sandbox), every
# process would otherwise compile Airflow anew: `import airflow.models` took 6.8 s, 2.8 s with it.
# Order-only: the check runs every time but does not force a rebuild of the venv.
# --require-hashes: every package is the file the locks name, byte for byte.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml \
		include/keycount/session_stream_keycount.c include/fastrows/session_stream_fastrows.c \
		| system-deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)"
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install -q --compile-bytecode --require-hashes \
		-r requirements.txt -r requirements-dev.txt
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install -q --no-deps --reinstall-package session-stream -e .
	touch $@

# In parallel worker processes (pytest-xdist), one per core by default: TEST_WORKERS=0 runs the
# suite in this one process. Each worker starts with its share, the slowest tests first
# (tests/conftest.py), and takes tests from a busy one when it runs out (--dist worksteal).
TEST_WORKERS ?= auto
# Bytecode of the repository's own code first: where PYTHONDONTWRITEBYTECODE is set (CI, this
# sandbox), every CLI and Airflow process the tests start would compile it anew (~0.1 s each).
test: setup
	$(CHECK_SYSTEM) test
	$(VENV)/bin/python -m compileall -q include plugins dags scripts benchmarks tests
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The integration tests (every SQL statement of the engine, on a real server) with MariaDB made to
# act as MySQL 8.4 where it can: MySQL 8.4's default sql_mode in full and no table elimination, set
# per session (include/session_stream/warehouse/db.py).
test-mysql84: setup
	$(CHECK_SYSTEM) test
	SESSION_STREAM_AS_MYSQL84=1 $(VENV)/bin/python -m pytest tests/integration

# The Docker Compose stack from a fresh .env to a loaded day, in both executor modes, checked
# from outside (scripts/stack_test.py; README, "The whole system with Docker Compose").
stack-test: setup
	$(VENV)/bin/python scripts/stack_test.py

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python -m benchmarks.bench

# A warehouse grown day by day (12 days, ~9 M rows, ids with a timestamp first): day 12 against
# the same files in an empty warehouse, and Monetate's joins. --id-style uuid for random ids.
bench-days: setup
	$(VENV)/bin/python -m benchmarks.bench --days 12 --id-style timestamp

# Three days of files written, then backfilled at once through `airflow standalone` with
# `airflow backfill create` on session_stream_daily, beside `session-stream load` of the same
# files; checks every file loaded and the tables identical (benchmarks/bench_backfill.py).
bench-backfill: setup
	$(VENV)/bin/python -m benchmarks.bench_backfill

# A day of sample sessions loaded into MySQL through the real DAG; see scripts/demo.py.
demo: setup
	$(CHECK_SYSTEM) demo
	$(VENV)/bin/python scripts/demo.py
