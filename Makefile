# cqrsflow — see README.md. Every target works on a fresh machine of the
# project's kind: the stack targets install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
BIN         ?= bin
STATE_DIR   ?= $(or $(CQRSFLOW_STATE_DIR),/var/tmp/cqrsflow-local)
PG_PORT     ?= 15432
KAFKA_PORT  ?= 19092
KAFKA_SASL_PORT ?= $(shell echo $$(( $(KAFKA_PORT) + 2 )))
ES_PORT     ?= 19200
export CQRSFLOW_STATE_DIR := $(STATE_DIR)
export PG_PORT KAFKA_PORT KAFKA_SASL_PORT ES_PORT

# Where the tests find the real stack (internal/testenv reads these).
export TEST_POSTGRES_URL      ?= postgres://cqrsflow:cqrsflow@127.0.0.1:$(PG_PORT)/cqrsflow?sslmode=disable
export TEST_KAFKA_BROKERS     ?= 127.0.0.1:$(KAFKA_PORT)
export TEST_ELASTICSEARCH_URL ?= http://127.0.0.1:$(ES_PORT)
# The secured endpoints: Kafka's SASL_SSL listener; the stack CA and the
# passwords are read from the state dir (internal/testenv/secure.go).
export TEST_KAFKA_SASL_BROKERS ?= 127.0.0.1:$(KAFKA_SASL_PORT)

GOTEST_FLAGS ?= -race -count=1
INTEGRATION_TIMEOUT ?= 30m

# Fragments add targets and append to TEST_EXTRA / BENCH_PARTS; BENCH_LAST
# runs after every part (mk/bench.mk: the pipeline part, then the report).
TEST_EXTRA :=
BENCH_PARTS :=
BENCH_LAST :=
-include mk/*.mk

.PHONY: help up down purge status build test test-unit test-integration lint fmt bench run

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

up: ## install (if missing) and start PostgreSQL, Kafka and Elasticsearch on 127.0.0.1
	@deploy/local/up.sh

down: ## stop the local stack processes started by `make up`
	@deploy/local/down.sh

purge: ## stop the local stack and delete its data
	@deploy/local/down.sh --purge

status: ## show the local stack's processes and ports
	@deploy/local/status.sh

build: ## build the three binaries into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./api ./outbox-relay ./projector

test: ## the full test suite: unit, then integration on the real stack (started if needed)
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory up
	@$(MAKE) --no-print-directory test-integration
	@for t in $(TEST_EXTRA); do $(MAKE) --no-print-directory $$t || exit 1; done

test-unit: ## unit tests (no services): go test -race ./...
	$(GO) test $(GOTEST_FLAGS) ./...

test-integration: ## integration tests against the running local stack
	$(GO) test $(GOTEST_FLAGS) -tags integration -timeout $(INTEGRATION_TIMEOUT) ./...

lint: ## go vet + gofmt check
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

bench: ## run every benchmark part on the local stack, then the combined report
	@$(MAKE) --no-print-directory up
	@failed=; for t in $(BENCH_PARTS) $(BENCH_LAST); do $(MAKE) --no-print-directory $$t || failed="$$failed $$t"; done; \
	 if [ -n "$$failed" ]; then echo "bench: failed:$$failed" >&2; exit 1; fi
