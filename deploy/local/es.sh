#!/usr/bin/env bash
# Elasticsearch 8 for the local stack: es.sh start|stop [--purge]|status
#
# One single-node Elasticsearch 8.15.5 built from the Maven Central jars
# (server + transport-netty4) and started by the project's own launcher,
# deploy/local/elasticsearch (cqrsflow.localstack.es.Main). No Docker, no
# official distribution, no security (no xpack.* settings at all).
#
# State:   $CQRSFLOW_STATE_DIR/elasticsearch/{home/config,data,logs,tmp}
# Jars:    built into deploy/local/elasticsearch/target/, run from a copy in
#          $CQRSFLOW_STATE_DIR/elasticsearch/lib
# Log:     $CQRSFLOW_STATE_DIR/elasticsearch/logs/elasticsearch.log
# Pid:     $CQRSFLOW_STATE_DIR/elasticsearch/elasticsearch.pid
# Listens: http://127.0.0.1:$ES_PORT (19200), transport 127.0.0.1:$ES_TRANSPORT_PORT (19300)
#
# Runs as the calling user, also as root: the "can not run elasticsearch as
# root" refusal lives in the stock bootstrap (org.elasticsearch.bootstrap.
# Elasticsearch), which our launcher does not use; server core does not check
# it. The node only binds 127.0.0.1.
#
# status exit codes: 0 running and answering, 1 process alive but HTTP not
# answering, 3 stopped.
set -euo pipefail
COMPONENT=elasticsearch
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-19300}"
ES_HEAP="${ES_HEAP:-512m}"
ES_WAIT="${ES_WAIT:-120}"
ES_URL="http://127.0.0.1:$ES_PORT"

ES_MODULE="$LOCAL_DIR/elasticsearch"
ES_JAR="$ES_MODULE/target/es-launcher-1.jar"
ES_LIB="$ES_MODULE/target/lib"
ES_MAIN=cqrsflow.localstack.es.Main

ES_DIR="$STATE_DIR/elasticsearch"
# The node runs from a copy of the built jars, so rebuilding the module
# (mvn package rewrites target/) can never pull jars from under a running JVM.
ES_RUNLIB="$ES_DIR/lib"
ES_HOME="$ES_DIR/home"
ES_DATA="$ES_DIR/data"
ES_LOGS="$ES_DIR/logs"
ES_TMP="$ES_DIR/tmp"
ES_LOG="$ES_LOGS/elasticsearch.log"
ES_PIDFILE="$ES_DIR/elasticsearch.pid"
# Marker that must appear in the pid's command line (guards against pid reuse).
ES_MARKER="$ES_MAIN $ES_HOME"

ensure_tools() {
  local pkgs=()
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
  need_cmd java "apt-get install -y openjdk-17-jdk-headless"
  need_cmd mvn "apt-get install -y maven"
  need_cmd curl "apt-get install -y curl"
  # Elasticsearch 8.15 is compiled for Java 17.
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
    die "Java 17 or newer is needed (found java.specification.version '$major'): apt-get install -y openjdk-17-jdk-headless"
  fi
}

# build_is_fresh: the launcher jar and lib dir exist and are newer than the
# pom and every source/config file of the module.
build_is_fresh() {
  [[ -f "$ES_JAR" && -f "$ES_LIB/.complete" ]] || return 1
  [[ -z "$(find "$ES_MODULE/pom.xml" "$ES_MODULE/src" "$ES_MODULE/config" -newer "$ES_LIB/.complete" -print -quit)" ]]
}

# build: mvn package (compiles the launcher, copies runtime jars to target/lib).
# Offline first (warm ~/.m2), then online. Serialised with a lock so two
# concurrent `start`s don't build into the same target/ at once.
build() {
  mkdir -p "$ES_MODULE/target"
  (
    flock -w 900 9 || die "timed out waiting for the build lock $ES_MODULE/target/.build.lock"
    if build_is_fresh; then exit 0; fi
    local start=$SECONDS mvnlog="$ES_MODULE/target/mvn.log"
    log "building the launcher (deploy/local/elasticsearch, mvn package)"
    rm -rf "$ES_LIB"
    if mvn -B -q -o -f "$ES_MODULE/pom.xml" package >"$mvnlog" 2>&1; then
      :
    else
      log "offline build failed (cold ~/.m2?), retrying online; the first download from Maven Central is about 75 MB"
      rm -rf "$ES_LIB"
      if ! mvn -B -q -f "$ES_MODULE/pom.xml" package >"$mvnlog" 2>&1; then
        show_log "$mvnlog" 50
        die "Maven build of $ES_MODULE failed"
      fi
    fi
    touch "$ES_LIB/.complete"
    log "launcher built: $(find "$ES_LIB" -name '*.jar' | wc -l) jars in $((SECONDS - start))s"
  ) 9>"$ES_MODULE/target/.build.lock"
}

es_pid() { running_pid "$ES_PIDFILE" "$ES_MARKER"; }

