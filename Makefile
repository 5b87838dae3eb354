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

PORT ?= 8080

.PHONY: install run serve test lint bench bench-simulate bench-features bench-train bench-rankers bench-index \
	bench-serve clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(DATA)/_meta/simulation.json: | $(STAMP)
	$(VENV)/bin/ebr simulate --out $(DATA) --scale $(SCALE) --days $(DAYS) --seed $(SEED) --lang $(LANG_) --overwrite

WORKSPACE ?= data/workspace
DAY ?= latest

run: $(STAMP) $(DATA)/_meta/simulation.json
	$(VENV)/bin/ebr pipeline run --local --data $(DATA) --day $(DAY) --workspace $(WORKSPACE) $(RUN_ARGS)

serve: $(STAMP)
	$(VENV)/bin/ebr serve --bundles $(WORKSPACE)/bundles --feature-repo $(WORKSPACE)/features --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	@bash .ci/system-deps.sh
	$(VENV)/bin/pytest -q --durations=20

bench-simulate: $(STAMP)
	$(PY) bench/bench_simulate.py --out bench/results

bench-features: $(STAMP)
	$(PY) bench/bench_features.py --out bench/results

bench-train: $(STAMP)
	$(PY) bench/bench_train.py --out bench/results

bench-rankers: $(STAMP)
	$(PY) bench/bench_rankers.py --out bench/results

bench-index: $(STAMP)
	$(PY) bench/bench_index.py --out bench/results

bench-serve: $(STAMP)
	$(PY) bench/bench_serve.py --out bench/results

bench: bench-simulate bench-features bench-train bench-rankers bench-index bench-serve

clean:
	rm -rf data/sim data/workspace .pytest_cache
