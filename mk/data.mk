# Data sets and metrics. See docs/data.md and docs/metrics.md.
#   make data-bench     rendering speed of the synthetic video at 64x64 and 224x224
#   make data-preview   $(RUNS)/data/preview.png: RGB, classes, depth, normals, edges per frame
#   make data-export    a synthetic split in the NYUD-v2 multi-task layout under $(DATA_EXPORT)
#   make test-data      the data and metrics tests (pytest marker `data`)
DATA_SEED   ?= 0
DATA_SIZE   ?= 64
DATA_CLIPS  ?= 2
DATA_FRAMES ?= 8
DATA_SPLIT  ?= train
DATA_EXPORT ?= $(RUNS)/nyud_synthetic

.PHONY: data-bench data-preview data-export test-data

data-bench: setup
	$(DELTAMTL) data bench

data-preview: setup
	@mkdir -p $(RUNS)/data
	$(DELTAMTL) data preview --out $(RUNS)/data/preview.png --seed $(DATA_SEED) --size 128

data-export: setup
	$(DELTAMTL) data export --root $(DATA_EXPORT) --split $(DATA_SPLIT) --clips $(DATA_CLIPS) \
	  --frames $(DATA_FRAMES) --size $(DATA_SIZE) --seed $(DATA_SEED)

test-data: setup
	$(PY) -m pytest -q -m "data and not slow" $(PYTEST_ARGS)
