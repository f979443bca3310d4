# dnsfw: `make run` serves Corefile.example on 127.0.0.1:1053; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint format check docs bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dnsfw run -conf Corefile.example

check: $(STAMP)
	$(VENV)/bin/dnsfw check -conf Corefile.example

# docs/reference.md from the plugin docstrings (tests/test_docs.py fails when it is stale)
docs: $(STAMP)
	$(PY) -m proxy.reference > docs/reference.md

# pytest exits 5 when it collected no test: that must fail, and it does (non-zero).
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check proxy plugins commands tests bench
	$(VENV)/bin/ruff format --check proxy plugins commands tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format proxy plugins commands tests bench
	$(VENV)/bin/ruff check --fix proxy plugins commands tests bench

bench: $(STAMP)
	bench/run.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
