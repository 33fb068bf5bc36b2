# make demo: render synthetic video, train the tiny semseg ViT, evaluate, write runs/demo/report.md.
# DEMO_ARGS passes options to deltamtl/demo.py, e.g. make demo DEMO_ARGS="--steps 300".
DEMO_ARGS ?=

demo: setup
	nice $(DELTAMTL) demo --out $(RUNS)/demo $(DEMO_ARGS)
