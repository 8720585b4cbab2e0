# Operations: `make run` / `make stop` / `make demo`, alert-rule tests,
# dashboard tests, compose checks (issue 6). Owned by the ops helper.

PROM_RULES := deploy/prometheus/rules/*.yml
PROM_TESTS := deploy/prometheus/tests/*.yml

.PHONY: test-rules

test-rules: ## promtool check + unit tests of the Prometheus alert rules (installs promtool if missing)
	@deploy/local/prometheus.sh install
	promtool check rules $(PROM_RULES)
	promtool check config deploy/prometheus/prometheus.local.yml
	promtool check config deploy/prometheus/prometheus.compose.yml
	promtool test rules $(PROM_TESTS)

TEST_EXTRA += test-rules
