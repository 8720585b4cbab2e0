#!/usr/bin/env bash
# PostgreSQL 15 for the local stack: pg.sh start|stop [--purge]|status
#
# Data:    $CQRSFLOW_STATE_DIR/postgres/data   (owned by the postgres user)
# Log:     $CQRSFLOW_STATE_DIR/postgres/postgres.log
# Socket:  $CQRSFLOW_STATE_DIR/postgres/.s.PGSQL.$PG_PORT
# Pid:     data/postmaster.pid (managed by pg_ctl)
# Listens on 127.0.0.1:$PG_PORT (default 15432), wal_level=logical,
# max_connections=300; role + database cqrsflow.
# Auth:    scram-sha-256 for every login over TCP or the socket; the password
#          is in $CQRSFLOW_STATE_DIR/postgres/password (mode 0600; cqrsflow,
#          the binaries' default, unless PG_PASSWORD said otherwise when the
#          file was written). The postgres superuser logs in only through
#          the socket as the postgres OS user (peer).
# TLS:     ssl=on with a certificate for localhost and 127.0.0.1 signed by
#          the stack CA $CQRSFLOW_STATE_DIR/tls/ca.crt: clients can use
#          sslmode=verify-full&sslrootcert=<that file>. Plain TCP still works.
# A data dir made by an older version of this script (trust authentication)
# is upgraded in place: every start rewrites pg_hba.conf and the TLS
# settings and sets the password; a running server reloads them.
set -euo pipefail
COMPONENT=postgres
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_USER=cqrsflow
PG_PASSWORD_FILE="$PG_DIR/password"
PG_TLS_DIR="$PG_DIR/tls"
PG_DB=cqrsflow
PG_WAIT="${PG_WAIT:-60}"

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" ]] && { printf '%s\n' "$d"; return 0; }
  done
  return 1
}

ensure_installed() {
  if PG_BIN="$(pg_bindir)" && command -v psql >/dev/null && id postgres >/dev/null 2>&1; then
    return 0
  fi
  # Don't let the Debian package create and start its own cluster on 5432.
  mkdir -p /etc/postgresql-common/createcluster.d
  printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/cqrsflow-no-main-cluster.conf
  apt_install postgresql
  PG_BIN="$(pg_bindir)" || die "PostgreSQL binaries not found under /usr/lib/postgresql after apt-get install"
}

as_pg() { runuser -u postgres -- "$@"; }

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }

pg_pid() { read_pid "$PG_DATA/postmaster.pid"; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres; }

