#!/usr/bin/env bash
# Local Prometheus for `make run`: the Debian package's binary, run directly
# (no system service) with deploy/prometheus/prometheus.local.yml and the
# project's alert rules, on 127.0.0.1:$PROM_PORT, data under the state dir.
#
#   deploy/local/prometheus.sh install   install promtool/prometheus (apt) if missing
#   deploy/local/prometheus.sh start     start (idempotent) and wait until ready
#   deploy/local/prometheus.sh stop      stop exactly the pid started here
#   deploy/local/prometheus.sh status    exit 0 if running and ready
#   deploy/local/prometheus.sh reload    re-read config and rules (SIGHUP)
set -uo pipefail
COMPONENT=prometheus
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROM_PORT="${PROM_PORT:-9090}"
PROM_DIR="$STATE_DIR/prometheus"
PROM_PID="$PROM_DIR/prometheus.pid"
PROM_LOG="$STATE_DIR/logs/prometheus.log"
PROM_CONFIG="${PROM_CONFIG:-$REPO_DIR/deploy/prometheus/prometheus.local.yml}"
# Our process is recognised by its data dir on the command line.
PROM_MARKER="--storage.tsdb.path=$PROM_DIR/data"

prom_ready() { curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1; }

# install: the Debian package brings /usr/bin/prometheus and /usr/bin/promtool.
# Its maintainer scripts may start a system service on hosts with an init
# system; anything the install started (a prometheus process that is not
# ours and was not there before) is stopped again so nothing listens on
# :9090 unexpectedly.
install() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  local before after pid
  before="$(pgrep -x prometheus | sort || true)"
  apt_install prometheus
  after="$(pgrep -x prometheus | sort || true)"
  for pid in $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after")); do
    pid_matches "$pid" "$PROM_MARKER" && continue
    warn "the prometheus package started a service (pid $pid); stopping it"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl stop prometheus || true
      systemctl disable prometheus >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/prometheus ]]; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      WAIT_ALIVE_PID="" wait_for "system prometheus (pid $pid) to exit" 15 bash -c "! kill -0 $pid" ||
        kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  command -v promtool >/dev/null 2>&1 || die "promtool still missing after installing the prometheus package"
}

start() {
  install
  mkdir -p "$PROM_DIR/data" "$(dirname "$PROM_LOG")"
  local pid
  if pid="$(running_pid "$PROM_PID" "$PROM_MARKER")"; then
    log "already running (pid $pid)"
    prom_ready || WAIT_ALIVE_PID="$pid" wait_for "prometheus on :$PROM_PORT" 60 prom_ready || die "prometheus (pid $pid) is not ready"
    return 0
  fi
  if ss -ltn "sport = :$PROM_PORT" 2>/dev/null | grep -q LISTEN; then
    die "port $PROM_PORT is taken by another process (ss -ltnp 'sport = :$PROM_PORT'); set PROM_PORT"
  fi
  promtool check config "$PROM_CONFIG" >"$PROM_DIR/check.log" 2>&1 || { show_log "$PROM_DIR/check.log"; die "invalid config $PROM_CONFIG"; }
  log "starting on 127.0.0.1:$PROM_PORT (config ${PROM_CONFIG#"$REPO_DIR"/}, data $PROM_DIR/data, log $PROM_LOG)"
  setsid prometheus \
    --config.file="$PROM_CONFIG" \
    "$PROM_MARKER" \
    --storage.tsdb.retention.time=7d \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    >>"$PROM_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PROM_PID"
  if ! WAIT_ALIVE_PID="$pid" wait_for "prometheus on :$PROM_PORT" 60 prom_ready; then
    show_log "$PROM_LOG"
    die "prometheus did not become ready"
  fi
}

stop() { stop_pid "$PROM_PID" "$PROM_MARKER" prometheus 30; }

status() {
  local pid
  if pid="$(running_pid "$PROM_PID" "$PROM_MARKER")" && prom_ready; then
    printf '%-14s running  pid %-7s 127.0.0.1:%-6s %s  log %s\n' prometheus "$pid" "$PROM_PORT" "$(rss_of "$pid")" "$PROM_LOG"
    return 0
  fi
  printf '%-14s stopped\n' prometheus
  return 1
}

reload() {
  local pid
  pid="$(running_pid "$PROM_PID" "$PROM_MARKER")" || die "not running"
  kill -HUP "$pid"
  log "sent SIGHUP to pid $pid"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  reload) reload ;;
  *) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
