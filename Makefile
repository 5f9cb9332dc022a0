# streamsaga: `make run` to try it, `make test` to prove it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install tools run test test-unit sim lint bench soak soak-retention profile clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the app with its dev tools

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

tools: ## Debian's chromium (dashboard test), prometheus with promtool (metrics, alerts) and kcat (README lines), when missing
	@if ! command -v chromium >/dev/null || ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v kcat >/dev/null; then \
	  echo "installing Debian's chromium, prometheus and kcat for the browser, Prometheus and kcat tests"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium prometheus kcat; \
	fi

run: $(STAMP) ## Start a local broker, a worker with web views, demo data and orders (Ctrl-C stops all)
	$(PY) -m devtools.devstack

test: $(STAMP) tools ## Lint, unit tests, the simulation's fixed seeds, then integration tests on a real local Kafka broker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/simulation -q
	$(PY) -m pytest tests/integration tests/e2e -q -m "integration or e2e"

test-unit: $(STAMP) ## Only the tests that need no broker
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/simulation -q

SEEDS ?= 1000
ORDERS ?= 200
sim: $(STAMP) ## Simulate the topology for many seeds, with a progress bar (SEEDS=1000 ORDERS=200 SIM_ARGS=...)
	$(PY) tests/simulation/run.py --seeds $(SEEDS) --orders $(ORDERS) $(SIM_ARGS)

bench: $(BENCH_STAMP) ## Throughput, latency and recovery beside an aiokafka ceiling and Faust and Quix Streams floors (BENCH_ARGS=--orders 50000 ...)
	$(PY) bench/run.py $(BENCH_ARGS)

soak: $(STAMP) ## Repeated kill -9 runs at scale; exits 1 if any order is left without an outcome (SOAK_ARGS=--runs 6 ...)
	$(PY) bench/soak.py $(SOAK_ARGS)

soak-retention: $(STAMP) ## Steady orders for minutes: finished sagas are forgotten, so the saga tables level off (RETENTION_ARGS=--minutes 8 ...)
	$(PY) bench/retention_soak.py $(RETENTION_ARGS)

profile: $(STAMP) ## Where a worker's time goes on a backlog of orders, sampled by py-spy (PROFILE_ARGS=--orders 5000)
	$(PY) bench/profile.py $(PROFILE_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean: ## Remove the local state (broker data, tables); keeps .venv and the jar cache
	rm -rf .run
