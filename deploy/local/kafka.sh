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
# Listens on 127.0.0.1:$KAFKA_PORT (default 19092), controller 127.0.0.1:$KAFKA_CONTROLLER_PORT (19093).
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

write_config() {
  cat >"$KAFKA_CONF" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
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
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    [[ -r "$KAFKA_EXTRA_PROPERTIES" ]] || die "KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES is not a readable file"
    { echo "# From KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES"; cat "$KAFKA_EXTRA_PROPERTIES"; } >>"$KAFKA_CONF"
  fi
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
  mkdir -p "$KAFKA_DIR"
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
    write_config
    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
      local cluster_id
      cluster_id="$("${tool[@]}" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG")" \
        || { show_log "$KAFKA_LOG"; die "StorageTool random-uuid failed"; }
      log "formatting $KAFKA_DATA (cluster id $cluster_id)"
      "${tool[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONF" --ignore-formatted \
        >>"$KAFKA_LOG" 2>&1 || { show_log "$KAFKA_LOG"; die "StorageTool format failed"; }
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
  log "ready: $BOOTSTRAP (pid $pid)"
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
