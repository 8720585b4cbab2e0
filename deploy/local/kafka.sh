#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, single node, broker+controller) for the local stack:
# kafka.sh start|stop [--purge]|status
#
# Jars:    deploy/local/kafka/target/lib (Maven Central via deploy/local/kafka/pom.xml, cached in ~/.m2),
#          run from a hard-linked copy in $CQRSFLOW_STATE_DIR/kafka/lib
# Config:  $CQRSFLOW_STATE_DIR/kafka/server.properties (written on every start)
# Data:    $CQRSFLOW_STATE_DIR/kafka/data (formatted on first start)
# Log:     $CQRSFLOW_STATE_DIR/kafka/kafka.log
# Pid:     $CQRSFLOW_STATE_DIR/kafka/kafka.pid
# Listens on 127.0.0.1:$KAFKA_PORT (default 19092, PLAINTEXT), controller 127.0.0.1:$KAFKA_CONTROLLER_PORT (19093)
# and 127.0.0.1:$KAFKA_SASL_PORT (19094, SASL_SSL): TLS with a certificate for
# localhost/127.0.0.1 signed by the stack CA $CQRSFLOW_STATE_DIR/tls/ca.crt, SASL
# PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for user cqrsflow, whose password is in
# $CQRSFLOW_STATE_DIR/kafka/sasl-password (random, mode 0600). A broker started by
# an older version of this script keeps running without that listener until restarted.
# KAFKA_EXTRA_PROPERTIES=<file>: appended to the config on every start (a
# later key overrides an earlier one), e.g. extra listeners advertised
# through proxies (make chaos).
set -euo pipefail
COMPONENT=kafka
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_TLS_DIR="$KAFKA_DIR/tls"
KAFKA_SASL_USER=cqrsflow
KAFKA_SASL_PASSWORD_FILE="$KAFKA_DIR/sasl-password"
KAFKA_WAIT="${KAFKA_WAIT:-90}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

ensure_kcat() {
  command -v kcat >/dev/null 2>&1 || apt_install kcat
}

# The broker answers metadata requests and lists itself (registered, unfenced).
kafka_ready() {
  kcat -L -b "$BOOTSTRAP" -m 2 2>/dev/null | grep -q "broker 1 at 127.0.0.1:$KAFKA_PORT"
}

# write_config: the broker's configuration (mode 0600: it holds the PLAIN
# password). The SASL_SSL listener reads a PEM key store: the broker's key
# and certificate in one file.
write_config() {
  local pw
  pw="$(head -n 1 "$KAFKA_SASL_PASSWORD_FILE")"
  (umask 077 && cat "$KAFKA_TLS_DIR/broker.key" "$KAFKA_TLS_DIR/broker.crt" >"$KAFKA_TLS_DIR/broker.pem")
  (umask 077 && cat >"$KAFKA_CONF" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$pw";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
EOF
  )
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    [[ -r "$KAFKA_EXTRA_PROPERTIES" ]] || die "KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES is not a readable file"
    { echo "# From KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES"; cat "$KAFKA_EXTRA_PROPERTIES"; } >>"$KAFKA_CONF"
  fi
  chmod 0600 "$KAFKA_CONF" "$KAFKA_TLS_DIR/broker.pem"
}

