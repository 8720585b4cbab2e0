#!/usr/bin/env bash
# Lifecycle test of the local-stack scripts (up.sh, status.sh, down.sh,
# pg.sh, kafka.sh, kafka-cli.sh) on a scratch state dir and scratch ports;
# it never touches the shared stack on 15432/19092/19200:
#   all stopped -> up -> up again reuses everything -> status -> PostgreSQL
#   settings and role -> Kafka CLI tools (topics, consumer-groups reset) ->
#   busy ports and a wrong PG_PORT fail clearly, with the log tail, leaving
#   nothing behind -> down leaves no process -> up again keeps the data ->
#   down --purge removes the state -> bad arguments are refused.
# Security of the stack: state dirs of another user or writable by others
# are refused; PostgreSQL takes scram-sha-256 only (password file 0600) and
# verified TLS with the stack CA, also after an in-place upgrade of a
# trust-authentication data dir (running or stopped); Kafka's SASL_SSL
# listener takes SCRAM and PLAIN with the stack CA; no password is printed.
# Usage: deploy/local/test-stack-sh.sh   (make test-stack-sh; about a minute)
set -euo pipefail

LOCAL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRATCH="$(mktemp -d /var/tmp/cqrsflow-stack-test.XXXXXX)"
chmod 0755 "$SCRATCH"
STATE="$SCRATCH/state"
STATE2="$SCRATCH/state2"
export CQRSFLOW_STATE_DIR="$STATE"
export PG_PORT="${TEST_STACK_PG_PORT:-15532}"
export KAFKA_PORT="${TEST_STACK_KAFKA_PORT:-19192}" KAFKA_CONTROLLER_PORT="${TEST_STACK_KAFKA_CONTROLLER_PORT:-19193}"
export KAFKA_SASL_PORT="${TEST_STACK_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
export ES_PORT="${TEST_STACK_ES_PORT:-19270}" ES_TRANSPORT_PORT="${TEST_STACK_ES_TRANSPORT_PORT:-19370}"
export ES_HEAP=256m KAFKA_HEAP_OPTS="-Xms256m -Xmx256m"
PG_URL="postgres://cqrsflow:cqrsflow@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable"

fails=0
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; fails=$((fails + 1)); }

# check_security WHEN: PostgreSQL takes the password of the 0600 file
# over verified TLS and refuses a wrong one; Kafka's SASL_SSL listener
# takes SCRAM-SHA-512 and PLAIN with the stack CA and refuses a wrong
# password; the files holding secrets are 0600.
check_security() {
  local when="$1" ca="$STATE/tls/ca.crt" pw mode f
  for f in "$STATE/postgres/password" "$STATE/kafka/sasl-password" "$STATE/kafka/server.properties" "$STATE/tls/ca.key"; do
    mode="$(stat -c %a "$f" 2>/dev/null || echo missing)"
    if [[ "$mode" == 600 ]]; then pass "$f is 0600 ($when)"; else fail "$f has mode $mode, want 600 ($when)"; fi
  done
  pw="$(cat "$STATE/postgres/password")"
  if [[ "$pw" == cqrsflow ]]; then pass "the PostgreSQL password is the binaries' default ($when)"; else fail "PostgreSQL password file holds something else ($when)"; fi
  if [[ "$(psql -X -At "postgres://cqrsflow:$pw@127.0.0.1:$PG_PORT/cqrsflow?sslmode=verify-full&sslrootcert=$ca" \
    -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>&1)" == t ]]; then
    pass "PostgreSQL: verify-full with the stack CA is encrypted ($when)"
  else
    fail "PostgreSQL: no verified TLS connection ($when)"
  fi
  out="$(psql -X -At "postgres://cqrsflow:wrong@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable" -c 'SELECT 1' 2>&1 || true)"
  contains "PostgreSQL refuses a wrong password ($when)" "password authentication failed"
  if [[ ! -s "$SCRATCH/other-ca.crt" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=another CA" \
      -keyout "$SCRATCH/other-ca.key" -out "$SCRATCH/other-ca.crt" >/dev/null 2>&1
  fi
  out="$(psql -X -At "postgres://cqrsflow:$pw@127.0.0.1:$PG_PORT/cqrsflow?sslmode=verify-full&sslrootcert=$SCRATCH/other-ca.crt" -c 'SELECT 1' 2>&1 || true)"
  contains "PostgreSQL verify-full with another CA fails ($when)" "certificate verify failed"
  # PLAIN through kcat; the SCRAM mechanisms are checked with the Go
  # client by internal/testenv's TestStackKafkaSASLSSL (the Debian kcat's
  # SCRAM does not authenticate against this broker, franz-go's does).
  local kpw
  kpw="$(cat "$STATE/kafka/sasl-password")"
  out="$(kcat -L -m 5 -b "127.0.0.1:$KAFKA_SASL_PORT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X sasl.username=cqrsflow -X "sasl.password=$kpw" -X "ssl.ca.location=$ca" 2>&1 || true)"
  contains "Kafka SASL_SSL with PLAIN and the stack CA ($when)" "broker 1 at 127.0.0.1:$KAFKA_SASL_PORT"
  out="$(kcat -L -m 5 -b "127.0.0.1:$KAFKA_SASL_PORT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X sasl.username=cqrsflow -X sasl.password=wrong -X "ssl.ca.location=$ca" 2>&1 || true)"
  lacks "Kafka SASL_SSL refuses a wrong password ($when)" "broker 1 at"
  out="$(kcat -L -m 5 -b "127.0.0.1:$KAFKA_SASL_PORT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X sasl.username=cqrsflow -X "sasl.password=$kpw" -X "ssl.ca.location=$SCRATCH/other-ca.crt" 2>&1 || true)"
  lacks "Kafka SASL_SSL with another CA fails ($when)" "broker 1 at"
}

