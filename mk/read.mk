# Read side: `make bench-read` measures the api's product search, get by
# id and list against the same requests sent straight to Elasticsearch,
# same concurrency, same run (bench/internal/read). Flags:
# BENCH_READ_FLAGS='-duration 30s -clients 32 -routes search,get'; BENCH_QUICK=1 for a short run.
BENCH_PARTS += bench-read
BENCH_READ_FLAGS ?=

.PHONY: bench-read
bench-read: ## read-side benchmark: api search/get/list vs the same requests straight to Elasticsearch, 32 connections (needs `make up`)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/api ./api
	$(GO) run ./bench read -api-bin $(BIN)/api -elasticsearch-url "$(TEST_ELASTICSEARCH_URL)" -postgres-url "$(TEST_POSTGRES_URL)" $(BENCH_READ_FLAGS)
