# Operations: `make run` / `make stop` / `make demo`, alert-rule tests,
# dashboard tests, compose checks.

PROM_RULES := deploy/prometheus/rules/*.yml
PROM_TESTS := deploy/prometheus/tests/*.yml
DEMO_DURATION ?= 2m
DEMO_RATE     ?= 20

.PHONY: run stop run-status demo test-rules test-dashboards test-compose

run: ## the whole pipeline locally: stack, migrations, api, outbox-relay, 2 projectors, Prometheus (Ctrl-C stops; RUN_DETACH=1 returns)
	@deploy/local/run.sh

stop: ## stop what `make run` started (from another terminal)
	@deploy/local/run.sh stop

run-status: ## processes of `make run`
	@deploy/local/run.sh status

demo: ## realistic load on the local api for DEMO_DURATION (default 2m) at DEMO_RATE req/s so the dashboards move
	$(GO) run ./deploy/demo -demo-duration $(DEMO_DURATION) -demo-rate $(DEMO_RATE)

test-rules: ## promtool check + unit tests of the Prometheus alert rules (installs promtool if missing)
	@deploy/local/prometheus.sh install
	promtool check rules $(PROM_RULES)
	promtool check config deploy/prometheus/prometheus.local.yml
	promtool check config deploy/prometheus/prometheus.compose.yml
	promtool test rules $(PROM_TESTS)

# Every dashboard panel's PromQL against the real Prometheus scraping the
# running pipeline under load. Starts the pipeline (RUN_DETACH) if it is not
# running and stops it again afterwards; the demo load runs alongside.
test-dashboards: ## run every dashboard query on the live local Prometheus under demo load (starts and stops the pipeline if needed)
	@deploy/local/prometheus.sh install
	$(GO) test -count=1 -tags opslive -run 'TestLiveDashboardQueriesParse' ./internal/opscheck
	@set -u; started=0; \
	if ! deploy/local/run.sh status >/dev/null 2>&1; then \
	  echo "[test-dashboards] starting the pipeline (make run, detached)"; \
	  RUN_DETACH=1 deploy/local/run.sh || exit 1; started=1; \
	fi; \
	$(GO) build -o $(STATE_DIR)/run/bin/demo ./deploy/demo || exit 1; \
	$(STATE_DIR)/run/bin/demo -demo-duration 4m -demo-rate 30 >$(STATE_DIR)/logs/demo.log 2>&1 & demo=$$!; \
	echo "[test-dashboards] demo load pid $$demo (log $(STATE_DIR)/logs/demo.log); warming up 45s"; \
	sleep 45; \
	LIVE_WAIT=$${LIVE_WAIT:-150s} $(GO) test -count=1 -v -tags opslive -run 'TestLiveDashboardQueries$$' ./internal/opscheck \
	  > $(STATE_DIR)/logs/test-dashboards.log 2>&1; rc=$$?; \
	grep -E '^\s+live_test.go:[0-9]+: (data:|targets|cqrsflow|[0-9]+ queries)|^(---|ok|FAIL|PASS)|no series|invalid|does not exist' $(STATE_DIR)/logs/test-dashboards.log; \
	kill $$demo 2>/dev/null; wait $$demo 2>/dev/null; \
	if [ $$started = 1 ]; then deploy/local/run.sh stop || rc=1; fi; \
	echo "[test-dashboards] full log: $(STATE_DIR)/logs/test-dashboards.log"; \
	exit $$rc

# docker-compose.yml and the Dockerfile: the compose-spec validation and
# the env/port/mount checks of internal/opscheck (they also run in
# test-unit), plus `docker compose config` where the compose plugin exists.
test-compose: ## validate docker-compose.yml (compose-go + contract checks; `docker compose config` if installed)
	$(GO) test -count=1 -timeout 20m -tags opsbuild -run 'TestCompose|TestDockerfile|TestStaticBinaries' ./internal/opscheck
	@if docker compose version >/dev/null 2>&1; then \
	  echo "docker compose config -q"; CQRSFLOW_API_KEYS=$${CQRSFLOW_API_KEYS:-compose-config-check-key-0000} docker compose config -q; \
	else \
	  echo "[test-compose] the docker compose plugin is not installed: validated with compose-go (the library docker compose uses) only"; \
	fi

TEST_EXTRA += test-rules test-compose test-dashboards
