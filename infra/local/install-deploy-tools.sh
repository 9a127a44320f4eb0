#!/usr/bin/env bash
# One-time tools for building and deploying to AWS (not needed to run or test
# Taskgate locally), into the same tools directory as install-tools.sh:
#
#   venv: aws-sam-cli, cfn-lint (via install-tools.sh), cargo-lambda, ziglang
#   rustup: the aarch64-unknown-linux-gnu target (Lambda runs arm64)
#
# Afterwards put "$HOME/.cache/taskgate-tools/venv/bin" on PATH (the script
# prints the line to use) and run `sam build` from the repository root.
set -euo pipefail
here=$(dirname "$0")
tools=$("$here/install-tools.sh" | tail -n1)

DEPLOY_PACKAGES=(
  "cargo-lambda==1.9.2"
  "ziglang==0.17.0"
)
stamp="$tools/venv/.taskgate-deploy-packages"
wanted=$(printf '%s\n' "${DEPLOY_PACKAGES[@]}")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "install-deploy-tools: pip install ${DEPLOY_PACKAGES[*]}" >&2
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${DEPLOY_PACKAGES[@]}" >&2
  printf '%s\n' "$wanted" >"$stamp"
fi
rustup target add aarch64-unknown-linux-gnu >&2

echo "export PATH=\"$tools/venv/bin:\$PATH\""
