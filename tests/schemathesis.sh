#!/usr/bin/env bash
# Property-based fuzzing of the running local server from its own OpenAPI
# document, with schemathesis (https://schemathesis.io).
#
# Starts `taskgate serve` (HTTPS, self-signed certificate, a fresh data
# directory; the embedded store, or DynamoDB with --dynamodb ENDPOINT), logs
# in as the first admin and as a plain user, then runs schemathesis against
# /openapi.json once per identity. Every check runs (`--checks all`), so it
# fails on any 5xx, any status, header, content type or body the document
# does not describe, any schema-invalid request that is accepted, any
# schema-valid request refused for its shape (400, 413, 422), and any
# operation that ignores its auth. The few rules no schema can state are
# excused by tests/schemathesis_hooks.py, only when the server's answer
# names one of them (docs/fuzzing.md lists them).
#
#   tests/schemathesis.sh                      # 25 examples per operation (the test suite)
#   tests/schemathesis.sh --max-examples 2000  # the long run (docs/fuzzing.md)
#   tests/schemathesis.sh --dynamodb http://127.0.0.1:8000
#
# Needs the schemathesis venv from infra/local/install-tools.sh and a built
# `taskgate` (cargo build). Reports go to $SCHEMATHESIS_REPORTS if set;
# otherwise to a temporary directory that is removed after a clean run and
# kept (with the server's log and data) after a failed one.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=25
seed=20261121
dynamodb=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-examples) max_examples=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --dynamodb) dynamodb=$2; shift 2 ;;
    *) echo "usage: $0 [--max-examples N] [--seed N] [--dynamodb ENDPOINT]" >&2; exit 2 ;;
  esac
done

tools=${TASKGATE_TOOLS_DIR:-$HOME/.cache/taskgate-tools}
st="$tools/venv-schemathesis/bin/st"
[ -x "$st" ] || { echo "schemathesis is missing: run infra/local/install-tools.sh" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-target}
taskgate="$target/debug/taskgate"
[ -x "$taskgate" ] || cargo build --quiet --locked -p taskgate

work=$(mktemp -d)
reports=${SCHEMATHESIS_REPORTS:-$work/reports}
mkdir -p "$reports"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -z "${SCHEMATHESIS_REPORTS:-}" ] && [ "${keep_work:-0}" = 0 ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin_password="fuzzing operator passphrase"
user_password="fuzzing client passphrase"
env=(
  TASKGATE_ADDR="127.0.0.1:$port"
  TASKGATE_DATA_DIR="$work/data"
  TASKGATE_ADMIN_PASSWORD="$admin_password"
  TASKGATE_LOG="warn"
)
if [ -n "$dynamodb" ]; then
  prefix="fuzz-$(date +%s)-$$"
  env+=(
    TASKGATE_STORE=dynamodb TASKGATE_DYNAMODB_ENDPOINT="$dynamodb"
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    TASKGATE_USERS_TABLE="$prefix-users" TASKGATE_TOKENS_TABLE="$prefix-tokens"
    TASKGATE_TASK_EVENTS_TABLE="$prefix-task-events" TASKGATE_SECURITY_TABLE="$prefix-security"
  )
fi
env "${env[@]}" "$taskgate" serve >"$work/server.log" 2>&1 &
server_pid=$!

base="https://127.0.0.1:$port"
cert="$work/data/tls-cert.pem"
for _ in $(seq 1 300); do
  if [ -f "$cert" ] && curl -sf --cacert "$cert" "$base/" -o /dev/null 2>/dev/null; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

login() {
  curl -sf --cacert "$cert" "$base/auth" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$2\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
admin=$(login admin "$admin_password")
curl -sf --cacert "$cert" "$base/users" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d "{\"username\":\"fuzzer\",\"password\":\"$user_password\"}" -o /dev/null
user=$(login fuzzer "$user_password")
# A token for the DELETE /auth run, taken now: the runs before it may well
# change this user's password (which revokes the user's other tokens).
curl -sf --cacert "$cert" "$base/users" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d "{\"username\":\"leaver\",\"password\":\"$user_password\"}" -o /dev/null
leaver=$(login leaver "$user_password")

# DELETE /auth would log the fuzzing identity out for the rest of the run;
# it is fuzzed last, on its own.
common=(
  "$base/openapi.json"
  --tls-verify "$cert"
  --checks all
  --max-examples "$max_examples" --seed "$seed"
  # One worker: with two threads, CPython 3.11.7's ast module can fail inside
  # schemathesis ("AST constructor recursion depth mismatch", fixed in 3.11.8).
  --request-timeout 30 --workers 1
  --suppress-health-check too_slow,filter_too_much
  --warnings off
)
hooks_dir=$(pwd)/tests
status=0
run() {
  local name=$1; shift
  echo "== schemathesis: $name (max $max_examples examples per operation, seed $seed)"
  # From the run's own directory: schemathesis and hypothesis keep caches
  # (.schemathesis/, .hypothesis/) in the working directory, and runs must
  # neither share nor leave them.
  if ! (cd "$work" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$hooks_dir" \
      TASKGATE_FUZZ_EXCUSED="$work/excused-$name.txt" \
      "$st" run "${common[@]}" --report junit,ndjson \
      --report-junit-path "$reports/$name.xml" --report-ndjson-path "$reports/$name.ndjson" "$@"); then
    status=1
  fi
  if [ -s "$work/excused-$name.txt" ]; then
    echo "excused as rules no schema can state (tests/schemathesis_hooks.py):"
    sort "$work/excused-$name.txt" | uniq -c | sort -rn
  fi
}
run admin -H "Authorization: Bearer $admin" --exclude-operation-id auth-logout
run user -H "Authorization: Bearer $user" --exclude-operation-id auth-logout
run logout -H "Authorization: Bearer $leaver" --include-operation-id auth-logout

if grep -q '"level":"ERROR"\|panicked' "$work/server.log"; then
  echo "the server logged errors:" >&2
  grep '"level":"ERROR"\|panicked\| ERROR ' "$work/server.log" | head -20 >&2
  status=1
fi
if [ -n "${SCHEMATHESIS_REPORTS:-}" ]; then
  echo "reports: $reports"
elif [ $status -ne 0 ]; then
  keep_work=1
  echo "reports, server log and data kept in $work"
fi
exit $status
