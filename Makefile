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

.PHONY: install run serve test test-fast lint bench bench-simulate bench-features bench-train bench-rankers bench-index \
	bench-serve bench-tower bench-hybrid bench-filtered bench-dag bench-scale bench-imports ablate test-reliability clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing ebr and its dependencies into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@$(PY) -m pip install --disable-pip-version-check -e '.[dev]' > $(VENV)/install.log 2>&1 \
	  || { tail -n 40 $(VENV)/install.log; echo "install failed; full log: $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

$(DATA)/_meta/simulation.json: | $(STAMP)
	@echo "simulating $(DAYS) days of search logs at scale $(SCALE) (seed $(SEED)) into $(DATA)"
	@$(VENV)/bin/ebr simulate --out $(DATA) --scale $(SCALE) --days $(DAYS) --seed $(SEED) --lang $(LANG_) \
	  --overwrite > $(VENV)/simulate.log
	@echo "simulated: $(DATA)/_meta/simulation.json"

WORKSPACE ?= data/workspace
DAY ?= latest

run: $(STAMP) $(DATA)/_meta/simulation.json
	$(VENV)/bin/ebr pipeline run --local --data $(DATA) --day $(DAY) --workspace $(WORKSPACE) $(RUN_ARGS)

serve: $(STAMP)
	$(VENV)/bin/ebr serve --bundles $(WORKSPACE)/bundles --feature-repo $(WORKSPACE)/features --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Tests run on every core in parallel (pytest-xdist), one test file per worker at a time (`--dist loadfile`): the
# module-scoped DAG runs and trained models are built once per file, and the files importing the tiny two-tower
# pipeline go to one worker together, which builds it once (tests/conftest.py). Files are handed out longest first
# (tests/conftest.py orders the collection): no long file runs alone at the end.
PYTEST_WORKERS ?= auto
# One BLAS / OpenMP thread per test process: the workers already fill the cores, and an idle OpenBLAS thread spins
# (measured: ~1 CPU-minute less over the suite). Tests that want more threads set them themselves.
# Bytecode caches written even where the environment turns them off (PYTHONDONTWRITEBYTECODE): every step of the
# DAG runs, server and CLI the tests start is a fresh interpreter that would otherwise recompile ebr each time, and
# each xdist worker would redo pytest's assertion rewriting (collection: 8.3 s without the caches, 4.0 s with).
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=

test: $(STAMP) lint
	@bash .ci/system-deps.sh
	$(TEST_ENV) $(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

# The fast lane: everything but the end-to-end runs marked `slow` (full DAG runs, real trainings).
test-fast: $(STAMP) lint
	@bash .ci/system-deps.sh
	$(TEST_ENV) $(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" --durations=10

bench-imports: $(STAMP)
	$(PY) bench/bench_imports.py --out bench/results

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

# Query-tower runtimes (eager, torch.export, TorchScript, torch.compile, ONNX Runtime) and per-block cost.
bench-tower: $(STAMP)
	$(PY) bench/bench_tower.py --out bench/results

# Each retrieval channel alone, the merges and query selection on the holdout day of a finished run.
bench-hybrid: $(STAMP)
	$(PY) bench/bench_hybrid.py --data $(DATA) --workspace $(WORKSPACE) --out bench/results

# Filtered recall and latency: constraints inside the ANN vs post-filtering, against exact filtered search.
bench-filtered: $(STAMP)
	$(PY) bench/bench_filtered.py --out bench/results

# The ablation table (docs/ablations.md): one technique changed at a time over 3 seeds on the day of a
# finished `make run` (its features, samples and champion are reused). ABLATE_ARGS="--rows ..." picks rows.
ABLATE_ARGS ?=
ablate: $(STAMP)
	@test -f $(WORKSPACE)/bundles/CURRENT || { echo "ablate needs a finished run: make run first"; exit 1; }
	$(VENV)/bin/ebr ablate --data $(DATA) --day $(DAY) --workspace $(WORKSPACE) --out docs $(ABLATE_ARGS)

# The reliability lane: schemathesis with 1,000 generated cases against a live server (docs/reliability.md).
test-reliability: $(STAMP)
	EBR_SCHEMATHESIS_CASES=1000 $(VENV)/bin/pytest -q -s -p no:xdist tests/serving/test_schemathesis.py

# Per-step cost of the last `make run` (its step records) against the compiled requests and limits.
bench-dag: $(STAMP)
	$(PY) bench/bench_dag.py --run $(SCALE)=$(WORKSPACE):$$(ls $(WORKSPACE)/reports | tail -n 1) --out bench/results

# The whole DAG at small and medium (LARGE=1 adds large: hours on 2 cores): per-step wall, CPU, peak RSS and growth.
bench-scale: $(STAMP)
	$(PY) bench/bench_scale.py --out bench/results $(if $(LARGE),--large,)

bench: bench-simulate bench-features bench-train bench-rankers bench-index bench-serve bench-tower bench-filtered bench-imports

clean:
	rm -rf data/sim data/workspace .pytest_cache
