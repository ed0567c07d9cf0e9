# qcodes-stmtip — the two commands of the README quick start, and their setup.
#   make demo   set up and run the main job on the simulated microscope
#   make test   set up and run the test suite (what .ci/run calls)

SHELL := /bin/bash
VENV  ?= .venv
# python3.12: the plain name when it works, else the pyenv install (its shim fails when 3.12 is not global).
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
            $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
BIN   := $(VENV)/bin
STAMP := $(VENV)/.stmtip-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3.12 not found (tried PATH and ~/.pyenv/versions/3.12*)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stmtip demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check qcodes_stmtip tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
