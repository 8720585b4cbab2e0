# Outbox relay: `make bench-relay` — drain throughput on a
# prefilled outbox vs a raw franz-go producer (same records, same settings),
# and publish lag p50/p99 at a steady 1 000 writes/s (bench/internal/relay).
# Flags: BENCH_RELAY_FLAGS='-rows 200000 -batch-size 1000 -rate 1000';
# BENCH_QUICK=1 for a short run.
BENCH_PARTS += bench-relay
BENCH_RELAY_FLAGS ?=

.PHONY: bench-relay
bench-relay: ## relay benchmark: drain events/s vs raw franz-go, publish lag p50/p99 at 1000 writes/s (needs `make up`)
	$(GO) run ./bench relay -postgres-url "$(TEST_POSTGRES_URL)" -kafka-brokers "$(TEST_KAFKA_BROKERS)" $(BENCH_RELAY_FLAGS)
