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

ensure_state_dir  # 0755 (the postgres user traverses it), ours, not group/world-writable
log "state dir $STATE_DIR"
start_service postgresql pg.sh
start_service kafka kafka.sh
start_service elasticsearch es.sh

echo
echo "cqrsflow local stack — state dir $STATE_DIR"
"$LOCAL_DIR/status.sh" --no-header || true
# The PostgreSQL password is shown only when it is the binaries' built-in
# default; any other stays in its 0600 file.
pg_pw='<password in '"$STATE_DIR/postgres/password"'>'
[[ "$(head -n 1 "$STATE_DIR/postgres/password" 2>/dev/null)" == cqrsflow ]] && pg_pw=cqrsflow
cat <<INFO

  POSTGRES_URL=postgres://cqrsflow:$pg_pw@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable
  KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
  ELASTICSEARCH_URL=http://127.0.0.1:$ES_PORT

  Secured (stack CA $STACK_CA):
  POSTGRES_URL=postgres://cqrsflow:$pg_pw@127.0.0.1:$PG_PORT/cqrsflow?sslmode=verify-full&sslrootcert=$STACK_CA
  KAFKA_BROKERS=127.0.0.1:$KAFKA_SASL_PORT KAFKA_TLS=true KAFKA_TLS_CA_FILE=$STACK_CA
  KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=cqrsflow KAFKA_SASL_PASSWORD=\$(cat $STATE_DIR/kafka/sasl-password)
INFO
if (( ${#failed[@]} > 0 )); then
  echo
  log "NOT ready after $((SECONDS - t0))s: ${failed[*]}"
  exit 1
fi
log "all services ready in $((SECONDS - t0))s (stop with: make down)"