# ensure_scram_users: SCRAM credentials live in the cluster metadata, so
# they are set through the admin API once the broker runs (which also
# covers a cluster formatted by an older script); a stamp of the password's
# hash makes later starts skip the JVM tool. ConfigCommand takes SCRAM
# credentials only on its command line: the password is there for the
# tool's few seconds, and its output is kept in a 0600 log and shown with
# the password blanked.
ensure_scram_users() {
  local stamp="$KAFKA_DIR/.scram-users" want pw rc=0
  want="$(sha256sum "$KAFKA_SASL_PASSWORD_FILE" | cut -d' ' -f1)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  pw="$(head -n 1 "$KAFKA_SASL_PASSWORD_FILE")"
  log "setting the SCRAM-SHA-256/512 credentials of user $KAFKA_SASL_USER"
  : >"$KAFKA_DIR/scram.log"
  chmod 0600 "$KAFKA_DIR/scram.log"
  local mech # one request may alter a user's credentials only once
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2-cli.properties" \
      -cp "$KAFKA_LIB/*" kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter --entity-type users \
      --entity-name "$KAFKA_SASL_USER" --add-config "$mech=[password=$pw]" >>"$KAFKA_DIR/scram.log" 2>&1 || { rc=$?; break; }
  done
  sed -i "s/$pw/<password>/g" "$KAFKA_DIR/scram.log"
  if ((rc != 0)); then
    show_log "$KAFKA_DIR/scram.log" 20
    return 1
  fi
  printf '%s\n' "$want" >"$stamp"
}

# sasl_listener_up: the running broker was configured with the SASL_SSL listener.
sasl_listener_up() {
  grep -q "^listeners=.*SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT" "$KAFKA_CONF" 2>/dev/null
}

# The broker runs from its own copy (hard links) of the jars in the state
# dir, so re-resolving deploy/local/kafka never touches a running broker.
RUN_LIB="$KAFKA_DIR/lib"
install_libs() {
  if cmp -s "$KAFKA_LIB/.pom.sha256" "$RUN_LIB/.pom.sha256"; then return 0; fi
  rm -rf "$RUN_LIB.new" "$RUN_LIB"
  cp -al "$KAFKA_LIB" "$RUN_LIB.new" 2>/dev/null || { rm -rf "$RUN_LIB.new"; cp -a "$KAFKA_LIB" "$RUN_LIB.new"; }
  mv "$RUN_LIB.new" "$RUN_LIB"
}

java_opts() {
  # shellcheck disable=SC2206
  local heap=($KAFKA_HEAP_OPTS)
  printf '%s\n' "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2.properties" \
    -cp "$RUN_LIB/*"
}

start() {
  local pid opts
  ensure_state_dir
  mkdir -p "$KAFKA_DIR"
  secret_file "$KAFKA_SASL_PASSWORD_FILE" ""
  if pid="$(running_pid "$KAFKA_PIDFILE" "$KAFKA_CONF")"; then
    log "already running (pid $pid)"
  else
    ensure_kcat
    if kafka_ready; then
      die "something else already answers Kafka requests on $BOOTSTRAP (not our pid file $KAFKA_PIDFILE); stop it or set KAFKA_PORT"
    fi
    ensure_kafka_libs
    install_libs
    mapfile -t opts < <(java_opts)
    local tool=(java -Xmx256m "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2-cli.properties" -cp "$KAFKA_LIB/*")
    issue_cert broker "$KAFKA_TLS_DIR"
    write_config
    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
      local cluster_id
      cluster_id="$("${tool[@]}" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG")" \
        || { show_log "$KAFKA_LOG"; die "StorageTool random-uuid failed"; }
      log "formatting $KAFKA_DATA (cluster id $cluster_id, SCRAM user $KAFKA_SASL_USER)"
      # A new cluster gets the SCRAM credentials with its bootstrap
      # metadata, which saves ensure_scram_users two JVM starts.
      local pw
      pw="$(head -n 1 "$KAFKA_SASL_PASSWORD_FILE")"
      "${tool[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" --ignore-formatted \
        --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$pw]" --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$pw]" \
        >>"$KAFKA_LOG" 2>&1 || { show_log "$KAFKA_LOG"; die "StorageTool format failed"; }
      sha256sum "$KAFKA_SASL_PASSWORD_FILE" | cut -d' ' -f1 >"$KAFKA_DIR/.scram-users"
    fi
    [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    log "starting on $BOOTSTRAP, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT (log $KAFKA_LOG)"
    rm -f "$KAFKA_PIDFILE"
    # Own session so a Ctrl-C of `make up` does not take the broker down; the
    # shell records its own pid and then becomes the JVM (exec), so the pid
    # file holds exactly the broker's pid.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
      java "${opts[@]}" kafka.Kafka "$KAFKA_CONF" >>"$KAFKA_LOG" 2>&1 </dev/null &
    if ! wait_for "pid file $KAFKA_PIDFILE" 10 test -s "$KAFKA_PIDFILE"; then
      show_log "$KAFKA_LOG"; die "Kafka did not start"
    fi
    pid="$(read_pid "$KAFKA_PIDFILE")"
  fi
  ensure_kcat
  local rc=0
  WAIT_ALIVE_PID="$pid" wait_for "Kafka broker metadata on $BOOTSTRAP (kcat -L)" "$KAFKA_WAIT" kafka_ready || rc=$?
  if (( rc != 0 )); then
    show_log "$KAFKA_LOG"
    # Leave nothing half-started behind: the next start begins clean.
    stop_pid "$KAFKA_PIDFILE" "$KAFKA_CONF" kafka 20 >/dev/null 2>&1 || true
    rm -f "$KAFKA_PIDFILE"
    die "Kafka is not ready on $BOOTSTRAP (pid $pid)"
  fi
  if sasl_listener_up; then
    ensure_kafka_libs
    ensure_scram_users || die "could not set the SCRAM credentials of $KAFKA_SASL_USER (log $KAFKA_DIR/scram.log)"
    log "ready: $BOOTSTRAP, SASL_SSL 127.0.0.1:$KAFKA_SASL_PORT (user $KAFKA_SASL_USER, password in $KAFKA_SASL_PASSWORD_FILE, TLS CA $STACK_CA) (pid $pid)"
  else
    warn "this broker was started without the SASL_SSL listener (an older kafka.sh): restart it (kafka.sh stop; kafka.sh start) to get 127.0.0.1:$KAFKA_SASL_PORT"
    log "ready: $BOOTSTRAP (pid $pid)"
  fi
}

stop() {
  local purge="${1:-}"
  stop_pid "$KAFKA_PIDFILE" "$KAFKA_CONF" kafka 60
  if [[ "$purge" == --purge ]]; then
    log "purging $KAFKA_DIR"
    rm -rf "$KAFKA_DIR"
  fi
}

kafka_status_ready() { command -v kcat >/dev/null 2>&1 && kafka_ready; }

status() {
  local pid=""
  pid="$(running_pid "$KAFKA_PIDFILE" "$KAFKA_CONF")" || pid=""
  status_line kafka "$KAFKA_PORT" "$KAFKA_LOG" "$pid" kafka_status_ready "no metadata"
}

service_main "$@"
