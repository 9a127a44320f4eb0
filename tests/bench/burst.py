#!/usr/bin/env python3
"""Bursts of large or slow requests: does the server's memory stay bounded?

Starts `taskgate serve` (plain HTTP, embedded store, default limits) and sends
one burst after another from many client threads at once, while a sampler
reads the resident memory (VmRSS) of the server and, separately, of its
script workers every 20 ms. Prints, per burst, the answers by status and the
peak memory, as a Markdown table.

    cargo build -p taskgate && tests/bench/burst.py [SCALE] [BINARY]

SCALE (default 1) multiplies the number of requests of every burst.
Results are recorded in docs/benchmarks/burst.md. No timing is asserted:
the script fails only if the server answers 5xx other than 503, or dies.
"""
import collections
import concurrent.futures
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

from local_server import default_binary, serve

SCALE = int(sys.argv[1]) if len(sys.argv) > 1 else 1
BINARY = sys.argv[2] if len(sys.argv) > 2 else default_binary()
PASSWORD = "benchmark operator passphrase"
MIB = 1024 * 1024


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


class Sampler(threading.Thread):
    """Keeps the peak RSS of the server and the peak total RSS of its workers."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            self.server_peak = rss_kib(self.pid)
            self.workers_peak = 0
            self.workers_most = 0

    def run(self):
        while not self.stopped.wait(0.02):
            server = rss_kib(self.pid)
            workers = children(self.pid)
            total = sum(rss_kib(c) for c in workers)
            with self.lock:
                self.server_peak = max(self.server_peak, server)
                self.workers_peak = max(self.workers_peak, total)
                self.workers_most = max(self.workers_most, len(workers))


def request(base, method, path, body=None, token=None, content_type="application/json"):
    """One request on its own connection; returns the status (or the error's name)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"content-type": content_type}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        try:
            connection.request(method, path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server answers 413 without reading a body over the limit,
            # and closes; its answer is still there to read.
            pass
        response = connection.getresponse()
        return response.status, response.read()
    except OSError as e:
        return type(e).__name__, b""
    finally:
        connection.close()


def burst(base, count, concurrency, make_request):
    statuses = collections.Counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for status, _ in pool.map(lambda n: make_request(n), range(count)):
            statuses[status] += 1
    return statuses


def main():
    with serve(BINARY, PASSWORD, TASKGATE_STORE="embedded") as (base, server):
        status, body = request(base, "POST", "/auth",
                               json.dumps({"username": "admin", "password": PASSWORD}))
        assert status == 200, (status, body)
        admin = json.loads(body)["token"]
        for n in range(64):
            status, body = request(base, "POST", "/users", json.dumps(
                {"username": f"user{n}", "password": PASSWORD}), admin)
            assert status == 201, (status, body)

        sampler = Sampler(server.pid)
        sampler.start()
        time.sleep(0.5)
        idle = sampler.server_peak
        big_profile = json.dumps({"username": "big", "password": PASSWORD,
                                  "profile": {"bio": "x" * (60 * 1024)}})
        huge = b"{" + b" " * (8 * MIB) + b"}"
        deep = "[" * 30_000 + "]" * 30_000
        hog = ("const a = []; for (let i = 0; i < 48; i++) a.push(new Uint8Array(1 << 22));"
               " const t = Date.now(); while (Date.now() - t < 300) {} a.length")
        bursts = [
            ("64 KiB bodies, profile too large (422)", 400 * SCALE, 128,
             lambda n: request(base, "POST", "/users", big_profile, admin)),
            ("8 MiB bodies, over the body limit (413)", 100 * SCALE, 64,
             lambda n: request(base, "POST", "/users", huge, admin)),
            ("JSON nested 30,000 deep, 60 KB (400)", 200 * SCALE, 64,
             lambda n: request(base, "POST", "/users", deep, admin)),
            ("logins, 64 users at once (hash queue)", 320 * SCALE, 64,
             lambda n: request(base, "POST", "/auth", json.dumps(
                 {"username": f"user{n % 64}", "password": PASSWORD}))),
            ("scripts allocating 192 MiB each (script queue)", 12 * SCALE, 12,
             lambda n: request(base, "POST", "/tasks",
                               json.dumps({"type": "js", "code": hog}), admin)),
            ("1,000 logins at once (in-flight limit)", 1000 * SCALE, 1000,
             lambda n: request(base, "POST", "/auth", json.dumps(
                 {"username": f"user{n % 64}", "password": PASSWORD}))),
        ]
        rows = []
        for name, count, concurrency, make in bursts:
            sampler.reset()
            started = time.perf_counter()
            statuses = burst(base, count, concurrency, make)
            if "scripts" in name:
                # Wait for the queued scripts to run to their end.
                while True:
                    status, body = request(base, "GET", "/tasks?limit=100", token=admin)
                    items = json.loads(body)["items"]
                    if all(t["status"] not in ("pending", "running") for t in items):
                        break
                    time.sleep(0.2)
                outcomes = collections.Counter(t["status"] for t in items)
                statuses.update({f"task {k}": v for k, v in outcomes.items()})
            elapsed = time.perf_counter() - started
            if server.poll() is not None:
                sys.exit(f"the server died during: {name}")
            bad = [s for s in statuses if isinstance(s, int) and s >= 500 and s != 503]
            if bad:
                sys.exit(f"{name}: server errors {statuses}")
            rows.append((name, count, concurrency, statuses, sampler.server_peak,
                         sampler.workers_peak, sampler.workers_most, elapsed))
        sampler.stopped.set()

    print(f"Server RSS at rest, after setup: {idle / 1024:.0f} MiB\n")
    print("| burst | requests | at once | answers | server peak RSS MiB "
          "| workers peak RSS MiB (most at once) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, count, concurrency, statuses, server_peak, workers_peak, most, elapsed in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))
        print(f"| {name} | {count} | {concurrency} | {answers} | {server_peak / 1024:.0f} "
              f"| {workers_peak / 1024:.0f} ({most}) | {elapsed:.1f} |")


if __name__ == "__main__":
    main()
