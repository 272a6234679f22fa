# Entry points: `make test` sets everything up (system packages, venv) and runs the whole suite; `make run` runs the
# backend; `make audit` checks the dependencies against known advisories.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: test unit lint run bench clean system-deps audit

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# redis-server and chromium: installed with apt-get as root, else named (one line) and make stops.
system-deps:
	@tools/system-deps

test: system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (the rules and the format) over the code; mypy over backend/, the labeling core strictly ([tool.mypy]).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check backend tests benchmarks tools
	$(VENV)/bin/ruff format --check backend tests benchmarks tools
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# exec: make's shell becomes the command, so a signal to it reaches the command itself (make forwards nothing);
# the command also stops when its parent dies (backend/lifetime.py).
run: $(VENV)/.installed
	exec $(VENV)/bin/fewshot-prelabel run

audit: $(VENV)/.installed
	$(PY) tools/audit.py

# A local Label Studio with a pre-labeled demo project (README: "What you will see"). The start time is taken when
# make reads this file, so the elapsed time the demo prints includes `make install`.
.PHONY: demo
demo: DEMO_STARTED := $(shell date +%s)
demo: $(VENV)/.installed
	FEWSHOT_DEMO_STARTED=$(DEMO_STARTED) exec $(VENV)/bin/fewshot-prelabel demo $(DEMO_ARGS)
