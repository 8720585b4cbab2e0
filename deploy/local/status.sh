#!/usr/bin/env bash
# Show the local stack's services (`make status`): pid, port, resident
# memory, log file. Exit status 0 only if every service runs and answers.
set -uo pipefail
COMPONENT=status
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "${1:-}" == --no-header ]] || echo "cqrsflow local stack — state dir $STATE_DIR"
rc=0
for svc in postgresql:pg.sh kafka:kafka.sh elasticsearch:es.sh; do
  name="${svc%%:*}" script="$LOCAL_DIR/${svc#*:}"
  if [[ -x "$script" ]]; then
    "$script" status || rc=1
  else
    printf '%-14s missing  (%s not found)\n' "$name" "${script#"$REPO_DIR"/}"
    rc=1
  fi
done
exit "$rc"
