#!/usr/bin/env bash
# Kafka's own Java CLI tools, with the jars of the local stack's broker:
#
#   deploy/local/kafka-cli.sh topics          --bootstrap-server 127.0.0.1:19092 --list
#   deploy/local/kafka-cli.sh consumer-groups --bootstrap-server 127.0.0.1:19092 --describe --group G
#   deploy/local/kafka-cli.sh consumer-groups --bootstrap-server 127.0.0.1:19092 \
#       --group G --topic T --reset-offsets --to-earliest --execute
#
# Tools: topics, consumer-groups, configs, get-offsets, console-consumer,
# console-producer, storage. Arguments are passed through unchanged; when no
# --bootstrap-server is given, the local broker (127.0.0.1:$KAFKA_PORT) is used.
set -euo pipefail
COMPONENT=kafka-cli
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
tool="$1"; shift
case "$tool" in
  topics)           main=org.apache.kafka.tools.TopicCommand ;;
  consumer-groups)  main=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  configs)          main=kafka.admin.ConfigCommand ;;
  get-offsets)      main=org.apache.kafka.tools.GetOffsetShell ;;
  console-consumer) main=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  console-producer) main=org.apache.kafka.tools.ConsoleProducer ;;
  storage)          main=kafka.tools.StorageTool ;;
  -h|--help|help)   usage ;;
  *) echo "kafka-cli.sh: unknown tool '$tool'" >&2; usage ;;
esac

args=("$@")
if [[ "$tool" != storage ]] && ! printf '%s\n' "$@" | grep -q -- '^--bootstrap-server'; then
  args=(--bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@")
fi

ensure_kafka_libs
exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
  "-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2-cli.properties" \
  -cp "$KAFKA_LIB/*" "$main" "${args[@]}"
