# make bench: rendering speed, site-executor throughput, projected board cycles/bytes per
# frame (cycle model). Writes $(RUNS)/bench/bench.json and bench.md.
BENCH_ARGS ?=

.PHONY: bench
bench: setup
	nice $(DELTAMTL) bench --out $(RUNS)/bench $(BENCH_ARGS)
