# One command per job, each doing its own set-up: `make demo`, `make test`.
#
# The virtualenv is made on first use; what is installed into it is keyed by a hash
# of pyproject.toml (a stamp file per extra), so a second run installs nothing and a
# changed pyproject.toml installs again.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KEY := $(shell $(PYTHON) -c "import hashlib, pathlib; print(hashlib.sha256(pathlib.Path('pyproject.toml').read_bytes()).hexdigest()[:16])")
BASE := $(VENV)/.installed-base-$(KEY)
DEV := $(VENV)/.installed-dev-$(KEY)
# The tests mostly wait (sockets, sleeps, fsyncs): six workers per core keep the cores busy
# (each worker starts its own PostgreSQL cluster; about 150 MB each).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(24, 6 * (os.cpu_count() or 1)))")

.PHONY: demo test lint docs docs-build bench clean help

help:
	@echo "make demo   run the demo against the sandbox (no API key needed)"
	@echo "make test   run the test suite"
	@echo "make lint   ruff and mypy --strict"
	@echo "make docs   serve the documentation site locally (make docs-build: build it, strict)"
	@echo "make bench  the benchmarks' smoke runs"
	@echo "make clean  remove the virtualenv"

$(PY):
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'shakesco-async needs Python 3.11+; run make PYTHON=python3.11 ...')"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(BASE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@rm -f $(VENV)/.installed-base-*
	@touch $@

$(DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-base-*
	@touch $@ $(BASE)

demo: $(if $(wildcard $(DEV)),$(DEV),$(BASE))
	$(VENV)/bin/shakesco-async demo

test: $(DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

DOCS := $(VENV)/.installed-docs-$(KEY)

$(DOCS): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	@rm -f $(VENV)/.installed-docs-*
	@touch $@

docs: $(DOCS)
	$(PY) -m mkdocs serve

docs-build: $(DOCS)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: $(DEV)
	for bench in guard_overhead guard_cpu hot_customer recovery scale postgres_overhead latency staged; do \
		$(PY) benchmarks/$$bench.py --smoke || exit 1; \
	done
	$(PY) benchmarks/recovery.py --smoke --postgres

clean:
	rm -rf $(VENV)
