# Local Elasticsearch (deploy/local/es.sh + deploy/local/elasticsearch).

.PHONY: test-es-sh

test-es-sh: ## lifecycle test of deploy/local/es.sh on scratch ports/state (start/idempotent/status/failure/stop/purge)
	deploy/local/elasticsearch/test-es-sh.sh

TEST_EXTRA += test-es-sh
