#!/usr/bin/env bash
# Lifecycle test of deploy/local/es.sh on a scratch state dir and scratch
# ports (never touches the shared node on 19200):
#   stopped status (exit 3) -> start -> idempotent start -> status (exit 0)
#   -> data survives stop/start -> a second node on a busy port fails with
#   exit 1, the log path and its tail, and no pid file -> stop -> stop again
#   -> stop --purge removes the state -> unknown options are refused.
# Usage: deploy/local/elasticsearch/test-es-sh.sh   (about 30 s, 2 x 256 MB heap)
set -euo pipefail

ES_SH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/es.sh"
SCRATCH="$(mktemp -d /var/tmp/cqrsflow-es-test.XXXXXX)"
export CQRSFLOW_STATE_DIR="$SCRATCH/state" ES_HEAP=256m ES_WAIT=90
export ES_PORT="${TEST_ES_PORT:-19260}" ES_TRANSPORT_PORT="${TEST_ES_TRANSPORT_PORT:-19360}"
URL="http://127.0.0.1:$ES_PORT"

fails=0
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; fails=$((fails + 1)); }

cleanup() {
  "$ES_SH" stop --purge >/dev/null 2>&1 || true
  CQRSFLOW_STATE_DIR="$SCRATCH/state2" ES_PORT=$((ES_PORT + 1)) "$ES_SH" stop --purge >/dev/null 2>&1 || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# expect_rc WANT NAME CMD...: run CMD, capture output in $out, check its exit code.
expect_rc() {
  local want="$1" name="$2" rc=0; shift 2
  out="$("$@" 2>&1)" || rc=$?
  if [[ "$rc" == "$want" ]]; then pass "$name (exit $rc)"; else fail "$name: exit $rc, want $want"; printf '%s\n' "$out" | tail -20; fi
}
contains() { if grep -qF -- "$2" <<<"$out"; then pass "$1"; else fail "$1: output lacks '$2'"; printf '%s\n' "$out" | tail -20; fi; }

for p in "$ES_PORT" "$ES_TRANSPORT_PORT" $((ES_PORT + 1)); do
  if curl -s --max-time 2 "http://127.0.0.1:$p" >/dev/null 2>&1; then
    echo "port $p is in use; set TEST_ES_PORT/TEST_ES_TRANSPORT_PORT" >&2; exit 1
  fi
done

expect_rc 3 "status of a never-started node" "$ES_SH" status
contains "status says stopped" "stopped"

expect_rc 0 "start" "$ES_SH" start
contains "start waits with a bounded, named wait" "waiting for Elasticsearch cluster health yellow at $URL (up to 90s)"
pid="$(cat "$CQRSFLOW_STATE_DIR/elasticsearch/elasticsearch.pid")"

expect_rc 0 "second start is a no-op" "$ES_SH" start
contains "second start reuses the node" "elasticsearch already running (pid $pid"

expect_rc 0 "status of a running node" "$ES_SH" status
contains "status names pid and port" "running  pid $pid"

if curl -fsS -XPUT "$URL/survivor/_doc/1?refresh=true" -H 'Content-Type: application/json' -d '{"a":1}' >/dev/null; then
  pass "index a document"
else
  fail "index a document"
fi
if [[ "$(curl -fsS "$URL/" | grep -o '"number":"[^"]*"')" == '"number":"8.15.5"' ]]; then
  pass "GET / reports version 8.15.5"
else
  fail "GET / does not report 8.15.5"
fi

# A second node whose transport port is taken must fail fast and say why.
expect_rc 1 "start on a busy transport port fails" \
  env CQRSFLOW_STATE_DIR="$SCRATCH/state2" ES_PORT=$((ES_PORT + 1)) "$ES_SH" start
contains "failure prints the log path" "log file: $SCRATCH/state2/elasticsearch/logs/elasticsearch.log"
contains "failure log tail names the cause" "Failed to bind to 127.0.0.1:$ES_TRANSPORT_PORT"
if [[ -e "$SCRATCH/state2/elasticsearch/elasticsearch.pid" ]]; then fail "failed start left a pid file"; else pass "failed start leaves no pid file"; fi

expect_rc 0 "stop" "$ES_SH" stop
if kill -0 "$pid" 2>/dev/null; then fail "pid $pid still alive after stop"; else pass "the recorded pid is gone"; fi
contains "node closed cleanly" "to exit: ok"
expect_rc 3 "status after stop" "$ES_SH" status
expect_rc 0 "stop when already stopped" "$ES_SH" stop

expect_rc 0 "restart (build is skipped)" "$ES_SH" start
if grep -qF "building the launcher" <<<"$out"; then fail "restart rebuilt the launcher"; else pass "restart skipped the build"; fi
if [[ "$(curl -fsS "$URL/survivor/_count" | grep -o '"count":[0-9]*')" == '"count":1' ]]; then
  pass "data survived stop/start"
else
  fail "data did not survive stop/start"
fi

expect_rc 1 "stop with an unknown option is refused" "$ES_SH" stop --bogus
expect_rc 2 "unknown command is refused" "$ES_SH" restart
expect_rc 0 "stop --purge" "$ES_SH" stop --purge
if [[ -d "$CQRSFLOW_STATE_DIR/elasticsearch" ]]; then fail "purge left $CQRSFLOW_STATE_DIR/elasticsearch"; else pass "purge removed the state dir"; fi

if ((fails)); then echo "es.sh lifecycle: $fails FAILED"; exit 1; fi
echo "es.sh lifecycle: all passed"
