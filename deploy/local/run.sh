#!/usr/bin/env bash
# The whole pipeline locally (`make run`): the stack (make up), the three
# binaries (api, outbox-relay, two projector workers) and a Prometheus with
# the project's rules, each logging to <state dir>/logs/<name>.log.
#
#   deploy/local/run.sh           start everything, print how to use it, wait;
#                                 Ctrl-C stops what this run started
#   deploy/local/run.sh --detach  start everything and return (also RUN_DETACH=1)
#   deploy/local/run.sh stop      stop what a run started (`make stop`)
#   deploy/local/run.sh status    show the run's processes
#
# Stack services that were already running are reused and left running;
# the ones this run started are stopped with it (RUN_KEEP_STACK=1 keeps them).
# The binaries use the stack's secured endpoints (PostgreSQL over verified
# TLS, Kafka's SASL_SSL listener with SCRAM-SHA-512) unless RUN_SECURE=0,
# POSTGRES_URL or KAFKA_BROKERS say otherwise, or the broker predates its
# SASL_SSL listener.
set -uo pipefail
COMPONENT=run
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="$STATE_DIR/run"
BIN_DIR="$RUN_DIR/bin"
LOG_DIR="$STATE_DIR/logs"
API_KEY_FILE="$STATE_DIR/api-key"
STACK_STARTED="$RUN_DIR/stack-started"   # stack services this run started
STOPPING="$RUN_DIR/stopping"             # set by `stop`: the foreground run exits quietly
API_ADDR="${API_ADDR:-127.0.0.1:8080}"
RELAY_ADDR="${RELAY_ADDR:-127.0.0.1:9101}"
PROJECTOR_ADDRS="${PROJECTOR_ADDRS:-127.0.0.1:9102 127.0.0.1:9103}"
PROM_PORT="${PROM_PORT:-9090}"
RUN_SECURE="${RUN_SECURE:-1}"
[[ -n "${POSTGRES_URL:-}" ]] && RUN_SECURE_PG=0 || RUN_SECURE_PG="$RUN_SECURE"
[[ -n "${KAFKA_BROKERS:-}" ]] && RUN_SECURE_KAFKA=0 || RUN_SECURE_KAFKA="$RUN_SECURE"
POSTGRES_URL="${POSTGRES_URL:-postgres://cqrsflow:cqrsflow@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable}"
KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}"
KAFKA_ENV=()
ELASTICSEARCH_URL="${ELASTICSEARCH_URL:-http://127.0.0.1:$ES_PORT}"
TOPIC_PARTITIONS="${TOPIC_PARTITIONS:-6}"
START_TIMEOUT="${START_TIMEOUT:-90}"
STOP_TIMEOUT="${STOP_TIMEOUT:-25}"
export CQRSFLOW_STATE_DIR="$STATE_DIR"

# name → listen address of every process, in start order. Stop order is
# the reverse of the dependency chain: api first (no new writes), then the
# relay (publishes what is committed), then the projectors.
procs() {
  echo "api $API_ADDR"
  echo "outbox-relay $RELAY_ADDR"
  local i=1 a
  for a in $PROJECTOR_ADDRS; do echo "projector-$i $a"; i=$((i + 1)); done
}

