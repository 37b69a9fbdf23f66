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

.PHONY: demo test install lint serve worker clean

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
	@mkdir -p var; worker=""; \
	stop_worker() { [ -n "$$worker" ] && kill $$worker 2>/dev/null; worker=""; }; \
	trap stop_worker EXIT INT TERM; \
	if [ -n "$$REDIS_URL" ]; then \
		echo "Starting a Celery worker (REDIS_URL is set); its log is var/worker-$(PORT).log"; \
		$(BIN)/celery -A omsguard worker -B --schedule=var/beat-$(PORT) --loglevel=INFO \
			--concurrency=2 >var/worker-$(PORT).log 2>&1 & \
		worker=$$!; \
	fi; \
	$(BIN)/python manage.py seed_demo || exit 1; \
	echo "Serving on http://$(HOST):$(PORT)/ (Ctrl-C stops it)"; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
