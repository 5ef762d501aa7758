# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install browser run ui stop lint test test-unit test-tcp image-check lock bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## List the targets.
help:
	@awk '/^## /{doc=substr($$0, 4); next} /^[a-z-]+:/{if (doc) printf "  make %-12s %s\n", substr($$1, 1, length($$1)-1), doc; doc=""}' $(MAKEFILE_LIST)

## Create the virtualenv and install the project with its dev tools.
install: $(STAMP)

## Run the main job once on the embedded local stack (moto + pgserver) and print a report.
run: $(STAMP)
	$(BIN)/python -m stock_platform.local run

## Dagster UI (webserver + daemon) on the same local stack: http://127.0.0.1:3000
ui: $(STAMP)
	$(BIN)/python -m stock_platform.local ui

## End the local stack (its background S3 endpoint keeps what make run wrote until then; the database stays on disk).
stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m stock_platform.local stop; fi

## Debian's chromium + chromium-driver for the UI test, installed when missing and possible (root + apt).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null); \
	else echo "chromium/chromedriver are missing and cannot be installed here: the UI test will be skipped"; fi

## Lint and types at zero findings: ruff (lint + format), mypy (strict), and dg check defs.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# dg loads an instance: a throwaway one, so the repository's production dagster.yaml is not read.
	home=$$(mktemp -d) && printf 'telemetry:\n  enabled: false\n' > $$home/dagster.yaml && \
	  DAGSTER_HOME=$$home VIRTUAL_ENV=$(abspath $(VENV)) STOCK_PLATFORM_SOURCE_BUCKET=lint \
	  STOCK_PLATFORM_DATABASE_URL=postgresql://lint@localhost/lint $(BIN)/dg check defs; status=$$?; rm -rf $$home; exit $$status

## Lint, then unit and integration tests (moto's HTTP server, embedded PostgreSQL, the real Dagster daemon, Chromium).
test: $(STAMP) browser lint
	@# A crash of the test process, even after pytest's own report (a thread at interpreter exit), prints every
	@# thread's stack.
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest

## Only the Dagster-free unit tests (seconds).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not daemon"

## The integration tests against the machine's PostgreSQL at 127.0.0.1:5432 instead of the embedded one.
test-tcp: $(STAMP)
	STOCK_PLATFORM_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test $(BIN)/python -m pytest -m integration

## The benchmark (not part of make test): floor script, usual approach and the platform, with a profiled run; results in benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench --profile

## Re-take the README's screenshots (docs/) with the UI test.
screenshots: $(STAMP) browser
	STOCK_PLATFORM_SCREENSHOT_DIR=docs $(BIN)/python -m pytest stock_platform_tests/e2e/test_ui_and_backfill.py -k ui_shows

## Replay the Dockerfile's install steps and CMD in a clean virtualenv; health-check the gRPC code server.
image-check:
	scripts/check_image_steps.sh

## Re-pin requirements.lock (the image's dependencies) from a clean install of the package.
lock:
	rm -rf .local/lockvenv && $(PYTHON) -m venv .local/lockvenv
	.local/lockvenv/bin/pip install --quiet .
	(echo "# Production pins for the Docker image (pip freeze of 'pip install .'; regenerate with 'make lock')."; \
	 .local/lockvenv/bin/pip freeze --exclude stock_platform --exclude stock-platform) > requirements.lock

## Stop the local stack and remove its state (.local), caches.
clean: stop
	rm -rf .local .pytest_cache .hypothesis