pidfile() { echo "$RUN_DIR/$1.pid"; }
binary_of() { case "$1" in projector-*) echo "$BIN_DIR/projector" ;; *) echo "$BIN_DIR/$1" ;; esac; }

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# start_proc NAME ADDR ENV...: start one binary in its own session (so a
# terminal Ctrl-C reaches only this script, which stops things in order).
start_proc() {
  local name="$1" addr="$2"; shift 2
  local bin pid log="$LOG_DIR/$name.log"
  bin="$(binary_of "$name")"
  if pid="$(running_pid "$(pidfile "$name")" "$bin")"; then
    log "$name already running (pid $pid)"
    return 0
  fi
  if ss -ltn "sport = :${addr##*:}" 2>/dev/null | grep -q LISTEN; then
    die "$name: port ${addr##*:} is taken by another process (ss -ltnp 'sport = :${addr##*:}')"
  fi
  log "starting $name on $addr (log $log)"
  printf '\n==== %s start %s\n' "$name" "$(date -u +%FT%TZ)" >>"$log"
  setsid env "$@" "$bin" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pidfile "$name")"
  if ! WAIT_ALIVE_PID="$pid" wait_for "$name ready (http://$addr/readyz)" "$START_TIMEOUT" http_ok "http://$addr/readyz"; then
    show_log "$log" 30
    curl -sS --max-time 2 "http://$addr/readyz" >&2 2>/dev/null && echo >&2
    return 1
  fi
}

stack_service_running() { "$LOCAL_DIR/$1" status >/dev/null 2>&1; }

start_stack() {
  local before=() svc
  for svc in pg.sh kafka.sh es.sh; do
    stack_service_running "$svc" && before+=("$svc")
  done
  log "== local stack (make up)"
  "$LOCAL_DIR/up.sh" || return 1
  # Appended, not rewritten: a second `run.sh` that only restarts missing
  # processes keeps what the first one started.
  touch "$STACK_STARTED"
  for svc in es.sh kafka.sh pg.sh; do
    if [[ " ${before[*]} " != *" $svc "* ]] && ! grep -qx "$svc" "$STACK_STARTED"; then
      echo "$svc" >>"$STACK_STARTED"
    fi
  done
  [[ -s "$STACK_STARTED" ]] && log "this run started: $(tr '\n' ' ' <"$STACK_STARTED")(stopped again by Ctrl-C / make stop)"
  return 0
}

build() {
  log "== building api, outbox-relay, projector into $BIN_DIR"
  local version
  version="$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo dev)"
  (cd "$REPO_DIR" && go build -ldflags "-X cqrsflow/internal/obs.Version=$version" \
    -o "$BIN_DIR/" ./api ./outbox-relay ./projector) || return 1
  log "built version $version"
}

