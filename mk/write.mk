# Write side: `make bench-write` measures the api against a raw
# pgx baseline running the same SQL transaction (bench/internal/write). Flags:
# BENCH_WRITE_FLAGS='-duration 30s -clients 64'; BENCH_QUICK=1 for a short run.
BENCH_PARTS += bench-write
BENCH_WRITE_FLAGS ?=

.PHONY: bench-write
bench-write: ## write-side benchmark: api (HTTP) vs raw pgx, 64 clients, + p99 at 50% of max (needs PostgreSQL: `make up`)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/api ./api
	$(GO) run ./bench write -api-bin $(BIN)/api -postgres-url "$(TEST_POSTGRES_URL)" $(BENCH_WRITE_FLAGS)
