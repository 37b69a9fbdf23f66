# OMS Guard: `make demo` and `make test` are the two commands a new user needs.
# Without DATABASE_URL/REDIS_URL both use SQLite and run Celery tasks in-process.

# The first interpreter that actually runs and is 3.11+ (a pyenv shim can exist but fail to run).
PYTHON ?= $(shell for candidate in python3.13 python3.12 python3.11 python3; do \
	$$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$candidate; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

export DJANGO_SETTINGS_MODULE := omsguard.settings

.PHONY: demo test install lint serve worker clean screenshots reliability bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "OMS Guard needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: export DEBUG ?= 1
demo: export OMSGUARD_PUBLIC_URL ?= http://$(HOST):$(PORT)
demo: install
	$(BIN)/python manage.py migrate --noinput
	@# With REDIS_URL the worker starts first: seed_demo's deliveries go through it. Its -B
	@# runs the periodic jobs (sweep, breakers, autonomy gates) inside the same process.
	@# seed_demo's replay would log about 1,000 INFO lines (one per order and stock event); it prints
	@# its own summary, so only warnings and errors are logged while it runs.
	@mkdir -p var; worker=""; \
	stop_worker() { [ -n "$$worker" ] && kill $$worker 2>/dev/null; worker=""; }; \
	trap stop_worker EXIT INT TERM; \
	if [ -n "$$REDIS_URL" ]; then \
		echo "Starting a Celery worker (REDIS_URL is set); its log is var/worker-$(PORT).log"; \
		$(BIN)/celery -A omsguard worker -B --schedule=var/beat-$(PORT) --loglevel=INFO \
			--concurrency=2 >var/worker-$(PORT).log 2>&1 & \
		worker=$$!; \
	fi; \
	LOG_LEVEL=WARNING $(BIN)/python manage.py seed_demo || exit 1; \
	echo "Serving on http://$(HOST):$(PORT)/ (Ctrl-C stops it)"; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# `make screenshots` seeds its own SQLite demo in var/screenshots/, serves it on
# SCREENSHOTS_PORT, saves the README's images with Chromium and stops the server again, also
# on failure. A port that already answers is refused, so no other site gets photographed.
SCREENSHOTS_PORT ?= 8765
SCREENSHOTS_VAR := var/screenshots
screenshots: export OMSGUARD_VAR_DIR := $(SCREENSHOTS_VAR)
screenshots: export DEBUG := 1
screenshots: export DATABASE_URL :=
screenshots: export REDIS_URL :=
screenshots: install ## Refresh docs/screenshots/ from a throw-away demo (needs Chromium)
	@$(BIN)/python -c 'import socket, sys; sys.exit(socket.socket().connect_ex(("127.0.0.1", $(SCREENSHOTS_PORT))) == 0)' \
		|| { echo "Port $(SCREENSHOTS_PORT) is in use; set SCREENSHOTS_PORT to a free one." >&2; exit 1; }
	rm -rf $(SCREENSHOTS_VAR)
	mkdir -p $(SCREENSHOTS_VAR) docs/screenshots
	@echo "Seeding a throw-away demo; its log is $(SCREENSHOTS_VAR)/seed.log"
	$(BIN)/python manage.py migrate --noinput >$(SCREENSHOTS_VAR)/seed.log 2>&1
	$(BIN)/python manage.py seed_demo >>$(SCREENSHOTS_VAR)/seed.log 2>&1
	@server=""; \
	stop_server() { [ -n "$$server" ] && kill $$server 2>/dev/null; server=""; }; \
	trap stop_server EXIT INT TERM; \
	$(BIN)/python manage.py runserver --noreload 127.0.0.1:$(SCREENSHOTS_PORT) \
		>$(SCREENSHOTS_VAR)/server.log 2>&1 & \
	server=$$!; \
	$(BIN)/python manage.py take_screenshots --base-url http://127.0.0.1:$(SCREENSHOTS_PORT) \
		--out docs/screenshots --username ops --password ops-demo-pass

# `make test` spreads the tests over TEST_PROCESSES pytest-xdist workers, by default one per CPU
# and at most 4; TEST_PROCESSES=0 runs them all in this one process. --dist loadgroup keeps the
# tests of one group of XDIST_GROUPS (tests/conftest.py) on the same worker, one after another.
TEST_PROCESSES ?= $(shell n=$$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); \
	[ "$$n" -gt 4 ] && n=4; echo $$n)
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup $(PYTEST_ARGS)

# `make reliability` runs the fault, race and fuzz suites at full size against PostgreSQL and
# Redis (DATABASE_URL and REDIS_URL), then rewrites the figures in docs/reliability.md.
# `make test` runs the same suites in their smaller CI size.
RELIABILITY_FIGURES := var/reliability-figures.jsonl
reliability: install
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "make reliability needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL=redis://..." >&2; exit 1; }
	@mkdir -p var; rm -f $(RELIABILITY_FIGURES)
	OMSGUARD_RELIABILITY_SCALE=full OMSGUARD_RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) \
		OMSGUARD_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -m reliability -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/python -m tests.reliability.report $(RELIABILITY_FIGURES) docs/reliability.md

# `make bench` runs every benchmark part against the PostgreSQL server of BENCH_POSTGRES_URL and
# the Redis of BENCH_REDIS_URL (defaults: the local ones; each part creates and drops a database
# of its own) and prints each figure beside its same-run baseline and target. BENCH_ARGS takes
# --quick, --parts ingest,decisions and --strict (docs/performance.md).
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
