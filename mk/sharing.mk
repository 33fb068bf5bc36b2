# Computation sharing (delta weights, threshold reuse, accounting, report). See docs/sharing.md.
#   make sharing-train    steps 1-3 for every sub-task (needs the ST checkpoints: make st-models)
#   make sharing-report   tables + figures under $(SHARING_OUT)
#   make sharing-sweep    lambda_w / lambda_a sweep (fig 5; retrains one sub-task, reduced budget)
#   make test-sharing     the sharing unit tests and the reduced end-to-end pipeline test
#                         (pytest marker `sharing`, fast tier)
SHARING_CONFIG ?= configs/tiny.yaml
SHARING_OUT    ?= $(RUNS)/sharing
# The tiny schedule (learning rates, lambdas, steps, edges' lambda_w) is the config's
# default; SHARING_SET adds --set overrides, e.g. SHARING_SET="train.threads=1".
SHARING_SET    ?=
SHARING_SETS    = $(foreach s,$(SHARING_SET),--set $(s))

.PHONY: sharing-train sharing-report sharing-sweep test-sharing

sharing-train: setup
	$(DELTAMTL) sharing-train --config $(SHARING_CONFIG) --set sharing.out_root=$(SHARING_OUT) $(SHARING_SETS)

sharing-report: setup
	$(DELTAMTL) sharing-report --config $(SHARING_CONFIG) --out $(SHARING_OUT) --set sharing.out_root=$(SHARING_OUT) $(SHARING_SETS) $(if $(wildcard $(SHARING_OUT)/sweep.json),--sweep $(SHARING_OUT)/sweep.json)

sharing-sweep: setup
	$(DELTAMTL) sharing-report --config $(SHARING_CONFIG) --out $(SHARING_OUT) --set sharing.out_root=$(SHARING_OUT) $(SHARING_SETS) --sweep-only

test-sharing: setup
	$(PY) -m pytest -q -m "sharing and not slow" $(PYTEST_ARGS)
