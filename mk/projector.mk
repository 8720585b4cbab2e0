# Projector: read-model benchmark (bench/internal/projector).
# BENCH_QUICK=1 → 20 000 events over 2 000 products (default 200 000 / 20 000).
# Extra flags, e.g. BENCH_PROJECTOR_FLAGS='-workers 1,2,3 -batch 10000'.
BENCH_PROJECTOR_FLAGS ?=
BENCH_PARTS += bench-projector

.PHONY: bench-projector

bench-projector: ## projector throughput (1 and 2 workers) vs a raw _bulk loader of the same documents (needs `make up`)
	$(GO) run ./bench projector $(BENCH_PROJECTOR_FLAGS)