cleanup() {
  "$LOCAL/down.sh" --purge >/dev/null 2>&1 || true
  for s in pg kafka es; do
    CQRSFLOW_STATE_DIR="$STATE2" "$LOCAL/$s.sh" stop --purge >/dev/null 2>&1 || true
  done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# expect_rc WANT NAME CMD...: run CMD, keep its output in $out, check the exit code.
expect_rc() {
  local want="$1" name="$2" rc=0; shift 2
  out="$("$@" 2>&1)" || rc=$?
  if [[ "$rc" == "$want" ]]; then pass "$name (exit $rc)"; else fail "$name: exit $rc, want $want"; printf '%s\n' "$out" | tail -30; fi
}
contains() { if grep -qF -- "$2" <<<"$out"; then pass "$1"; else fail "$1: output lacks '$2'"; printf '%s\n' "$out" | tail -30; fi; }
lacks() { if grep -qF -- "$2" <<<"$out"; then fail "$1: output has '$2'"; printf '%s\n' "$out" | tail -30; else pass "$1"; fi; }
ours() { ps -eo pid=,args= | grep -F -- "$1/" | grep -v -e grep -e test-stack-sh || true; }

for p in "$PG_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$ES_PORT" "$ES_TRANSPORT_PORT" $((KAFKA_PORT + 3)) $((KAFKA_PORT + 5)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use; set the TEST_STACK_*_PORT variables" >&2; exit 1
  fi
done

# State dirs others could tamper with are refused before anything starts.
WW="$SCRATCH/world-writable"
mkdir -m 0777 "$WW" && chmod 0777 "$WW"
expect_rc 1 "a world-writable state dir is refused" env CQRSFLOW_STATE_DIR="$WW" "$LOCAL/kafka.sh" start
contains "the refusal says how to fix it" "chmod go-w $WW"
expect_rc 1 "up refuses it too" env CQRSFLOW_STATE_DIR="$WW" "$LOCAL/up.sh"
contains "up names the fix" "chmod go-w $WW"
THEIRS="$SCRATCH/someone-elses"
mkdir -m 0755 "$THEIRS" && chown nobody "$THEIRS"
expect_rc 1 "a state dir of another user is refused" env CQRSFLOW_STATE_DIR="$THEIRS" "$LOCAL/pg.sh" start
contains "the refusal names the owner and the fix" "owned by uid $(id -u nobody)"
if [[ -z "$(find "$WW" "$THEIRS" -mindepth 1)" ]]; then pass "refused state dirs stay empty"; else fail "refused state dirs got files: $(find "$WW" "$THEIRS" -mindepth 1)"; fi

expect_rc 1 "status of a never-started stack" "$LOCAL/status.sh"
contains "status says postgresql stopped" "postgresql     stopped"
contains "status says kafka stopped" "kafka          stopped"
expect_rc 3 "pg.sh status when stopped" "$LOCAL/pg.sh" status
expect_rc 3 "kafka.sh status when stopped" "$LOCAL/kafka.sh" status

expect_rc 0 "up" "$LOCAL/up.sh"
contains "up waits for PostgreSQL, bounded" "waiting for PostgreSQL to start (pg_ctl start -w, up to 60s)"
contains "up formats Kafka storage on first start" "formatting $STATE/kafka/data"
contains "up waits for Kafka metadata, bounded" "waiting for Kafka broker metadata on 127.0.0.1:$KAFKA_PORT (kcat -L) (up to 90s)"
contains "up prints the endpoints" "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
contains "up reports success" "all services ready"
pg_pid="$(head -n1 "$STATE/postgres/data/postmaster.pid")"
kafka_pid="$(cat "$STATE/kafka/kafka.pid")"

KAFKA_PW="$(cat "$STATE/kafka/sasl-password")"
lacks "up does not print the Kafka SASL password" "$KAFKA_PW"
check_security "after the first up"

expect_rc 0 "second up" "$LOCAL/up.sh"
contains "second up reuses PostgreSQL" "already running (pid $pg_pid"
contains "second up reuses Kafka" "already running (pid $kafka_pid)"
lacks "second up does not format Kafka again" "formatting"

expect_rc 0 "status of a running stack" "$LOCAL/status.sh"
contains "status shows PostgreSQL's pid and port" "running  pid $pg_pid"
contains "status shows Kafka's pid and port" "running  pid $kafka_pid"

settings="$(psql -X -At "$PG_URL" -c "SELECT current_setting('wal_level') || ' ' || current_setting('max_connections') || ' ' || current_setting('listen_addresses')")"
if [[ "$settings" == "logical 300 127.0.0.1" ]]; then pass "PostgreSQL settings ($settings)"; else fail "PostgreSQL settings: $settings"; fi
if psql -X -q "$PG_URL" -c "CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (7)"; then
  pass "the cqrsflow role writes the cqrsflow database"
else
  fail "the cqrsflow role cannot write the cqrsflow database"
fi
if [[ "$(stat -c %U "$STATE/postgres/data")" == postgres ]]; then pass "data dir owned by postgres"; else fail "data dir not owned by postgres"; fi

# In-place upgrade of a data dir made by the old pg.sh (trust for every
# login, no TLS, no password file): once while it runs, once stopped.
downgrade_pg() {
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' | runuser -u postgres -- tee "$STATE/postgres/data/pg_hba.conf" >/dev/null
  runuser -u postgres -- sed -i "/cqrsflow.conf/d" "$STATE/postgres/data/postgresql.conf"
  rm -f "$STATE/postgres/password"
  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl reload -D "$STATE/postgres/data" >/dev/null
  sleep 1
  if psql -X -At "postgres://cqrsflow:anything@127.0.0.1:$PG_PORT/cqrsflow?sslmode=disable" -c 'SELECT 1' >/dev/null 2>&1; then
    pass "downgraded to the old trust setup ($1)"
  else
    fail "could not downgrade to the old trust setup ($1)"
  fi
}
downgrade_pg "running"
expect_rc 0 "pg.sh start upgrades a running trust cluster" "$LOCAL/pg.sh" start
contains "it reuses the running server" "already running (pid $pg_pid"
check_security "after upgrading a running cluster"
downgrade_pg "stopped"
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl stop -D "$STATE/postgres/data" -m fast -w >/dev/null
expect_rc 0 "pg.sh start upgrades a stopped trust cluster" "$LOCAL/pg.sh" start
lacks "the upgrade keeps the data dir" "initdb"
check_security "after upgrading a stopped cluster"
pg_pid="$(head -n1 "$STATE/postgres/data/postmaster.pid")"

expect_rc 0 "kafka-cli topics --create" "$LOCAL/kafka-cli.sh" topics --create --topic smoke --partitions 2
expect_rc 0 "kafka-cli topics --list" "$LOCAL/kafka-cli.sh" topics --list
contains "the topic is listed" "smoke"
printf 'a\nb\nc\n' | kcat -P -b "127.0.0.1:$KAFKA_PORT" -t smoke -p 0
kcat -C -b "127.0.0.1:$KAFKA_PORT" -G smoke-group -X auto.offset.reset=earliest -e -q smoke >/dev/null 2>&1 &
kcat_pid=$!
for _ in $(seq 1 60); do
  out="$("$LOCAL/kafka-cli.sh" consumer-groups --describe --group smoke-group 2>&1 || true)"
  grep -qE 'smoke +0 +3 +3 +0' <<<"$out" && break
  sleep 1
done
kill "$kcat_pid" 2>/dev/null || true; wait "$kcat_pid" 2>/dev/null || true
if grep -qE 'smoke +0 +3 +3 +0' <<<"$out"; then pass "the group committed offset 3 on partition 0"; else fail "no committed offset 3 on smoke/0"; printf '%s\n' "$out"; fi
sleep 1 # let the group become empty
expect_rc 0 "kafka-cli consumer-groups --reset-offsets --to-earliest" \
  "$LOCAL/kafka-cli.sh" consumer-groups --group smoke-group --topic smoke --reset-offsets --to-earliest --execute
expect_rc 0 "kafka-cli consumer-groups --describe" "$LOCAL/kafka-cli.sh" consumer-groups --describe --group smoke-group
if grep -qE 'smoke +0 +0 +3 +3' <<<"$out"; then pass "offsets were reset to 0 (lag 3)"; else fail "offsets not reset"; printf '%s\n' "$out"; fi
expect_rc 1 "auto topic creation is off (describe of an unknown topic fails)" \
  "$LOCAL/kafka-cli.sh" topics --describe --topic not-there
expect_rc 2 "kafka-cli refuses an unknown tool" "$LOCAL/kafka-cli.sh" frobnicate

# Failure paths: each must fail fast, say why, show the log, and leave nothing running.
expect_rc 1 "Kafka on a busy broker port" env CQRSFLOW_STATE_DIR="$STATE2" "$LOCAL/kafka.sh" start
contains "busy broker port is named" "something else already answers Kafka requests on 127.0.0.1:$KAFKA_PORT"
expect_rc 1 "Kafka on a busy controller port" \
  env CQRSFLOW_STATE_DIR="$STATE2" KAFKA_PORT=$((KAFKA_PORT + 3)) KAFKA_SASL_PORT=$((KAFKA_PORT + 5)) "$LOCAL/kafka.sh" start
contains "failure prints Kafka's log path" "log file: $STATE2/kafka/kafka.log"
contains "the log tail names the busy port" "127.0.0.1:$KAFKA_CONTROLLER_PORT"
if [[ -e "$STATE2/kafka/kafka.pid" ]]; then fail "failed Kafka start left a pid file"; else pass "failed Kafka start leaves no pid file"; fi
if [[ -n "$(ours "$STATE2")" ]]; then fail "failed start left processes: $(ours "$STATE2")"; else pass "failed Kafka start leaves no process"; fi
expect_rc 1 "PostgreSQL on a busy port" env CQRSFLOW_STATE_DIR="$STATE2" "$LOCAL/pg.sh" start
contains "failure prints PostgreSQL's log path" "log file: $STATE2/postgres/postgres.log"
contains "the log tail says why" "Address already in use"
expect_rc 1 "PG_PORT that differs from the running cluster's" env PG_PORT=$((PG_PORT + 1)) "$LOCAL/pg.sh" start
contains "the running port is named" "already runs on port $PG_PORT"

expect_rc 0 "down" "$LOCAL/down.sh"
left="$(ours "$STATE")"
if [[ -z "$left" ]]; then pass "down leaves no process of the stack"; else fail "processes left after down: $left"; fi
# (the postmaster removes its pid file just before it exits: allow a moment)
for pid in "$pg_pid" "$kafka_pid"; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STATE/" || break
    sleep 0.5
  done
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$STATE/"; then
    fail "pid $pid alive after down"
  else
    pass "pid $pid gone"
  fi
done
expect_rc 1 "status after down" "$LOCAL/status.sh"
expect_rc 0 "down when already down" "$LOCAL/down.sh"

expect_rc 0 "up after down" "$LOCAL/up.sh"
lacks "restart does not re-run initdb" "initdb"
if [[ "$(psql -X -At "$PG_URL" -c 'SELECT id FROM survivor')" == 7 ]]; then pass "PostgreSQL data survived"; else fail "PostgreSQL data lost"; fi
expect_rc 0 "topics after restart" "$LOCAL/kafka-cli.sh" topics --list
contains "Kafka topic survived" "smoke"

expect_rc 2 "down refuses an unknown option" "$LOCAL/down.sh" --bogus
expect_rc 2 "pg.sh refuses an unknown command" "$LOCAL/pg.sh" restart
expect_rc 0 "down --purge" "$LOCAL/down.sh" --purge
if [[ -e "$STATE" ]]; then fail "purge left $STATE: $(ls -A "$STATE")"; else pass "purge removed the state dir"; fi
if [[ -z "$(ours "$STATE")" ]]; then pass "nothing running after purge"; else fail "processes left after purge"; fi

if ((fails)); then echo "local stack scripts: $fails FAILED"; exit 1; fi
echo "local stack scripts: all passed"
