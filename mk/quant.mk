# Quantisation, export bundle, ONNX, trained-model test vectors. See docs/quantisation.md and
# docs/export-format.md.
#   make quant          calibrate the trained model, compare int8 vs float accuracy on every
#                       task, write $(QUANT_OUT)/bundle and $(QUANT_OUT)/quant_report.json
#   make qat            QAT fine-tune (recipe_qat, one training entry point) -> $(QAT_OUT)
#   make quant-qat      quantise the QAT checkpoint instead of the post-training model
#   make quant-onnx     float ONNX graph per task (opset 17) under $(QUANT_OUT)/onnx
#   make quant-inspect  print the bundle's summary (sites, densities, storage)
#   make quant-verify   re-validate the bundle and run the golden model on a test clip
#   make model-vectors  every site job of a few frames of the bundle -> build/vectors/model.dmtv
#   make test-quant     the quantisation / golden / export / ONNX tests (marker `quant`, fast tier)
QUANT_CONFIG  ?= configs/tiny.yaml
QUANT_OUT     ?= $(RUNS)/quant
QAT_OUT       ?= $(RUNS)/qat
QAT_STEPS     ?= 300
QUANT_SET     ?=
QUANT_SETS     = $(foreach s,$(QUANT_SET),--set $(s))
VECTOR_FRAMES ?= 3

.PHONY: quant qat quant-qat quant-onnx quant-inspect quant-verify model-vectors test-quant

quant: setup
	nice $(DELTAMTL) quant quantise --config $(QUANT_CONFIG) --out $(QUANT_OUT) $(QUANT_SETS)

qat: setup
	nice $(DELTAMTL) train --config $(QUANT_CONFIG) --recipe deltamtl.model.quant.qat:recipe_qat \
	  --out $(QAT_OUT) --steps $(QAT_STEPS) --set train.warmup_steps=0 $(QUANT_SETS)

quant-qat: setup
	nice $(DELTAMTL) quant quantise --config $(QUANT_CONFIG) --qat $(QAT_OUT)/last.pt \
	  --out $(QUANT_OUT)_qat $(QUANT_SETS)

quant-onnx: setup
	nice $(DELTAMTL) quant export --config $(QUANT_CONFIG) --out $(QUANT_OUT)/bundle \
	  --onnx $(QUANT_OUT)/onnx $(QUANT_SETS)

quant-inspect: setup
	$(DELTAMTL) quant inspect $(QUANT_OUT)/bundle

quant-verify: setup
	nice $(DELTAMTL) verify $(QUANT_OUT)/bundle --config $(QUANT_CONFIG) \
	  --json $(QUANT_OUT)/verify.json

model-vectors: setup
	nice $(DELTAMTL) model-vectors --bundle $(QUANT_OUT)/bundle --frames $(VECTOR_FRAMES) \
	  --out build/vectors/model.dmtv

test-quant: setup
	$(PY) -m pytest -q -m "quant and not slow" $(PYTEST_ARGS)
