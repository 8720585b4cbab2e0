# shellcheck shell=bash
# Shared helpers for the local-stack scripts (pg.sh, kafka.sh, up.sh, …).
# Source it; it does not run anything by itself.
#
# Conventions every service script follows:
#   start   idempotent: an already-running service is reused
#   stop    stops exactly the pid recorded for the service (bounded), --purge deletes its data
#   status  exit 0 if running and answering, 1 otherwise
# Every wait is bounded and says what it waits for; on failure the log path
# and its tail are printed.

LOCAL_DIR="${LOCAL_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
REPO_DIR="$(cd "$LOCAL_DIR/../.." && pwd)"
STATE_DIR="${CQRSFLOW_STATE_DIR:-/var/tmp/cqrsflow-local}"

PG_PORT="${PG_PORT:-15432}"
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
ES_PORT="${ES_PORT:-19200}"

COMPONENT="${COMPONENT:-stack}"

log()  { printf '[%s] %s\n' "$COMPONENT" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$COMPONENT" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$COMPONENT" "$*" >&2; exit 1; }

# show_log FILE [LINES]: print where a log is and its last lines.
show_log() {
  local file="$1" lines="${2:-40}"
  if [[ -f "$file" ]]; then
    log "log file: $file (last $lines lines follow)"
    tail -n "$lines" "$file" | sed 's/^/    | /' >&2
  else
    log "log file: $file (does not exist)"
  fi
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: run COMMAND until it
# succeeds, at most TIMEOUT_SECONDS. Prints what it waits for, a progress line
# every 10 s, and how long it took. Returns 1 on timeout. If WAIT_ALIVE_PID is
# set and that process dies, it gives up at once (returns 2).
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local start now elapsed next_note=10
  start=$(date +%s)
  log "waiting for $what (up to ${timeout}s)"
  while true; do
    if "$@" >/dev/null 2>&1; then
      now=$(date +%s)
      log "$what: ok after $((now - start))s"
      return 0
    fi
    if [[ -n "${WAIT_ALIVE_PID:-}" ]] && ! kill -0 "$WAIT_ALIVE_PID" 2>/dev/null; then
      log "$what: process $WAIT_ALIVE_PID exited while waiting"
      return 2
    fi
    now=$(date +%s)
    elapsed=$((now - start))
    if (( elapsed >= timeout )); then
      log "$what: gave up after ${elapsed}s"
      return 1
    fi
    if (( elapsed >= next_note )); then
      log "  still waiting for $what (${elapsed}s/${timeout}s)"
      next_note=$((next_note + 10))
    fi
    sleep 0.5
  done
}

