# make demo: render synthetic video, train the tiny semseg ViT and a short sharing chain for
# depth, normals and edges, quantise and export, stream a synthetic clip with all four tasks
# through the accelerator backend, write runs/demo/report.md (stream/: overlays, statistics).
# DEMO_ARGS passes options to `deltamtl demo` (deltamtl/demo.py), e.g. make demo DEMO_ARGS="--steps 300".
DEMO_ARGS ?=

demo: setup
	nice $(DELTAMTL) demo --out $(RUNS)/demo $(DEMO_ARGS)