es_answers() { curl -fsS --max-time 5 "$ES_URL/_cluster/health" >/dev/null 2>&1; }

es_yellow() {
  curl -fsS --max-time 10 "$ES_URL/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1
}

# install_runlib: copy launcher + runtime jars to the state dir when the build is newer.
install_runlib() {
  if [[ -f "$ES_RUNLIB/.complete" && ! "$ES_LIB/.complete" -nt "$ES_RUNLIB/.complete" ]]; then
    return 0
  fi
  rm -rf "$ES_RUNLIB"
  mkdir -p "$ES_RUNLIB"
  cp "$ES_JAR" "$ES_LIB"/*.jar "$ES_RUNLIB/"
  touch "$ES_RUNLIB/.complete"
}

write_config() {
  mkdir -p "$ES_HOME/config" "$ES_DATA" "$ES_LOGS" "$ES_TMP"
  cp "$ES_MODULE/config/log4j2.properties" "$ES_HOME/config/log4j2.properties"
  # Settings live here (not on the command line) so the file shows what runs.
  # Regenerated on every start: ports/paths follow the environment.
  cat >"$ES_HOME/config/elasticsearch.yml" <<EOF
# Generated by deploy/local/es.sh on every start; edits are overwritten.
cluster.name: cqrsflow-local
node.name: cqrsflow-local
path.data: $ES_DATA
path.logs: $ES_LOGS
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
# A test machine's disk may be fuller than the production watermarks allow.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
}

start() {
  ensure_tools
  mkdir -p "$ES_DIR"
  # One start at a time (up.sh and a developer may race): the lock fd 8 is
  # released when this script exits and is NOT inherited by the JVM (8>&-).
  exec 8>"$ES_DIR/.start.lock"
  flock -w 300 8 || die "timed out waiting for another es.sh start ($ES_DIR/.start.lock)"
  local pid
  if pid="$(es_pid)" && es_answers; then
    log "elasticsearch already running (pid $pid, $ES_URL)"
    return 0
  fi
  if [[ -n "${pid:-}" ]]; then
    # Alive but not answering yet: a start in progress (or a hung node).
    log "process $pid is alive but $ES_URL does not answer yet"
  else
    rm -f "$ES_PIDFILE"
    build
    install_runlib
    write_config
    if es_answers; then
      die "something else already answers on $ES_URL (not our pid file $ES_PIDFILE); set ES_PORT"
    fi
    log "starting on $ES_URL (log $ES_LOG)"
    [[ -f "$ES_LOG" ]] && mv -f "$ES_LOG" "$ES_LOG.1"
    # JVM options: the usual ones from Elasticsearch's jvm.options that make
    # sense without the stock bootstrap, with paths under the state dir.
    local jvm=(
      "-Xms$ES_HEAP" "-Xmx$ES_HEAP" -Xss1m -XX:+UseG1GC
      -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow
      "-Djava.io.tmpdir=$ES_TMP" -Djava.awt.headless=true -Dfile.encoding=UTF-8
      -Djna.nosys=true "-Djna.tmpdir=$ES_TMP"
      -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0
      -Dlog4j2.formatMsgNoLookups=true -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true
      -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10
      "-Xlog:gc*:file=$ES_LOGS/gc.log:utctime,level,tags:filecount=2,filesize=8m"
    )
    # setsid + nohup: the node survives the shell (and make) that started it.
    setsid nohup java "${jvm[@]}" -cp "$ES_RUNLIB/*" "$ES_MAIN" "$ES_HOME" \
      >"$ES_LOG" 2>&1 </dev/null 8>&- &
    pid=$!
    printf '%s\n' "$pid" >"$ES_PIDFILE"
  fi

  local rc=0
  WAIT_ALIVE_PID="$pid" wait_for "Elasticsearch cluster health yellow at $ES_URL" "$ES_WAIT" es_yellow || rc=$?
  if ((rc != 0)); then
    show_log "$ES_LOG" 50
    kill -0 "$pid" 2>/dev/null || rm -f "$ES_PIDFILE"
    die "Elasticsearch did not become ready (pid $pid, log $ES_LOG)"
  fi
  log "ready: $ES_URL (pid $pid, rss $(rss_of "$pid"))"
}

stop() {
  local purge="${1:-}"
  case "$purge" in ""|--purge) ;; *) die "unknown stop option: $purge" ;; esac
  # Elasticsearch flushes and closes its shards on SIGTERM; give it time.
  stop_pid "$ES_PIDFILE" "$ES_MARKER" elasticsearch 60
  if [[ "$purge" == --purge ]]; then
    log "purging $ES_DIR"
    rm -rf "$ES_DIR"
  fi
}

status() {
  local pid=""
  pid="$(es_pid)" || pid=""
  status_line elasticsearch "$ES_PORT" "$ES_LOG" "$pid" es_answers "not answering"
}

service_main "$@"
