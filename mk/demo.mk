# make demo: render synthetic video, train the tiny semseg ViT, evaluate, write runs/demo/report.md.
# DEMO_ARGS passes options to scripts/demo.py, e.g. make demo DEMO_ARGS="--steps 300".
DEMO_ARGS ?=

demo: setup
	nice $(PY) scripts/demo.py --out $(RUNS)/demo $(DEMO_ARGS)
