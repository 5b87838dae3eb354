# ebr: two commands on a fresh clone.
#   make run   - create .venv if missing, install, run the daily pipeline locally on simulated data
#   make test  - create .venv if missing, install, lint and run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# `make run` knobs (override on the command line: make run SCALE=tiny DAYS=4)
DATA ?= data/sim
SCALE ?= small
DAYS ?= 8
SEED ?= 7
LANG_ ?= zh

.PHONY: install run test test-all lint bench bench-simulate clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(DATA)/_meta/simulation.json: | $(STAMP)
	$(VENV)/bin/ebr simulate --out $(DATA) --scale $(SCALE) --days $(DAYS) --seed $(SEED) --lang $(LANG_) --overwrite

run: $(STAMP) $(DATA)/_meta/simulation.json
	$(VENV)/bin/ebr summarize --data $(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(VENV)/bin/pytest -q -m "not slow or slow" --durations=15

bench-simulate: $(STAMP)
	$(PY) bench/bench_simulate.py --out bench/results

bench: bench-simulate

clean:
	rm -rf data/sim .pytest_cache
