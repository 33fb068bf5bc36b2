# ZCU104 bitstream (Vivado) and the board's deployment folder. See docs/board.md.
#   make bitstream [IMPL=hls|rtl] [CLOCK_MHZ=300]
#                  HLS export (make hls) + Vivado batch flow; <name>.bit, <name>.hwh and
#                  the reports land in $(BITSTREAM_DIR). IMPL=rtl puts the SystemVerilog
#                  core in the block design (fetch and commit stay HLS). SKIP_HLS=1 reuses
#                  an existing export in build/ip or build/hls_prj.
#   make package [EXPORT_BUNDLE=dir] [IMPL=..|BITSTREAM_NAME=..] [PACKAGE_DIR=...]
#                  deployment folder for the board from an already built $(BITSTREAM_DIR)
#                  (without IMPL or BITSTREAM_NAME: the only .bit/.hwh pair there)
# The bitstream's IMPL defaults to hls; rtl.mk's IMPL default (rtl) is for `make cosim`.
BIT_IMPL        = $(if $(filter undefined default file,$(origin IMPL)),hls,$(IMPL))
VIVADO         ?= vivado
CLOCK_MHZ      ?=
VIVADO_JOBS    ?= 2
SKIP_HLS       ?= 0
BITSTREAM_DIR  ?= bitstreams/zcu104
BITSTREAM_NAME ?= deltamtl_$(BIT_IMPL)
VIVADO_OUT     ?= build/vivado/$(BIT_IMPL)
PACKAGE_DIR    ?= build/package/deltamtl_zcu104
EXPORT_BUNDLE  ?=
# fetch and commit are HLS in both implementations; the core only for IMPL=hls
BIT_HLS_KERNELS = fetch commit $(if $(filter hls,$(BIT_IMPL)),core)

.PHONY: bitstream bitstream-check package platform

# Regenerate scripts/vivado/generated/ from contract/platform.py (checked in).
platform: setup
	$(DELTAMTL) platform

# Before anything else: the arguments and the tools, so a missing Vivado costs nothing.
bitstream-check:
	@case "$(BIT_IMPL)" in hls|rtl) ;; *) \
	  echo "bitstream: IMPL=$(BIT_IMPL) unknown (hls or rtl)"; exit 2;; esac
	@if [ -n "$(CLOCK_MHZ)" ] && ! [[ "$(CLOCK_MHZ)" =~ ^[0-9]+([.][0-9]+)?$$ ]]; then \
	  echo "bitstream: CLOCK_MHZ=$(CLOCK_MHZ) is not a number of MHz"; exit 2; fi
	@command -v $(VIVADO) >/dev/null || { \
	  echo "bitstream: '$(VIVADO)' not found on PATH. Install AMD Vivado (2023.2 targeted) with"; \
	  echo "           Zynq UltraScale+ support (and the ZCU104 board files for the PS preset),"; \
	  echo "           run 'source <Vivado install>/settings64.sh', then 'make bitstream' again."; \
	  echo "           Checks that need no Vivado: pytest tests/bitstream/test_vivado_tcl.py"; exit 2; }
	@if [ "$(SKIP_HLS)" != 1 ]; then command -v $(VITIS_HLS) >/dev/null || { \
	  echo "bitstream: '$(VITIS_HLS)' not found on PATH: IMPL=$(BIT_IMPL) needs the HLS export of"; \
	  echo "           $(BIT_HLS_KERNELS). Source Vitis' settings64.sh, or pass SKIP_HLS=1 to reuse"; \
	  echo "           an export already in build/ip (docs/board.md)."; exit 2; }; fi

bitstream: bitstream-check setup
	@if [ "$(SKIP_HLS)" != 1 ]; then \
	  $(MAKE) --no-print-directory hls HLS_KERNELS="$(BIT_HLS_KERNELS)"; fi
	@mkdir -p $(VIVADO_OUT)
	$(VIVADO) -mode batch -nojournal -log $(VIVADO_OUT)/vivado.log \
	  -source scripts/vivado/build_bitstream.tcl -tclargs impl=$(BIT_IMPL) \
	  $(if $(CLOCK_MHZ),clock_mhz=$(CLOCK_MHZ)) out=$(VIVADO_OUT) name=$(BITSTREAM_NAME) \
	  ip=build/ip hls_prj=build/hls_prj jobs=$(VIVADO_JOBS)
	@mkdir -p $(BITSTREAM_DIR)
	cp $(VIVADO_OUT)/$(BITSTREAM_NAME).bit $(VIVADO_OUT)/$(BITSTREAM_NAME).hwh \
	  $(VIVADO_OUT)/$(BITSTREAM_NAME)_*.rpt $(VIVADO_OUT)/$(BITSTREAM_NAME)_summary.txt \
	  $(BITSTREAM_DIR)/
	@echo "bitstream: $(BITSTREAM_DIR)/$(BITSTREAM_NAME).{bit,hwh} (timing met; reports beside)"

package: setup
	$(DELTAMTL) package --bitstreams $(BITSTREAM_DIR) --out $(PACKAGE_DIR) \
	  $(if $(filter-out undefined default file,$(origin BITSTREAM_NAME) $(origin IMPL)),--name $(BITSTREAM_NAME)) \
	  $(if $(EXPORT_BUNDLE),--export $(EXPORT_BUNDLE))
