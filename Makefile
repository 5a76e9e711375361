# pairwatch: the two commands of the quick start, and a few helpers.
#   make demo   set up .venv and run the offline demo (simulator + daemon)
#   make test   set up .venv and run the whole test suite (lint, types, tests)
PYTHON ?= python3
VENV ?= .venv
DEMO_ARGS ?=

.PHONY: demo test lint bench lock clean

$(VENV)/.installed: pyproject.toml requirements.lock scripts/bootstrap
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/bootstrap
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/pairwatch demo $(DEMO_ARGS)

test: $(VENV)/.installed
	VENV=$(VENV) scripts/test

lint: $(VENV)/.installed
	VENV=$(VENV) scripts/check

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/run_all.py

# Re-resolve the pinned versions (needs the network) after changing dependencies.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q -U pip && .lockvenv/bin/pip install -q -e '.[dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^pairwatch' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) pairwatch-demo .pytest_cache .mypy_cache .ruff_cache
