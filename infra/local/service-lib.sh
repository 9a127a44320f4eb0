# Shared by dynamodb-local.sh and moto-server.sh (sourced, not run):
# picking a port, waiting for a service to answer, stopping it.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until_answers NAME PID_FILE LOG URL [curl args...]
# Polls URL until any HTTP answer (up to 60 s), failing early if the process
# dies; on failure prints the service's log.
wait_until_answers() {
  local name=$1 pid_file=$2 log=$3 url=$4
  shift 4
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$@" "$url"; then
      return 0
    fi
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "$name exited; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "$name did not answer on $url within 60 s; its log:" >&2
  cat "$log" >&2
  return 1
}

# stop_service PID_FILE: TERM, up to 5 s grace, then KILL.
stop_service() {
  local pid_file=$1 pid
  [ -f "$pid_file" ] || return 0
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}
