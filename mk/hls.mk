# HLS kernels (fetch, core, commit): C simulation with g++, Vitis HLS flow. See docs/hls.md.
#   make csim          random vectors -> tb_core (bit-exact vs golden) and tb_system
#                      (fetch -> core -> commit over DDR images); g++ only
#   make test-hls      the tests under tests/hls (the Vitis ones skip without vitis_hls)
#   make hls           Vitis HLS csim, csynth, export for every kernel (IP in build/ip/);
#                      after csynth, fails unless every main loop is at II=1 and the
#                      estimated clock meets 300 MHz (deltamtl.hls.csynth_report)
#   make hls-static    static checks of the kernel sources (no Vitis; also in pytest)
#   make hls-params MANIFEST=path/manifest.yaml   size the core from a model's export
#   make hls HLS_LIMITS=board   the same flow for a build of contract/limits.py (board, tiny,
#                      ci): params.h under build/hls_params/<name>/ (DMTL_PARAMS_DIR for
#                      run_hls.tcl), vectors for those limits; hls/generated/ is untouched
# CSIM_SEQUENCES sets the size of the random vector set (80 -> about 550 jobs).
CSIM_SEQUENCES ?= 80
CSIM_SEED      ?= 0
HLS_KERNELS    ?= fetch core commit
HLS_STEPS      ?= csim,csynth,export
VITIS_HLS      ?= vitis_hls
HLS_LIMITS     ?=
HLS_PARAMS_DIR := $(if $(HLS_LIMITS),build/hls_params/$(HLS_LIMITS))

.PHONY: csim test-hls hls hls-check hls-static hls-params $(addprefix hls-,$(HLS_KERNELS))

csim: setup
	$(if $(HLS_LIMITS),$(DELTAMTL) hls params --limits $(HLS_LIMITS) --out $(HLS_PARAMS_DIR)/params.h)
	nice $(DELTAMTL) hls csim --sequences $(CSIM_SEQUENCES) --seed $(CSIM_SEED) \
	  $(if $(HLS_LIMITS),--params $(HLS_PARAMS_DIR)/params.h)

test-hls: setup
	$(PY) -m pytest -q tests/hls $(PYTEST_ARGS)

hls-static: setup
	$(DELTAMTL) hls-static

hls-params: setup
	@test -n "$(MANIFEST)" || { echo "hls-params: set MANIFEST=<export manifest.yaml>"; exit 2; }
	$(DELTAMTL) codegen --params $(MANIFEST)

# hls-check first: without Vitis, stop before spending time on anything else
hls: hls-check hls-static csim $(addprefix hls-,$(HLS_KERNELS))

hls-check:
	@command -v $(VITIS_HLS) >/dev/null || { \
	  echo "hls: '$(VITIS_HLS)' not found on PATH. Install AMD Vitis (2023.2 or later) and run"; \
	  echo "     'source <Vitis install>/settings64.sh' (e.g. /tools/Xilinx/Vitis/2023.2/settings64.sh),"; \
	  echo "     then 'make hls' again. C simulation without Vitis: 'make csim'."; exit 2; }

$(addprefix hls-,$(HLS_KERNELS)): hls-%: setup hls-check
	DMTL_PARAMS_DIR=$(HLS_PARAMS_DIR) $(VITIS_HLS) -f hls/tcl/run_hls.tcl -tclargs $* $(HLS_STEPS)
	@case ",$(HLS_STEPS)," in *,csynth,*|*,export,*|*,cosim,*) \
	  $(DELTAMTL) hls-report build/hls_prj/$*/sol/syn/report --kernel $*;; esac