# The superuser logs in through the socket as the postgres OS user (peer;
# a data dir still on trust lets it in too).
psql_admin() {
  as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

# ensure_role_and_db: the role (its password set from the password file on
# every start, so a data dir made with trust gets one) and the database.
# The password goes through stdin, never a command line or the log.
ensure_role_and_db() {
  local pw
  pw="$(head -n 1 "$PG_PASSWORD_FILE")"
  pw="${pw//\'/\'\'}"
  psql_admin >/dev/null <<SQL
SET log_statement = 'none';
SET password_encryption = 'scram-sha-256';
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER;
  END IF;
END
\$\$;
ALTER ROLE $PG_USER PASSWORD '$pw';
SQL
  if [[ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

# write_auth_config: pg_hba.conf (scram-sha-256 everywhere but the
# superuser's peer login on the socket) and cqrsflow.conf (TLS), which
# postgresql.conf includes; rewritten on every start.
write_auth_config() {
  issue_cert server "$PG_TLS_DIR"
  chown postgres:postgres "$PG_TLS_DIR" "$PG_TLS_DIR/server.key" "$PG_TLS_DIR/server.crt"
  chmod 0600 "$PG_TLS_DIR/server.key"
  as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<HBA
# Written by deploy/local/pg.sh on every start; edit the script, not this file.
# TYPE  DATABASE  USER      ADDRESS         METHOD
local   all       postgres                  peer
local   all       all                       scram-sha-256
host    all       all       127.0.0.1/32    scram-sha-256
HBA
  as_pg tee "$PG_DATA/cqrsflow.conf" >/dev/null <<CONF
# Written by deploy/local/pg.sh on every start; edit the script, not this file.
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$PG_TLS_DIR/server.crt'
ssl_key_file = '$PG_TLS_DIR/server.key'
ssl_min_protocol_version = 'TLSv1.2'
CONF
  if ! grep -qx "include_if_exists = 'cqrsflow.conf'" "$PG_DATA/postgresql.conf"; then
    printf "\n# deploy/local/pg.sh: authentication and TLS\ninclude_if_exists = 'cqrsflow.conf'\n" |
      as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
}

start() {
  ensure_installed
  ensure_state_dir
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  chmod 0755 "$PG_DIR"
  if ! as_pg test -w "$PG_DIR"; then
    die "the postgres user cannot write $PG_DIR (is CQRSFLOW_STATE_DIR under a private dir like /root?)"
  fi
  secret_file "$PG_PASSWORD_FILE" "${PG_PASSWORD:-cqrsflow}"

  if pg_running; then
    local port
    port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    if [[ -n "$port" && "$port" != "$PG_PORT" ]]; then
      die "PostgreSQL of $PG_DATA already runs on port $port, not PG_PORT=$PG_PORT: run '$0 stop' first or use PG_PORT=$port"
    fi
    log "already running (pid $(pg_pid), data $PG_DATA)"
    # The password first (the running configuration lets the superuser
    # in either way), then the authentication and TLS settings, by reload.
    ensure_role_and_db || { show_log "$PG_LOG"; die "could not set up role/database $PG_USER/$PG_DB"; }
    write_auth_config
    as_pg "$PG_BIN/pg_ctl" reload -D "$PG_DATA" >/dev/null || die "pg_ctl reload failed"
  else
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
      log "initdb $PG_DATA"
      as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
        >"$PG_DIR/initdb.log" 2>&1 || { show_log "$PG_DIR/initdb.log"; die "initdb failed"; }
    fi
    write_auth_config
    log "starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    # Settings on the command line so a changed PG_PORT applies to an existing data dir.
    # pg_ctl -w waits (bounded by -t) until the postmaster reports ready and
    # returns at once if it exits (bad config, busy port, …).
    log "waiting for PostgreSQL to start (pg_ctl start -w, up to ${PG_WAIT}s)"
    local t0=$SECONDS
    if ! as_pg "$PG_BIN/pg_ctl" start -w -t "$PG_WAIT" -D "$PG_DATA" -l "$PG_LOG" -o "\
-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR \
-c wal_level=logical -c max_connections=300 -c max_replication_slots=20 -c max_wal_senders=20" \
      >"$PG_DIR/pg_ctl.out" 2>&1; then
      sed 's/^/    | /' "$PG_DIR/pg_ctl.out" >&2
      show_log "$PG_LOG"
      # A postmaster still starting after the timeout is not left behind.
      as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 10 >/dev/null 2>&1 || true
      die "PostgreSQL did not start on 127.0.0.1:$PG_PORT"
    fi
    log "PostgreSQL started after $((SECONDS - t0))s"
  fi

  if ! wait_for "PostgreSQL to accept connections on 127.0.0.1:$PG_PORT" "$PG_WAIT" pg_ready; then
    show_log "$PG_LOG"
    die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
  fi
  ensure_role_and_db || { show_log "$PG_LOG"; die "could not set up role/database $PG_USER/$PG_DB"; }
  # A reload applies asynchronously: give the server a moment to take ssl=on.
  WAIT_ALIVE_PID="" wait_for "PostgreSQL TLS (ssl=on)" 10 pg_ssl_on ||
    warn "ssl is still off: does $PG_DATA/postgresql.conf include cqrsflow.conf? (see $PG_LOG)"
  log "ready: postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB, password in $PG_PASSWORD_FILE, TLS CA $STACK_CA (pid $(pg_pid))"
}

pg_ssl_on() { [[ "$(psql_admin -tA -c 'SHOW ssl')" == on ]]; }

stop() {
  local purge="${1:-}"
  if PG_BIN="$(pg_bindir)" && [[ -d "$PG_DATA" ]] && pg_running; then
    log "stopping (pid $(pg_pid))"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null \
      || { show_log "$PG_LOG"; die "pg_ctl stop failed"; }
    log "stopped"
  else
    log "not running"
  fi
  if [[ "$purge" == --purge ]]; then
    log "purging $PG_DIR"
    rm -rf "$PG_DIR"
  fi
}

status() {
  local pid=""
  if ! { PG_BIN="$(pg_bindir)" && [[ -d "$PG_DATA" ]] && pg_running && pid="$(pg_pid)"; }; then
    pid=""
  fi
  status_line postgresql "$PG_PORT" "$PG_LOG" "$pid" pg_ready "not answering"
}

service_main "$@"
