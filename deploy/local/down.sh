#!/usr/bin/env bash
# Stop the local stack (`make down`); `down.sh --purge` (`make purge`) also
# deletes its data. Stops exactly the processes recorded in the pid files.
set -uo pipefail
COMPONENT=down
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

purge=""
case "${1:-}" in
  "") ;;
  --purge) purge=--purge ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

rc=0
# What `make run` started on top of the stack (owned by deploy/local/run.sh
# and prometheus.sh), so that `make down` leaves nothing of ours running.
if [[ -x "$LOCAL_DIR/run.sh" && -d "$STATE_DIR/run" ]]; then
  "$LOCAL_DIR/run.sh" stop || { log "run.sh stop failed"; rc=1; }
fi
if [[ -x "$LOCAL_DIR/prometheus.sh" ]]; then
  "$LOCAL_DIR/prometheus.sh" stop || { log "prometheus.sh stop failed"; rc=1; }
fi
for svc in elasticsearch:es.sh kafka:kafka.sh postgresql:pg.sh; do
  name="${svc%%:*}" script="$LOCAL_DIR/${svc#*:}"
  if [[ -x "$script" ]]; then
    "$script" stop $purge || { log "stopping $name failed"; rc=1; }
  else
    log "${script#"$REPO_DIR"/} not found: nothing to stop for $name"
  fi
done

# Anything still running from our state dir is a bug worth seeing.
left="$(ps -eo pid=,args= | grep -F -- "$STATE_DIR/" | grep -v -e grep -e "$0" || true)"
if [[ -n "$left" ]]; then
  log "WARNING: processes still using $STATE_DIR:"
  printf '%s\n' "$left" | sed 's/^/    /' >&2
  rc=1
fi

# --purge: the state dir holds only the stack's data, logs and pid files
# (and what `make run` keeps there); delete it once nothing runs from it.
if [[ -n "$purge" && -d "$STATE_DIR" ]]; then
  case "$(cd "$STATE_DIR" && pwd -P)" in
    /|/root|/home|/var|/var/tmp|/tmp|/usr|/etc|/opt|"$HOME")
      log "refusing to delete $STATE_DIR (CQRSFLOW_STATE_DIR looks like a system directory)"; rc=1 ;;
    *)
      if [[ -n "$left" ]]; then
        log "not deleting $STATE_DIR: processes still use it"
      else
        rm -rf "$STATE_DIR"
        log "removed $STATE_DIR"
      fi ;;
  esac
fi
exit "$rc"
