# Chaos test (chaos/, docs/testing.md): random commands from many clients
# while a seeded nemesis kills, pauses, crashes, cuts and slows the real
# binaries and services, then the pipeline drains and every invariant is
# checked. It runs on its own stack (CHAOS_STATE_DIR, ports from
# CHAOS_PORT_BASE), which it starts, and stops at the end, on success and
# failure: the nemesis never touches the shared stack of `make up`.
#
#   make chaos                         one run of CHAOS_DURATION (10m), random seed (printed)
#   make chaos CHAOS_SEED=1234         replay a seed's fault schedule and operation mix
#   make chaos CHAOS_SEED=1,2,random   several runs on one stack start
#
# `make test` runs chaos-short: CHAOS_SHORT_SEED (fixed) and one random
# seed, CHAOS_SHORT_DURATION each. Reports and histories land in
# $(CHAOS_STATE_DIR)/runs (or CHAOS_OUT).
CHAOS_DURATION       ?= 10m
CHAOS_SEED           ?= random
CHAOS_SHORT_DURATION ?= 30s
CHAOS_SHORT_SEED     ?= 1
CHAOS_STATE_DIR      ?= /var/tmp/cqrsflow-chaos
CHAOS_FLAGS          ?=

# The harness stops its stack itself; should it die without doing so, the
# stop script of its state dir (pid files only) runs after it anyway.
CHAOS_RUN = $(GO) run ./chaos -state-dir $(CHAOS_STATE_DIR) $(CHAOS_FLAGS)
# Never for the shared stack's state dir (the harness refuses that one too).
CHAOS_STOP = if [ "$${CHAOS_KEEP_STACK:-false}" != true ] && [ "$(CHAOS_STATE_DIR)" != "$(STATE_DIR)" ] && [ "$(CHAOS_STATE_DIR)" != /var/tmp/cqrsflow-local ]; then \
	  CQRSFLOW_STATE_DIR=$(CHAOS_STATE_DIR) deploy/local/down.sh >/dev/null 2>&1 || true; fi

.PHONY: chaos chaos-short

chaos: ## randomized faults against the whole pipeline on its own stack, invariants checked (CHAOS_DURATION=10m, CHAOS_SEED=random|N[,M…])
	@$(CHAOS_RUN) -duration $(CHAOS_DURATION) -seed $(CHAOS_SEED); rc=$$?; $(CHAOS_STOP); exit $$rc

chaos-short: ## the chaos run of `make test`: seed CHAOS_SHORT_SEED and one random seed, CHAOS_SHORT_DURATION each
	@$(CHAOS_RUN) -duration $(CHAOS_SHORT_DURATION) -quiet 8s -seed $(CHAOS_SHORT_SEED),random; rc=$$?; $(CHAOS_STOP); exit $$rc

TEST_EXTRA += chaos-short
