#!/usr/bin/env python3
"""Login timing: does a login for an unknown username take as long as one with
a wrong password? (It must, or response times reveal which usernames exist.)

Starts `taskgate serve` (plain HTTP, in-memory store) on a free port, sends
ROUNDS logins of each kind, interleaved, and prints the medians and the
90th percentiles in milliseconds, as a Markdown table.

    cargo build -p taskgate && tests/bench/login_timing.py [ROUNDS] [BINARY]

Results are recorded in docs/benchmarks/login-timing.md.
"""
import json
import statistics
import sys
import time
import urllib.error
import urllib.request

from local_server import default_binary, serve

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
BINARY = sys.argv[2] if len(sys.argv) > 2 else default_binary()
PASSWORD = "benchmark operator passphrase"


def login(base, username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(base + "/auth", body, {"content-type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, (time.perf_counter() - started) * 1000


def main():
    with serve(BINARY, PASSWORD, TASKGATE_STORE="memory") as (base, _):
        assert login(base, "admin", PASSWORD)[0] == 200, "the admin cannot log in"
        samples = {"unknown username": [], "wrong password": [], "right password": []}
        for _ in range(ROUNDS):
            for kind, (user, password) in {
                "unknown username": ("nobody-at-all", PASSWORD),
                "wrong password": ("admin", "not the right passphrase"),
                "right password": ("admin", PASSWORD),
            }.items():
                status, ms = login(base, user, password)
                assert status == (200 if kind == "right password" else 401), (kind, status)
                samples[kind].append(ms)
    print(f"| login ({ROUNDS} each, interleaved) | median ms | p90 ms |")
    print("|---|---|---|")
    for kind, values in samples.items():
        values.sort()
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"| {kind} | {statistics.median(values):.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
