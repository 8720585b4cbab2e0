# Local stack scripts (deploy/local: up/down/status, pg.sh, kafka.sh,
# kafka-cli.sh). es.sh has its own fragment.

.PHONY: test-stack-sh

test-stack-sh: ## lifecycle test of the stack scripts on scratch ports/state (up/idempotent/status/failures/down/purge)
	deploy/local/test-stack-sh.sh

TEST_EXTRA += test-stack-sh
