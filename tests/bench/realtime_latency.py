#!/usr/bin/env python3
"""How long an item change takes to reach WebSocket subscribers.

Starts `taskgate serve` (plain HTTP, embedded store unless STORE says
otherwise), creates a project with one item, connects SUBSCRIBERS sockets
(websockets, a client library) subscribed to the project, then changes the
item ROUNDS times, one change at a time. For each change it measures, from
just before the PATCH is sent: the PATCH's own round trip, and the time
until each subscriber has the change's event. Prints percentiles as a
Markdown table row.

    tools=$(infra/local/install-tools.sh | tail -n1)
    cargo build -p taskgate && "$tools/venv/bin/python" tests/bench/realtime_latency.py [ROUNDS] [SUBSCRIBERS] [BINARY]

Results are recorded in docs/benchmarks/realtime.md. Nothing is asserted.
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

from websockets.sync.client import connect

from local_server import call, default_binary, serve

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SUBSCRIBERS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
BINARY = sys.argv[3] if len(sys.argv) > 3 else default_binary()
PASSWORD = "benchmark operator passphrase"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    settings = {}
    if os.environ.get("STORE") == "dynamodb":
        settings = {"TASKGATE_STORE": "dynamodb",
                    "TASKGATE_DYNAMODB_ENDPOINT": os.environ["TASKGATE_DYNAMODB_ENDPOINT"]}
    with serve(BINARY, PASSWORD, **settings) as (base, _server):
        token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
        project = call(base, "POST", "/projects", token, {"name": "Latency"})["id"]
        item = call(base, "POST", f"/projects/{project}/items", token, {"title": "x"})["id"]
        ws_base = base.replace("http", "ws", 1)
        sockets = []
        for _ in range(SUBSCRIBERS):
            ws = connect(f"{ws_base}/ws?token={token}")
            ws.send(json.dumps({"type": "subscribe", "topic": f"project:{project}"}))
            assert json.loads(ws.recv())["type"] == "subscribed"
            sockets.append(ws)

        arrivals = [dict() for _ in sockets]  # seq -> perf_counter at arrival

        def reader(index, ws):
            for message in ws:
                event = json.loads(message)
                if event.get("type") == "event":
                    arrivals[index][event["seq"]] = time.perf_counter()

        threads = [threading.Thread(target=reader, args=(i, ws), daemon=True)
                   for i, ws in enumerate(sockets)]
        for thread in threads:
            thread.start()

        round_trips, deliveries = [], []
        seq = 2  # the project's creation and the item's are 1 and 2
        for n in range(ROUNDS):
            seq += 1
            sent = time.perf_counter()
            call(base, "PATCH", f"/projects/{project}/items/{item}", token, {"title": f"edit {n}"})
            round_trips.append(time.perf_counter() - sent)
            deadline = time.perf_counter() + 10
            while any(seq not in a for a in arrivals):
                if time.perf_counter() > deadline:
                    sys.exit(f"change {seq} did not arrive within 10 s")
                time.sleep(0.0002)
            deliveries.append(max(a[seq] for a in arrivals) - sent)
        for ws in sockets:
            ws.close()

    ms = lambda seconds: f"{seconds * 1000:.1f}"
    print("| subscribers | changes | PATCH round trip p50 / p99 (ms) | change to last subscriber p50 / p99 / max (ms) |")
    print("|---|---|---|---|")
    print(f"| {SUBSCRIBERS} | {ROUNDS} | {ms(statistics.median(round_trips))} / {ms(percentile(round_trips, 99))} "
          f"| {ms(statistics.median(deliveries))} / {ms(percentile(deliveries, 99))} / {ms(max(deliveries))} |")


if __name__ == "__main__":
    main()
