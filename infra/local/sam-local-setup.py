#!/usr/bin/env python3
"""Prepares local AWS stand-ins for `sam local start-api`:

1. the DynamoDB tables (with `taskgate create-tables`, the same code the
   server uses), in DynamoDB Local;
2. the JWT signing secret, in Secrets Manager (moto's server);
3. the task state machine (infra/statemachine/task.asl.json), in Step
   Functions Local, its Task states pointed at `sam local start-lambda`.

Endpoints default to infra/local/docker-compose.yml's ports and can be
changed with TASKGATE_DYNAMODB_ENDPOINT, TASKGATE_SECRETSMANAGER_ENDPOINT and
TASKGATE_STEPFUNCTIONS_ENDPOINT. Idempotent: what exists is left alone.
Names match infra/local/sam-local-env.json. Standard library only.
"""
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = json.loads((ROOT / "infra/local/sam-local-env.json").read_text())["Parameters"]
DYNAMODB = os.environ.get("TASKGATE_DYNAMODB_ENDPOINT", "http://localhost:8000")
SECRETS = os.environ.get("TASKGATE_SECRETSMANAGER_ENDPOINT", "http://localhost:4566")
STEPFUNCTIONS = os.environ.get("TASKGATE_STEPFUNCTIONS_ENDPOINT", "http://localhost:8083")
ACCOUNT = "123456789012"
REGION = "us-east-1"


def call(endpoint, service, target, body):
    """An AWS JSON-protocol call; local stand-ins do not check signatures."""
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.0" if service == "states" else "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return {"__error__": e.read().decode(errors="replace")}


def create_tables():
    env = dict(os.environ, TASKGATE_DYNAMODB_ENDPOINT=DYNAMODB)
    for name in (
        "TASKGATE_USERS_TABLE",
        "TASKGATE_TOKENS_TABLE",
        "TASKGATE_TASK_EVENTS_TABLE",
        "TASKGATE_SECURITY_TABLE",
        "TASKGATE_PROJECTS_TABLE",
        "TASKGATE_PROJECT_LOG_TABLE",
        "TASKGATE_FILES_TABLE",
        "TASKGATE_CONNECTIONS_TABLE",
    ):
        env[name] = ENV[name]
    subprocess.run(["cargo", "run", "--quiet", "--", "create-tables"], cwd=ROOT, env=env, check=True)


def create_secret():
    name = ENV["TASKGATE_JWT_SECRET_ARN"]
    found = call(SECRETS, "secretsmanager", "secretsmanager.DescribeSecret", {"SecretId": name})
    if "__error__" not in found:
        print(f"secret {name} exists")
        return
    created = call(SECRETS, "secretsmanager", "secretsmanager.CreateSecret",
                   {"Name": name, "SecretString": secrets.token_urlsafe(48)})
    if "__error__" in created:
        sys.exit(f"cannot create the secret: {created['__error__']}")
    print(f"secret {name} created")


def create_state_machine():
    arn = ENV["TASKGATE_STATE_MACHINE_ARN"]
    name = arn.rsplit(":", 1)[1]
    found = call(STEPFUNCTIONS, "states", "AWSStepFunctions.DescribeStateMachine", {"stateMachineArn": arn})
    if "__error__" not in found:
        print(f"state machine {name} exists")
        return
    definition = (ROOT / "infra/statemachine/task.asl.json").read_text()
    # `sam local start-lambda` serves functions by their logical ids.
    for placeholder, function in (("RecordFunctionArn", "StepRecordFunction"), ("JsFunctionArn", "StepJsFunction"),
                                  ("ExportFunctionArn", "StepExportFunction")):
        definition = definition.replace("${" + placeholder + "}", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}")
    created = call(STEPFUNCTIONS, "states", "AWSStepFunctions.CreateStateMachine", {
        "name": name,
        "definition": definition,
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/taskgate-local",
        "type": "STANDARD",
    })
    if "__error__" in created:
        sys.exit(f"cannot create the state machine: {created['__error__']}")
    print(f"state machine {created['stateMachineArn']} created")


if __name__ == "__main__":
    create_tables()
    create_secret()
    create_state_machine()
