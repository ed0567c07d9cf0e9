# qcodes-stmtip — the two commands of the README quick start, and their setup.
#   make demo   set up and run the main job on the simulated microscope
#   make test   set up and run the test suite (what .ci/run calls)
#   make mutants  mutation testing of the code where a bug hurts (not part of make test)

SHELL := /bin/bash
VENV  ?= .venv
# python3.12: the plain name when it works, else the pyenv install (its shim fails when 3.12 is not global).
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
            $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
BIN   := $(VENV)/bin
STAMP := $(VENV)/.stmtip-installed
# The committed lock: exact versions with hashes, for CPython 3.12 on Linux (see
# docs/decisions/0004-locked-install.md). `make lock` refreshes it; `make setup` never re-resolves.
LOCK  := requirements/lock-py312-linux-$(shell uname -m).txt
UV_COMPILE := uv pip compile pyproject.toml requirements/build.in --extra all --extra test \
              --python-version 3.12 --python-platform $(shell uname -m)-manylinux_2_28 \
              --generate-hashes --index-url https://pypi.org/simple

.PHONY: setup demo test lint bench lock lock-upgrade canary mutants clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@test -n "$(PYTHON)" || { echo "error: python3.12 not found (tried PATH and ~/.pyenv/versions/3.12*)"; exit 1; }
	@test -f $(LOCK) || { echo "error: no lock for this platform ($(LOCK)); pip install -e '.[all,test]' installs from pyproject's ranges instead"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -qq --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python tools/lock_check.py $(LOCK)
	touch $(STAMP)

# `make lock`: re-lock after editing pyproject's dependencies, keeping every other pin.
# `make lock-upgrade`: refresh every pin from today's index. Either is a deliberate commit:
# run `make test` on it first (`make setup` re-installs when the lock changes).
lock:
	test -x .lock-tools/bin/uv || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/python -m pip install --quiet uv; }
	.lock-tools/bin/$(UV_COMPILE) -o $(LOCK)

lock-upgrade:
	test -x .lock-tools/bin/uv || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/python -m pip install --quiet uv; }
	.lock-tools/bin/$(UV_COMPILE) --upgrade -o $(LOCK)

# Drift canary: a throw-away venv from today's index, without the lock, runs the suite.
canary:
	PYTHON=$(PYTHON) bash tools/canary.sh

demo: $(STAMP)
	$(BIN)/stmtip demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Mutation testing (not part of `make test`; docs/decisions/0005-mutation-testing.md): mutmut
# on the safety, conditioning, decision, monitor and protocol code, one module at a time in a
# scratch copy under build/mutants/, each with its own fast tests; then the named mutations of
# issue 29. `make mutants MODULES=safety` runs one module. CPU-heavy: minutes per module.
mutants: $(STAMP)
	nice -n 15 $(BIN)/python tools/mutants.py $(MODULES)

lint: $(STAMP)
	$(BIN)/ruff check qcodes_stmtip tests benchmarks examples

clean:
	rm -rf $(VENV) .lock-tools build *.egg-info .pytest_cache .ruff_cache
