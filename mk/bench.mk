# make bench: one run that measures the project against its anchors (docs/bench.md): real
# footage beside synthetic, compute sharing, today's engine on the RTL core in simulation,
# the ZCU104 projection with a roofline, emulation and CPU frames/s. Writes
# $(RUNS)/bench/bench.json, bench.md and fig_*.png. Trains its own small 4-task model when
# no trained bundle exists (cached under $(RUNS)/bench/model). Under 30 minutes on 2 cores.
# make bench-quick: the CI-sized run (seconds; no RTL simulation), into $(RUNS)/bench-quick.
BENCH_ARGS ?=

.PHONY: bench bench-quick
bench: setup
	nice $(DELTAMTL) bench --out $(RUNS)/bench $(BENCH_ARGS)

bench-quick: setup
	nice $(DELTAMTL) bench --quick --out $(RUNS)/bench-quick $(BENCH_ARGS)
