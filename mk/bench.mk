# Benchmarks (bench/): the end-to-end pipeline part and the combined
# report. `make bench` runs every part in BENCH_PARTS (the component
# fragments append bench-write, bench-relay, bench-projector), then
# BENCH_LAST: the pipeline part and, last, the report, which prints one
# summary table, rewrites the generated block of BENCHMARKS.md and draws
# docs/bench/*.png. BENCH_QUICK=1 makes every part short (~2 minutes in all).
#
# Each part writes $(BENCH_RESULTS_DIR)/<part>.json through one writer
# (bench/internal/result) and the report reads only that directory; it
# ignores files older than this run's BENCH_SINCE and names the parts that
# produced nothing.

BENCH_RESULTS_DIR ?= bench-results
export BENCH_RESULTS_DIR
export BENCH_QUICK

# The start of this `make bench`, computed once by the top-level make and
# inherited by the sub-makes through the environment. A standalone
# `make bench-report` leaves it empty and reports every result it finds.
ifneq ($(filter bench,$(MAKECMDGOALS)),)
ifeq ($(origin BENCH_SINCE),undefined)
BENCH_SINCE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
endif
endif
export BENCH_SINCE

# Extra flags, e.g. BENCH_PIPELINE_FLAGS='-rates 500,1000 -projectors 2'.
BENCH_PIPELINE_FLAGS ?=

BENCH_LAST += bench-pipeline bench-report

.PHONY: bench-pipeline bench-report

bench-pipeline: ## end-to-end commit → searchable latency at steady rates through the real binaries (needs `make up`)
	$(GO) run ./bench pipeline $(BENCH_PIPELINE_FLAGS)

bench-report: ## summary table of $(BENCH_RESULTS_DIR)/*.json; rewrites BENCHMARKS.md and docs/bench/*.png
	$(GO) run ./bench report