ensure_api_key() {
  ensure_state_dir
  if [[ -e "$API_KEY_FILE" ]] && (( (8#$(stat -c %a "$API_KEY_FILE") & 8#077) != 0 )); then
    die "$API_KEY_FILE is accessible to group or others (mode $(stat -c %a "$API_KEY_FILE")): the api refuses it. Fix: chmod 600 $API_KEY_FILE"
  fi
  if [[ ! -s "$API_KEY_FILE" ]]; then
    (umask 077 && od -An -tx1 -N20 /dev/urandom | tr -d ' \n' >"$API_KEY_FILE" && echo >>"$API_KEY_FILE")
    log "created a local API key in $API_KEY_FILE"
  fi
  API_KEY="$(head -n 1 "$API_KEY_FILE" | tr -d '[:space:]')"
  [[ ${#API_KEY} -ge 16 ]] || die "$API_KEY_FILE holds no usable key (one line, at least 16 characters); delete it to get a new one"
}

# secure_endpoints: switch POSTGRES_URL and the Kafka settings to the
# stack's secured endpoints (see the header). Passwords go to the
# processes' environment, never to the log.
secure_endpoints() {
  local ca="$STATE_DIR/tls/ca.crt" pgpw kpw
  if ((RUN_SECURE_PG)) && [[ -s "$ca" && -s "$STATE_DIR/postgres/password" ]]; then
    pgpw="$(head -n 1 "$STATE_DIR/postgres/password")"
    POSTGRES_URL="postgres://cqrsflow:$pgpw@127.0.0.1:$PG_PORT/cqrsflow?sslmode=verify-full&sslrootcert=$ca"
    log "PostgreSQL: scram-sha-256 over TLS verified with $ca"
  fi
  if ((RUN_SECURE_KAFKA)) && [[ -s "$ca" && -s "$STATE_DIR/kafka/sasl-password" ]] &&
    grep -q "SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT" "$STATE_DIR/kafka/server.properties" 2>/dev/null; then
    kpw="$(head -n 1 "$STATE_DIR/kafka/sasl-password")"
    KAFKA_BROKERS="127.0.0.1:$KAFKA_SASL_PORT"
    KAFKA_ENV=(KAFKA_TLS=true "KAFKA_TLS_CA_FILE=$ca" KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=cqrsflow "KAFKA_SASL_PASSWORD=$kpw")
    log "Kafka: SASL_SSL $KAFKA_BROKERS, SCRAM-SHA-512 user cqrsflow, CA $ca"
  fi
}

start_all() {
  mkdir -p "$RUN_DIR" "$BIN_DIR" "$LOG_DIR"
  rm -f "$STOPPING"
  local t0=$SECONDS
  start_stack || { log "the local stack is not ready (see above)"; return 1; }
  build || { log "build failed"; return 1; }
  ensure_api_key
  secure_endpoints

  log "== database migrations (api migrate)"
  POSTGRES_URL="$POSTGRES_URL" "$BIN_DIR/api" migrate >>"$LOG_DIR/migrate.log" 2>&1 ||
    { show_log "$LOG_DIR/migrate.log" 20; log "api migrate failed"; return 1; }
  log "migrations applied (log $LOG_DIR/migrate.log)"

  log "== processes"
  # The relay creates the event and DLQ topics at start, the projectors
  # their Elasticsearch indices; each is ready only once that is done.
  log "outbox-relay creates the topics (TOPIC_PARTITIONS=$TOPIC_PARTITIONS) and projectors the indices as they start"
  start_proc outbox-relay "$RELAY_ADDR" POSTGRES_URL="$POSTGRES_URL" KAFKA_BROKERS="$KAFKA_BROKERS" "${KAFKA_ENV[@]}" \
    TOPIC_PARTITIONS="$TOPIC_PARTITIONS" METRICS_ADDR="$RELAY_ADDR" RELAY_ID=local-relay-1 || return 1
  local name addr
  while read -r name addr; do
    [[ "$name" == projector-* ]] || continue
    start_proc "$name" "$addr" POSTGRES_URL="$POSTGRES_URL" KAFKA_BROKERS="$KAFKA_BROKERS" "${KAFKA_ENV[@]}" \
      ELASTICSEARCH_URL="$ELASTICSEARCH_URL" METRICS_ADDR="$addr" || return 1
  done < <(procs)
  start_proc api "$API_ADDR" POSTGRES_URL="$POSTGRES_URL" ELASTICSEARCH_URL="$ELASTICSEARCH_URL" \
    HTTP_ADDR="$API_ADDR" API_KEYS_FILE="$API_KEY_FILE" || return 1

  log "== prometheus"
  if ! "$LOCAL_DIR/prometheus.sh" status >/dev/null 2>&1; then
    PROM_PORT="$PROM_PORT" "$LOCAL_DIR/prometheus.sh" start || return 1
    touch "$RUN_DIR/prometheus-started"
  else
    log "prometheus already running: reused"
  fi
  log "everything ready in $((SECONDS - t0))s"
}

print_info() {
  local api="http://$API_ADDR"
  cat <<INFO

cqrsflow is running.

  API         $api   (key in $API_KEY_FILE)
  Prometheus  http://127.0.0.1:$PROM_PORT   (alerts: http://127.0.0.1:$PROM_PORT/alerts)
  metrics     $api/metrics  http://$RELAY_ADDR/metrics$(for a in $PROJECTOR_ADDRS; do printf '  http://%s/metrics' "$a"; done)

Create a product:

  curl -sS -X POST $api/v1/products \\
    -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \\
    -d '{"name":"Espresso machine","description":"Dual boiler, stainless steel","price":499.90,"stock":12}'

Search for it a moment later:

  curl -sS "$api/v1/products/search?q=espresso" -H "Authorization: Bearer $API_KEY"

See it in the metrics:

  curl -sS 'http://127.0.0.1:$PROM_PORT/api/v1/query?query=sum(cqrsflow_events_appended_total)'

Logs:
INFO
  local name addr
  while read -r name addr; do printf '  %-13s %s\n' "$name" "$LOG_DIR/$name.log"; done < <(procs)
  printf '  %-13s %s\n' prometheus "$LOG_DIR/prometheus.log" migrate "$LOG_DIR/migrate.log"
  echo
  echo "Load for the dashboards: make demo      Stop: Ctrl-C here, or make stop"
}

stop_all() {
  mkdir -p "$RUN_DIR"
  touch "$STOPPING"
  local name addr rc=0
  # api, relay, projectors: in that order (see procs)
  while read -r name addr; do
    stop_pid "$(pidfile "$name")" "$(binary_of "$name")" "$name" "$STOP_TIMEOUT" || rc=1
  done < <(procs)
  if [[ -f "$RUN_DIR/prometheus-started" ]]; then
    "$LOCAL_DIR/prometheus.sh" stop || rc=1
    rm -f "$RUN_DIR/prometheus-started"
  fi
  if [[ -s "$STACK_STARTED" && "${RUN_KEEP_STACK:-0}" != 1 ]]; then
    local svc
    while read -r svc; do
      [[ -n "$svc" ]] && { "$LOCAL_DIR/$svc" stop || rc=1; }
    done <"$STACK_STARTED"
  fi
  rm -f "$STACK_STARTED"
  return "$rc"
}

status() {
  local name addr pid rc=0
  while read -r name addr; do
    if pid="$(running_pid "$(pidfile "$name")" "$(binary_of "$name")")"; then
      local ready=not-ready
      http_ok "http://$addr/readyz" && ready=ready
      printf '%-14s running  pid %-7s %-16s %-9s %s  log %s\n' "$name" "$pid" "$addr" "$ready" "$(rss_of "$pid")" "$LOG_DIR/$name.log"
      [[ "$ready" == ready ]] || rc=1
    else
      printf '%-14s stopped\n' "$name"
      rc=1
    fi
  done < <(procs)
  "$LOCAL_DIR/prometheus.sh" status || rc=1
  return "$rc"
}

# foreground: wait until Ctrl-C, `make stop`, or a process dies.
wait_foreground() {
  local stopping=0
  on_signal() {
    ((stopping)) && return
    stopping=1
    echo >&2
    log "stopping (Ctrl-C)"
    stop_all
    exit $?
  }
  trap on_signal INT TERM
  local name addr
  while true; do
    sleep 2 &
    wait $! 2>/dev/null
    if [[ -f "$STOPPING" ]]; then
      log "stopped by make stop"
      exit 0
    fi
    while read -r name addr; do
      if ! running_pid "$(pidfile "$name")" "$(binary_of "$name")" >/dev/null; then
        [[ -f "$STOPPING" ]] && continue
        log "$name exited unexpectedly"
        show_log "$LOG_DIR/$name.log" 30
        log "stopping the rest"
        stopping=1
        stop_all
        exit 1
      fi
    done < <(procs)
  done
}

case "${1:-}" in
  ""|start|--detach)
    detach="${RUN_DETACH:-0}"
    [[ "${1:-}" == --detach ]] && detach=1
    if ((detach == 0)); then
      trap 'echo >&2; log "interrupted while starting: stopping what was started"; stop_all; exit 130' INT TERM
    fi
    if ! start_all; then
      log "start failed: stopping what this run started"
      stop_all
      exit 1
    fi
    print_info
    if ((detach)); then
      log "detached (RUN_DETACH=1): stop with make stop"
      exit 0
    fi
    wait_foreground
    ;;
  stop) stop_all ;;
  status) status ;;
  *) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
