# trainyard: `make run` and `make test` are the two commands; each does its own set-up.
SHELL := /bin/bash
TORCH_VERSION := 2.11.0
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.torch-$(TORCH_VERSION)
SCHEMATHESIS_VERSION := 4.32.5
ST_STAMP := $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
PYTHON ?= python3
# torch-sys finds libtorch in the venv's torch wheel through VIRTUAL_ENV and PATH.
CARGO_ENV := LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV=$(VENV) PATH="$(VENV)/bin:$$PATH"
CARGO ?= cargo
BIN := target/release/trainyard

.PHONY: all setup build run test bench bench-service bench-queue bench-streams bench-plot bench-group bench-assignment bench-search clean fmt clippy
EPOCHS ?= 1

all: build

setup: $(STAMP)

# The PyPI wheel of torch carries libtorch (and its CUDA libraries); nothing else is downloaded.
# Missing Debian packages (a C++ compiler for torch-sys, python3-venv) are installed when
# running as root with apt-get; otherwise the error says what to install.
$(STAMP):
	@command -v c++ >/dev/null || $(MAKE) --no-print-directory apt-install PKGS="g++"
	@command -v $(PYTHON) >/dev/null || $(MAKE) --no-print-directory apt-install PKGS="python3 python3-venv"
	$(PYTHON) -m venv $(VENV) || { $(MAKE) --no-print-directory apt-install PKGS="python3-venv" && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION)
	$(VENV)/bin/python -c 'import torch; assert torch.__version__.startswith("$(TORCH_VERSION)"), torch.__version__'
	touch $@

# schemathesis, for make test's API check (tests/schemathesis.sh), in the same venv.
$(ST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q schemathesis==$(SCHEMATHESIS_VERSION)
	touch $@

.PHONY: apt-install
apt-install:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PKGS); \
	else echo "error: please install: $(PKGS)" >&2; exit 1; fi

build: $(STAMP)
	$(CARGO_ENV) $(CARGO) build --release

# The service tests run twice: on SQLite, then on PostgreSQL (a fresh database per test on
# TEST_POSTGRES). Without a PostgreSQL there, make test fails and says so.
TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432
PG_HOSTPORT := $(lastword $(subst @, ,$(TEST_POSTGRES:postgres://%=%)))
PG_SUITES := api:: queue:: users:: sweeps:: process:: plots:: events:: safety:: datasets:: search:: class::
# Tests of one database only: PostgreSQL's are #[ignore]d (the SQLite run lists them as
# ignored) and the PostgreSQL run includes them; SQLite's are skipped there by name.
SQLITE_ONLY := a_full_disk_holds_the_box

# Debian's Chromium and its WebDriver, for the browser tests (tests/it/browser.rs); installed
# with apt-get when missing (as root), like the compiler.
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
$(BROWSER):
	$(MAKE) --no-print-directory apt-install PKGS="chromium chromium-driver"

# Prometheus' own checker of /metrics (tests/it/safety.rs), from Debian's prometheus package
# (where systemd runs, the package also starts a Prometheus on :9090; make test uses only
# promtool).
PROMTOOL := /usr/bin/promtool
$(PROMTOOL):
	$(MAKE) --no-print-directory apt-install PKGS="--no-install-recommends prometheus"

test: $(STAMP) $(ST_STAMP) | $(BROWSER) $(PROMTOOL)
	@host=$$(echo "$(PG_HOSTPORT)" | cut -d: -f1); port=$$(echo "$(PG_HOSTPORT):5432" | cut -d: -f2); \
	  timeout 5 bash -c "exec 3<>/dev/tcp/$$host/$$port" 2>/dev/null || { \
	  echo "error: make test runs the service tests on PostgreSQL too, and nothing answers at $$host:$$port." >&2; \
	  echo "       Start PostgreSQL there (user postgres, trust authentication), or name another server:" >&2; \
	  echo "       make test TEST_POSTGRES=postgres://USER@HOST:PORT" >&2; exit 1; }
	$(CARGO_ENV) $(CARGO) test --release -- --test-threads=2
	$(CARGO_ENV) TRAINYARD_TEST_POSTGRES=$(TEST_POSTGRES) $(CARGO) test --release --test it -- --test-threads=2 \
	  --include-ignored $(addprefix --skip ,$(SQLITE_ONLY)) $(PG_SUITES)
	ST=$(VENV)/bin/st tests/schemathesis.sh $(BIN)

# The service: API on 127.0.0.1:8080 and the workers (settings: README, or `trainyard serve --help`).
run: build
	./$(BIN) serve

fmt:
	$(CARGO) fmt --all

clippy: $(STAMP)
	$(CARGO_ENV) $(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean

# The engine benchmark of BENCHMARKS.md: trainyard vs lean PyTorch vs the tutorial's code.
$(VENV)/.bench: $(STAMP)
	$(VENV)/bin/python -m pip install -q torchvision==0.26.0 numpy
	touch $@

bench: build $(VENV)/.bench
	bench/engine.sh $(EPOCHS)

# The service benchmark of BENCHMARKS.md (needs wrk: apt-get install wrk).
bench-service: build
	bench/service.sh

# Queue throughput of BENCHMARKS.md: jobs/s with 1, 4, 8 worker processes, SQLite and PostgreSQL.
bench-queue: build
	bench/queue.sh

# Event streams: 200 SSE clients following running jobs (BENCHMARKS.md "Event streams").
bench-streams: build
	bench/streams.sh

# Plot render times of BENCHMARKS.md.
bench-plot: $(STAMP)
	$(CARGO_ENV) $(CARGO) bench --bench plot

# Fused groups of BENCHMARKS.md: G = 1, 2, 4, 8, 16 CNN batch-4 members trained as one, against
# G solo runs one after another and G solo workers side by side (real data: CIFAR_BIN).
bench-group: $(STAMP)
	$(CARGO_ENV) CARGO=$(CARGO) bench/group.sh

# The assignment through serve of BENCHMARKS.md: the preset (1 epoch) with the default settings
# and the alternatives it was compared with.
bench-assignment: build
	bench/assignment.sh "" "--max-group 1" "--max-group 4" "--cpu-workers 1"

# The search of BENCHMARKS.md: 27 trials of the tutorial CNN under ASHA and run to their end,
# with fusion on and off, on real CIFAR-10.
bench-search: build
	bench/search.py
