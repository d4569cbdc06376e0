# trainyard: `make run` and `make test` are the two commands; each does its own set-up.
SHELL := /bin/bash
TORCH_VERSION := 2.11.0
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.torch-$(TORCH_VERSION)
PYTHON ?= python3
# torch-sys finds libtorch in the venv's torch wheel through VIRTUAL_ENV and PATH.
CARGO_ENV := LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV=$(VENV) PATH="$(VENV)/bin:$$PATH"
CARGO ?= cargo
BIN := target/release/trainyard

.PHONY: all setup build run test bench bench-service bench-plot clean fmt clippy
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

.PHONY: apt-install
apt-install:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PKGS); \
	else echo "error: please install: $(PKGS)" >&2; exit 1; fi

build: $(STAMP)
	$(CARGO_ENV) $(CARGO) build --release

test: $(STAMP)
	$(CARGO_ENV) $(CARGO) test --release -- --test-threads=2

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

# Plot render times of BENCHMARKS.md.
bench-plot: $(STAMP)
	$(CARGO_ENV) $(CARGO) bench --bench plot
