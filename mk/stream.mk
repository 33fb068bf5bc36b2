# Streaming (docs/streaming.md).
#   make stream          stream STREAM_SOURCE through STREAM_BACKEND with the bundle STREAM_BUNDLE
#                        (default: the demo's) -> $(RUNS)/stream/report.md, overlays.mp4/gif, grid.png
#   make stream-bundle   a random small 4-task bundle (quant export --random: width 24, 2 blocks,
#                        the tiny config's 64x64 input; no training): $(STREAM_RANDOM)
#   make stream-bench    frames/s of the demo's 4-task tiny bundle (make demo first) on golden
#                        and emulated (no video), th = 4 as in the demo
#   make stream-drift    the no-drift check: STREAM_DRIFT_FRAMES frames with keyframes off
#   make test-stream     the streaming tests
STREAM_BUNDLE  ?= $(RUNS)/demo/bundle
STREAM_SOURCE  ?= synthetic:3,4
STREAM_BACKEND ?= emulated
STREAM_ARGS    ?= --keyframes adaptive
STREAM_RANDOM  ?= $(RUNS)/stream/random_bundle
STREAM_BENCH_FRAMES ?= 20
STREAM_BENCH_BUNDLE ?= $(RUNS)/demo/bundle
STREAM_TH4 = --threshold semseg=4 --threshold depth=4 --threshold normals=4 --threshold edges=4
STREAM_DRIFT_FRAMES ?= 1000
# th = 1 is lossless (every reference equals its input); th = 4 makes the check bite; the
# boundaries give depth (block 1) and normals (every block) references of their own
STREAM_DRIFT_ARGS ?= $(STREAM_TH4) --boundary depth=0 --boundary normals=-1

.PHONY: stream stream-bundle stream-bench stream-drift test-stream

stream: setup
	nice $(DELTAMTL) stream --bundle $(STREAM_BUNDLE) --source $(STREAM_SOURCE) \
	  --backend $(STREAM_BACKEND) --out $(RUNS)/stream/run $(STREAM_ARGS)

$(STREAM_RANDOM)/manifest.yaml: | setup
	nice $(DELTAMTL) quant export --random 0 --config configs/tiny.yaml --out $(STREAM_RANDOM)

stream-bundle: $(STREAM_RANDOM)/manifest.yaml

stream-bench: setup
	@test -f $(STREAM_BENCH_BUNDLE)/manifest.yaml || { echo "stream-bench: no bundle at $(STREAM_BENCH_BUNDLE) (make demo)"; exit 1; }
	for b in golden emulated; do \
	  nice $(DELTAMTL) stream --bundle $(STREAM_BENCH_BUNDLE) --source synthetic:3,4 --frames $(STREAM_BENCH_FRAMES) \
	    --backend $$b --keyframes adaptive $(STREAM_TH4) --no-video --no-progress --out $(RUNS)/stream/bench_$$b || exit 1; \
	done

stream-drift: $(STREAM_RANDOM)/manifest.yaml
	nice $(DELTAMTL) stream --bundle $(STREAM_RANDOM) --source synthetic:5 --frames $(STREAM_DRIFT_FRAMES) \
	  --backend golden --keyframes off --no-video --out $(RUNS)/stream/drift $(STREAM_DRIFT_ARGS)

test-stream: setup
	$(PY) -m pytest -q tests/host/test_stream_sources.py tests/host/test_stream_scheduler.py \
	  tests/host/test_stream_drift.py tests/host/test_stream_cli.py tests/host/test_stream_notebook.py
