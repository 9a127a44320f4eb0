#!/usr/bin/env bash
# The performance suite in one command (issue 16): installs what it needs
# (wrk and openssl from Debian; the Python tools of infra/local/install-tools.sh), builds
# release binaries, runs tests/bench/suite.py and appends its figures to
# docs/benchmarks/suite-results.md.
#
#   tests/bench/suite.sh                         # every section
#   tests/bench/suite.sh --only reads,scripts    # some (see suite.py --help)
#   tests/bench/suite.sh --delays 100000         # the full delay run
set -euo pipefail
cd "$(dirname "$0")/../.."

tools=$(infra/local/install-tools.sh | tail -n1)
# wrk drives the HTTP load; openssl lays out the cold starts' trust store.
for tool in wrk openssl; do
  if ! command -v "$tool" >/dev/null; then
    echo "== installing $tool (Debian package)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$tool" >/dev/null; else sudo apt-get install -y -q "$tool" >/dev/null; fi
  fi
done

target=${CARGO_TARGET_DIR:-target}
only=reads,delays,scripts,listing,fanout,files,coldstart,cost
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--only" ]; then j=$((i + 1)); only=${!j}; fi
done
packages=(-p taskgate -p taskgate-bench)
if [[ ",$only," == *",coldstart,"* || ",$only," == *",cost,"* ]]; then
  packages+=(-p http-api -p realtime -p step-record -p step-js -p step-export -p task-reconciler -p upload-reaper)
fi
echo "== cargo build --release (${packages[*]})"
cargo build --release --locked "${packages[@]}" --bins

exec "$tools/venv/bin/python" tests/bench/suite.py --release "$target/release" "$@"
