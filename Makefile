# The two set-up commands of the README: `make demo` and `make test`.
# Both create ./.venv and install ekd (with torch) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
PLUGINS := $(wildcard examples/plugins/*/pyproject.toml)

.PHONY: install demo test test-fast lint format bench clean

# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only torch wheels (no CUDA libraries).
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

# The runtime alone (ekd and torch): all `make demo` needs.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_FROM) $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

# The development set-up: the test extra and the example plugins on top.
$(VENV)/.installed: $(VENV)/.runtime pyproject.toml $(PLUGINS)
	$(PY) -m pip install -q -e ".[test]" $(foreach p,$(PLUGINS),-e ./$(dir $(p)))
	touch $@

install: $(VENV)/.installed

# The engine's per-epoch lines go to stderr (stdout is for --json): 2>&1 keeps them in `make demo > log`.
demo: $(VENV)/.runtime
	$(VENV)/bin/ekd demo 2>&1

# ruff (style, complexity), import-linter (the layers of docs/architecture.md), mypy (types).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
test: lint
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

# The inner loop (a few minutes on 2 cores): every test but those marked slow (end-to-end runs,
# real data, subprocess pipelines), no lint.  CI runs all of them with `make test`.
test-fast: install
	$(PY) -m pytest -q -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

bench: install
	$(PY) benchmarks/engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
