#!/usr/bin/env bash
# Starts or stops moto's server (PyPI moto[server], installed by
# install-tools.sh): a real implementation of the Step Functions API that
# runs here, used to test the Step Functions adapter.
#
#   infra/local/moto-server.sh start STATE_DIR [PORT]   prints http://127.0.0.1:PORT once it answers
#   infra/local/moto-server.sh stop  STATE_DIR
#
# Started with state-machine execution on (Wait states really wait) and
# Lambda tasks answered without Docker (a stub payload).
set -euo pipefail

usage() { echo "usage: $0 start STATE_DIR [PORT] | stop STATE_DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 state=$2

case "$command" in
start)
  mkdir -p "$state"
  port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  tools=$("$(dirname "$0")/install-tools.sh" | tail -n1)
  "$tools/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  endpoint="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$endpoint/moto-api/"; then
      curl -s -o /dev/null -X POST "$endpoint/moto-api/config" \
        -d '{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}'
      echo "$endpoint"
      exit 0
    fi
    if ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
      echo "moto exited; its log:" >&2; cat "$state/moto.log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "moto did not answer on $endpoint within 60 s; its log:" >&2
  cat "$state/moto.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$state/moto.pid" ]; then
    pid=$(cat "$state/moto.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/moto.pid"
  fi
  ;;
*) usage ;;
esac
