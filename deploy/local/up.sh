#!/usr/bin/env bash
# Start the local stack (`make up`): PostgreSQL, Kafka, Elasticsearch on
# 127.0.0.1. Installs what is missing, reuses what already runs, and fails
# (after trying every service) if any service is not ready.
set -uo pipefail
COMPONENT=up
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$SECONDS
failed=()

start_service() {
  local name="$1" script="$LOCAL_DIR/$2" s=$SECONDS
  if [[ ! -x "$script" ]]; then
    log "$script is missing: $name NOT started"
    failed+=("$name (no $2)")
    return
  fi
  log "== $name"
  if "$script" start; then
    log "== $name ready ($((SECONDS - s))s)"
  else
    log "== $name FAILED (see the log above)"
    failed+=("$name")
  fi
}

mkdir -p -m 0755 "$STATE_DIR"  # the postgres user must be able to traverse it
log "state dir $STATE_DIR"
start_service postgresql pg.sh
start_service kafka kafka.sh
start_service elasticsearch es.sh

echo
echo "cqrsflow local stack — state dir $STATE_DIR"
"$LOCAL_DIR/status.sh" --no-header || true
cat <<INFO

  POSTGRES_URL=postgres://cqrsflow:cqrsflow@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable
  KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
  ELASTICSEARCH_URL=http://127.0.0.1:$ES_PORT
INFO
if (( ${#failed[@]} > 0 )); then
  echo
  log "NOT ready after $((SECONDS - t0))s: ${failed[*]}"
  exit 1
fi
log "all services ready in $((SECONDS - t0))s (stop with: make down)"
