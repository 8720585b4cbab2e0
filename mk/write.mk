# Write side: `make bench-write` measures the api with and without group
# commit against raw pgx baselines running the same SQL transaction, one
# command per transaction and grouped (bench/internal/write). Flags:
# BENCH_WRITE_FLAGS='-duration 30s -clients 64'; BENCH_QUICK=1 for a short run.
BENCH_PARTS += bench-write
BENCH_WRITE_FLAGS ?=

.PHONY: bench-write
bench-write: ## write-side benchmark: api (HTTP, group commit on/off) vs raw pgx (single/grouped), 64 clients, + p99 at 50% of max (needs PostgreSQL: `make up`)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/api ./api
	$(GO) run ./bench write -api-bin $(BIN)/api -postgres-url "$(TEST_POSTGRES_URL)" $(BENCH_WRITE_FLAGS)
