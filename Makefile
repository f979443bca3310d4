# dnsfw: `make run` serves Corefile.example on 127.0.0.1:1053; `make test` runs the whole suite.
# Release artefacts (docs/ec2.md): `make dist` (wheel, sdist, offline bundles per architecture),
# `make deb` (Debian package), `make image` (container image, where docker or podman is).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make run` installs what running needs; test, lint and format add the test extras (pytest,
# ruff...), dist adds `build`
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DIST_STAMP := $(VENV)/.installed-dist
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' proxy/__init__.py)
DIST    ?= dist
WHEEL   := $(DIST)/dnsfw-$(VERSION)-py3-none-any.whl
# the bundles' architectures and CPython versions (packaging/bundle.sh)
ARCHES  ?= x86_64 aarch64
PYTHONS ?= 3.11 3.12 3.13
IMAGE   ?= dnsfw:$(VERSION)
BUILDER ?= $(shell command -v docker || command -v podman)

.PHONY: run test lint format check docs bench dist deb image clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $(RUN_STAMP) $(TEST_STAMP) $(DIST_STAMP)

$(DIST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dist]'
	touch $(RUN_STAMP) $(DIST_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/dnsfw run -conf Corefile.example

check: $(RUN_STAMP)
	$(VENV)/bin/dnsfw check -conf Corefile.example

# docs/reference.md from the plugin docstrings (tests/test_docs.py fails when it is stale)
docs: $(RUN_STAMP)
	$(PY) -m proxy.reference > docs/reference.md

# pytest exits 5 when it collected no test: that must fail, and it does (non-zero).
test: $(TEST_STAMP)
	$(PY) -m pytest -q

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check proxy plugins commands tests bench setup.py
	$(VENV)/bin/ruff format --check proxy plugins commands tests bench setup.py

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format proxy plugins commands tests bench setup.py
	$(VENV)/bin/ruff check --fix proxy plugins commands tests bench setup.py

bench: $(RUN_STAMP)
	bench/run.sh

# the wheel and sdist (their proxy/_build.py records `git describe`), then one offline bundle
# per architecture: dist/dnsfw-VERSION-linux-ARCH.tar.gz (packaging/bundle.sh, install.sh)
dist: $(DIST_STAMP)
	rm -rf $(DIST)/dnsfw-$(VERSION)*
	$(PY) -m build --outdir $(DIST) .
	for arch in $(ARCHES); do \
		PYTHON=$(PY) PYTHONS="$(PYTHONS)" packaging/bundle.sh $$arch $(WHEEL) $(DIST) || exit 1; \
	done

# dist/dnsfw_VERSION_ARCH.deb for this machine's architecture, from the bundle's wheels
deb: dist
	packaging/deb.sh $(DIST)/dnsfw-$(VERSION)-linux-$(shell uname -m).tar.gz $(DIST)

# the container image (Dockerfile), with whichever of docker and podman is installed
# (Dockerfile: from this version's bundle, for the builder's architecture)
image:
	@test -n "$(BUILDER)" || { echo "make image: needs docker or podman" >&2; exit 1; }
	$(MAKE) dist
	$(BUILDER) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