# ensure_state_dir: create the state dir (0755: the postgres user must
# traverse it) or refuse one that someone else could tamper with: owned by
# another user, or writable by group or others. It holds passwords, keys and
# the data, and the scripts run as root.
ensure_state_dir() {
  if [[ ! -e "$STATE_DIR" ]]; then
    mkdir -p -m 0755 "$STATE_DIR" || die "cannot create the state dir $STATE_DIR"
  fi
  [[ -d "$STATE_DIR" && ! -L "$STATE_DIR" ]] || die "state dir $STATE_DIR is not a directory (or is a symlink): set CQRSFLOW_STATE_DIR to a directory of your own"
  local owner mode me
  owner="$(stat -c %u "$STATE_DIR")" mode="$(stat -c %a "$STATE_DIR")" me="$(id -u)"
  if [[ "$owner" != "$me" ]]; then
    die "state dir $STATE_DIR is owned by uid $owner ($(stat -c %U "$STATE_DIR")), not by you (uid $me): refusing to use it. Fix: chown $(id -un) $STATE_DIR if it is yours, or set CQRSFLOW_STATE_DIR to a directory of your own"
  fi
  if (( (8#$mode & 8#022) != 0 )); then
    die "state dir $STATE_DIR is writable by group or others (mode $mode): refusing to use it. Fix: chmod go-w $STATE_DIR"
  fi
}

# ensure_ca: the stack's own certificate authority in <state>/tls (made
# once): it signs the PostgreSQL server and Kafka broker certificates, so
# clients verify them with one file, <state>/tls/ca.crt.
STACK_TLS_DIR="$STATE_DIR/tls"
STACK_CA="$STACK_TLS_DIR/ca.crt"
ensure_ca() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  [[ -s "$STACK_CA" && -s "$STACK_TLS_DIR/ca.key" ]] && return 0
  mkdir -p -m 0755 "$STACK_TLS_DIR"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=cqrsflow local stack CA" -keyout "$STACK_TLS_DIR/ca.key" -out "$STACK_CA.tmp" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  ) >"$STACK_TLS_DIR/openssl.log" 2>&1 || { show_log "$STACK_TLS_DIR/openssl.log"; die "could not create the stack CA"; }
  rm -f "$STACK_TLS_DIR/openssl.log"
  chmod 0644 "$STACK_CA.tmp"
  mv "$STACK_CA.tmp" "$STACK_CA"
  log "created the stack CA $STACK_CA"
}

# issue_cert NAME DIR: a server certificate for localhost and 127.0.0.1
# signed by the stack CA, as DIR/NAME.crt and DIR/NAME.key (PKCS#8, 0600);
# kept while it is signed by the current CA.
issue_cert() {
  local name="$1" dir="$2"
  ensure_ca
  if [[ -s "$dir/$name.crt" && -s "$dir/$name.key" ]] &&
    openssl verify -CAfile "$STACK_CA" "$dir/$name.crt" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$dir"
  (
    umask 077
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout "$dir/$name.key" -out "$dir/$name.csr" &&
      openssl x509 -req -in "$dir/$name.csr" -CA "$STACK_CA" -CAkey "$STACK_TLS_DIR/ca.key" -CAcreateserial \
        -days 825 -out "$dir/$name.crt" \
        -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n')
  ) >"$dir/$name.openssl.log" 2>&1 || { show_log "$dir/$name.openssl.log"; die "could not issue the $name certificate"; }
  rm -f "$dir/$name.csr" "$dir/$name.openssl.log"
  chmod 0644 "$dir/$name.crt"
  log "issued $dir/$name.crt (localhost, 127.0.0.1) from the stack CA"
}

# secret_file FILE DEFAULT: make sure FILE (mode 0600) holds a password,
# writing DEFAULT (or a random one when DEFAULT is empty) if it has none;
# never prints it.
secret_file() {
  local file="$1" def="$2"
  if [[ ! -s "$file" ]]; then
    [[ -n "$def" ]] || def="$(od -An -tx1 -N18 /dev/urandom | tr -d ' \n')"
    (umask 077 && printf '%s\n' "$def" >"$file.tmp") && mv "$file.tmp" "$file"
    log "wrote a password to $file (mode 0600)"
  fi
  chmod 0600 "$file"
}

# read_pid FILE: print the pid stored in FILE (first line) if it is a number.
read_pid() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(head -n 1 "$file" 2>/dev/null | tr -d '[:space:]')"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# pid_matches PID MARKER: true if PID is alive and its command line contains
# MARKER (guards against a recycled pid belonging to something else).
pid_matches() {
  local pid="$1" marker="$2"
  kill -0 "$pid" 2>/dev/null || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

# running_pid PIDFILE MARKER: print the pid if the recorded process is ours and alive.
running_pid() {
  local pid
  pid="$(read_pid "$1")" || return 1
  pid_matches "$pid" "$2" || return 1
  printf '%s\n' "$pid"
}

# stop_pid PIDFILE MARKER NAME [TIMEOUT]: SIGTERM exactly the recorded pid,
# wait (bounded), SIGKILL if it does not exit, then remove the pid file.
stop_pid() {
  local pidfile="$1" marker="$2" name="$3" timeout="${4:-30}" pid
  if ! pid="$(running_pid "$pidfile" "$marker")"; then
    log "$name is not running"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! WAIT_ALIVE_PID="" wait_for "$name (pid $pid) to exit" "$timeout" bash -c "! kill -0 $pid"; then
    warn "$name (pid $pid) did not exit after ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$pidfile"
}

# rss_of PID: resident set size in MiB (sum over the process's children too).
rss_of() {
  local pid="$1" kb
  kb=$(ps -o rss= --pid "$pid" --ppid "$pid" 2>/dev/null | awk '{s+=$1} END {print s+0}')
  printf '%d MiB' "$((kb / 1024))"
}

# apt_install PKG...: install Debian packages (apt-get update first), serialised
# across scripts that may run at the same time.
apt_install() {
  mkdir -p "$STATE_DIR"
  log "installing with apt-get: $*"
  (
    flock -w 600 9 || die "timed out waiting for the apt lock $STATE_DIR/.apt.lock"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q || exit 1
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" || exit 1
  ) 9>"$STATE_DIR/.apt.lock" >"$STATE_DIR/apt.log" 2>&1 || { show_log "$STATE_DIR/apt.log"; die "apt-get install $* failed"; }
  log "installed $* (apt log $STATE_DIR/apt.log)"
}

# need_cmd CMD HINT: fail clearly when a required tool is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed ($2)"
}

# maven_runtime_libs POM_DIR LIB_DIR: copy the runtime dependencies of the pom
# into LIB_DIR (cached in ~/.m2); skipped when LIB_DIR was built from the same pom.
maven_runtime_libs() {
  mkdir -p "$(dirname "$2")"
  (
    flock -w 900 9 || die "timed out waiting for $2.lock"
    maven_runtime_libs_locked "$@"
  ) 9>"$2.lock"
}

maven_runtime_libs_locked() {
  local pomdir="$1" libdir="$2" stamp want
  stamp="$libdir/.pom.sha256"
  want="$(sha256sum "$pomdir/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$libdir/*.jar" >/dev/null; then
    return 0
  fi
  need_cmd mvn "install Maven: apt-get install -y maven"
  log "resolving jars with Maven into $libdir (first run downloads from Maven Central into ~/.m2)"
  local start=$SECONDS
  rm -rf "$libdir"
  mkdir -p "$libdir"
  if ! mvn -B -q -f "$pomdir/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libdir" >"$libdir.mvn.log" 2>&1; then
    show_log "$libdir.mvn.log" 40
    rm -rf "$libdir"
    die "Maven could not resolve $pomdir/pom.xml"
  fi
  printf '%s\n' "$want" >"$stamp"
  rm -f "$libdir.mvn.log"
  log "jars ready: $(find "$libdir" -name '*.jar' | wc -l) in $((SECONDS - start))s"
}

# Kafka's jars (deploy/local/kafka/pom.xml), shared by kafka.sh and kafka-cli.sh.
KAFKA_LIB="$LOCAL_DIR/kafka/target/lib"
ensure_kafka_libs() {
  local pkgs=()
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
  maven_runtime_libs "$LOCAL_DIR/kafka" "$KAFKA_LIB"
}

# status_line NAME PORT LOG PID READY_CMD WHY: one status line of a stack
# service, shared by pg.sh, kafka.sh and es.sh. PID empty → stopped (3);
# READY_CMD succeeds → running (0); otherwise alive but not ready (1, WHY).
status_line() {
  local name=$1 port=$2 logf=$3 pid=$4 ready=$5 why=$6
  if [[ -z "$pid" ]]; then
    printf '%-14s stopped                             log %s\n' "$name" "$logf"
    return 3
  fi
  if $ready; then
    printf '%-14s running  pid %-8s 127.0.0.1:%-6s rss %-9s log %s\n' "$name" "$pid" "$port" "$(rss_of "$pid")" "$logf"
    return 0
  fi
  printf '%-14s NOT READY pid %-8s 127.0.0.1:%-6s (%s)  log %s\n' "$name" "$pid" "$port" "$why" "$logf"
  return 1
}

# service_main "$@": the start|stop [--purge]|status command line of a stack
# service script; the script defines start, stop and status.
service_main() {
  case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    status) status ;;
    *) echo "usage: $0 start|stop [--purge]|status" >&2; exit 2 ;;
  esac
}
