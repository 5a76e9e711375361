# Shortcuts; the scripts work without make (a fresh Debian may not have it).
#   make demo   = scripts/demo   (set up .venv, run the offline demo)
#   make test   = scripts/test   (set up .venv, lint, type-check, run every test)
PYTHON ?= python3
DEMO_ARGS ?=

.PHONY: demo test lint lock clean

demo:
	PYTHON=$(PYTHON) scripts/demo $(DEMO_ARGS)

test:
	PYTHON=$(PYTHON) scripts/test

lint:
	scripts/bootstrap && scripts/check

# Re-resolve the pinned versions (needs a package index) after changing dependencies.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q -U pip && .lockvenv/bin/pip install -q -e '.[dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^pairwatch' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf .venv pairwatch-demo .pytest_cache .mypy_cache .ruff_cache benchmarks/out
