# The two set-up commands from the README. Each creates or updates its own virtualenv from
# the requirements files, so a fresh machine needs only python3 (and apt for Chromium).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: dashboard test chromium

dashboard: $(VENV)/.run-deps
	$(PY) -m streamlit run dashboard/server.py

# Lint and the import contracts first (seconds), then the whole suite in TEST_WORKERS processes
# (pytest-xdist; the end-to-end tests share one of them). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(VENV)/.dev-deps chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt requirements-export.txt requirements-tracking.txt requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(VENV)/.run-deps $@

# The end-to-end tests drive Debian's Chromium (never a browser downloaded by Playwright).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
