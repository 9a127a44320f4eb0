#!/usr/bin/env bash
# Starts or stops moto's server (PyPI moto[server], installed by
# install-tools.sh): real implementations of the Step Functions, Secrets
# Manager and API Gateway management APIs that run here, used to test the
# adapters. It runs through moto-server.py, which adds what the real-time
# tests need (the bytes posted to each connection; 410 once one is deleted).
#
#   infra/local/moto-server.sh start STATE_DIR [PORT]   prints http://127.0.0.1:PORT once it answers
#   infra/local/moto-server.sh stop  STATE_DIR
#
# Started with state-machine execution on (Wait states really wait) and
# Lambda tasks answered without Docker (a stub payload).
set -euo pipefail
here=$(dirname "$0")
. "$here/service-lib.sh"

usage() { echo "usage: $0 start STATE_DIR [PORT] | stop STATE_DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 state=$2

case "$command" in
start)
  mkdir -p "$state"
  port=${3:-$(free_port)}
  tools=$("$here/install-tools.sh" | tail -n1)
  "$tools/venv/bin/python" "$here/moto-server.py" 127.0.0.1 "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  endpoint="http://127.0.0.1:$port"
  wait_until_answers "moto" "$state/moto.pid" "$state/moto.log" "$endpoint/moto-api/"
  curl -s -o /dev/null -X POST "$endpoint/moto-api/config" \
    -d '{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}'
  echo "$endpoint"
  ;;
stop)
  stop_service "$state/moto.pid"
  ;;
*) usage ;;
esac
