#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this) and as the
# README documents it. On a fresh machine it first installs the tools it
# needs (infra/local/install-tools.sh), then:
#   1. runs the SAM translator over the template (plain `sam validate`, the
#      transform `sam deploy` runs), lints it (sam validate --lint,
#      cfn-lint) and the state machine (statelint, asl-validator);
#   2. starts DynamoDB Local and moto's Step Functions API for the whole run
#      and stops them at the end;
#   3. checks the kit for `sam local` (compose file schema; the setup script
#      against DynamoDB Local and moto);
#   4. runs every crate's tests in one cargo invocation, with the end-to-end
#      tests on the embedded store and on DynamoDB Local;
#   5. fuzzes the running server from its OpenAPI document (schemathesis),
#      on the embedded store and on DynamoDB Local.
# Extra arguments go to `cargo test` (e.g. tests/run.sh -- token_attacks).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=$(infra/local/install-tools.sh | tail -n1)
export PATH="$tools/venv/bin:$PATH"
# SAM and cfn-lint need a region, never credentials, for these checks.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0

echo "== template: the SAM translator (sam validate, as sam deploy runs it), then lint (sam validate --lint, cfn-lint)"
sam validate --template-file infra/template.yaml
sam validate --lint --template-file infra/template.yaml
cfn-lint infra/template.yaml

echo "== state machine lint (statelint, asl-validator)"
for definition in infra/statemachine/*.asl.json; do
  statelint "$definition"
  "$tools/node/node_modules/.bin/asl-validator" --json-path "$definition"
done

echo "== DynamoDB Local, Step Functions API (moto)"
state=$(mktemp -d)
trap 'infra/local/dynamodb-local.sh stop "$state"; infra/local/moto-server.sh stop "$state"; rm -rf "$state"' EXIT
TASKGATE_TEST_DYNAMODB_ENDPOINT=$(infra/local/dynamodb-local.sh start "$state")
TASKGATE_TEST_SFN_ENDPOINT=$(infra/local/moto-server.sh start "$state")
export TASKGATE_TEST_DYNAMODB_ENDPOINT TASKGATE_TEST_SFN_ENDPOINT
echo "DynamoDB Local at $TASKGATE_TEST_DYNAMODB_ENDPOINT, moto at $TASKGATE_TEST_SFN_ENDPOINT"

echo "== local AWS kit for sam local (compose schema; setup script against DynamoDB Local and moto, twice)"
"$tools/venv/bin/python" infra/local/check-compose.py "$tools" infra/local/docker-compose.yml
for _ in 1 2; do
  TASKGATE_DYNAMODB_ENDPOINT=$TASKGATE_TEST_DYNAMODB_ENDPOINT \
  TASKGATE_SECRETSMANAGER_ENDPOINT=$TASKGATE_TEST_SFN_ENDPOINT \
  TASKGATE_STEPFUNCTIONS_ENDPOINT=$TASKGATE_TEST_SFN_ENDPOINT \
    python3 infra/local/sam-local-setup.py
done

echo "== cargo test"
# The function binaries themselves (debug), for the tests that run them as
# Lambda does (tests/e2e/lambda_runtime.rs).
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"

echo "== API fuzzing from the OpenAPI document (schemathesis; embedded store, then DynamoDB Local)"
tests/schemathesis.sh --max-examples 25
tests/schemathesis.sh --max-examples 10 --dynamodb "$TASKGATE_TEST_DYNAMODB_ENDPOINT"
