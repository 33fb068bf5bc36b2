# make demo: render synthetic video, train the tiny semseg ViT, evaluate, quantise and export, run
# the bundle on the emulated accelerator; writes runs/demo/report.md.
# DEMO_ARGS passes options to `deltamtl demo` (deltamtl/demo.py), e.g. make demo DEMO_ARGS="--steps 300".
DEMO_ARGS ?=

demo: setup
	nice $(DELTAMTL) demo --out $(RUNS)/demo $(DEMO_ARGS)
