# RTL core (SystemVerilog twin of the HLS core): co-simulation, lint, resource estimates.
#   make cosim              fast + slow cocotb/Verilator tiers on the RTL core (all vectors;
#                           pytest marker `cosim`)
#   make cosim IMPL=hls     the same bench on the Vitis HLS export (needs vitis_hls)
#   make rtl-lint           verilator --lint-only -Wall (default, CI, B=2 and board maxima)
#   make cosim-vectors VECTORS=build/vectors/model.dmtv   replay one .dmtv file (e.g. the
#                           trained model's site jobs from `make model-vectors`), with stalls
#   make rtl-synth          yosys synth_xilinx -family xcup, L in RTL_LANES, board maxima
#   make rtl-dense-rate     simulated MACs/cycle of a dense 197 x 384 x 384 job at L=64, T=16, B=8
IMPL ?= rtl
RTL_LANES ?= 32 64 128
RTL_SYNTH_LIMITS ?= board

VECTORS ?= build/vectors/model.dmtv

.PHONY: cosim cosim-vectors rtl-lint rtl-synth rtl-dense-rate

cosim-vectors: setup
	$(DELTAMTL) rtl vectors $(VECTORS)


cosim: setup
ifeq ($(IMPL),hls)
	$(PY) -m pytest -m "cosim and vitis" $(PYTEST_ARGS)
else ifeq ($(IMPL),rtl)
	$(PY) -m pytest -m "cosim and not vitis and not vivado and not board" $(PYTEST_ARGS)
else
	@echo "cosim: IMPL=$(IMPL) unknown (rtl or hls)"; exit 2
endif

rtl-lint: setup
	$(DELTAMTL) rtl lint

rtl-synth: setup
	$(DELTAMTL) rtl-synth --lanes $(RTL_LANES) --limits $(RTL_SYNTH_LIMITS)

rtl-dense-rate: setup
	$(DELTAMTL) rtl dense-rate
