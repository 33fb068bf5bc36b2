# Single-task baselines: the base model (semseg) and the ST models every sub-task is compared to.
#   make st-models            train and evaluate all four on $(ST_CONFIG) -> $(RUNS)/st_<task>/
#   make st-models ST_TASKS=depth ST_SET="train.threads=1"
# Per-task settings (depth's larger training set) live in the config's per_task section.
ST_CONFIG ?= configs/tiny.yaml
ST_TASKS  ?= semseg depth normals edges
ST_SET    ?=
ST_SETS    = $(foreach s,$(ST_SET),--set $(s))

.PHONY: st-models

st-models: setup
	@for t in $(ST_TASKS); do \
	  echo "== training $$t -> $(RUNS)/st_$$t"; \
	  $(DELTAMTL) train --config $(ST_CONFIG) --recipe st --task $$t --out $(RUNS)/st_$$t $(ST_SETS) || exit $$?; \
	  $(DELTAMTL) evaluate --ckpt $(RUNS)/st_$$t/last.pt --split test || exit $$?; \
	done
