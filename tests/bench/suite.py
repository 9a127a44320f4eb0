#!/usr/bin/env python3
"""Taskgate's performance suite: each figure measured beside its reference
in the same run on the same machine, written to docs/benchmarks/suite.md.

    tests/bench/suite.sh                 # every section (builds release binaries first)
    tests/bench/suite.sh --only reads,scripts

Sections (see docs/benchmarks/suite.md for what each compares):
  reads     authenticated GET /tasks/{id} and a filtered item page, versus a
            bare hyper hello-world (wrk, 32 connections)
  delays    N concurrent delays: start rate, lateness p50/p99, RSS per task
  scripts   a trivial script: submit-to-succeeded latency, throughput
  listing   filtered pages of 50 from a project of 100,000 items, on SQLite
            and on DynamoDB Local (with the read units each page consumed)
  fanout    1,000 and 10,000 WebSocket subscribers of one project: change to last receipt, RSS
  files     a 1 GiB tus upload and download versus curl PUT/GET to a bare server
  coldstart exec to the first poll of the Lambda Runtime API, per function
            binary, versus a hello-world lambda_http binary
  cost      what each API operation, task kind and GiB of files costs on AWS:
            Lambda durations (emulated Runtime API), DynamoDB units (DynamoDB
            Local), state transitions (the state machine on moto), S3 requests,
            at the published prices in PRICES (docs/benchmarks/cost.md)

Nothing here asserts anything: the figures are read against the targets in
the issue and in docs/benchmarks/suite.md.
"""
import argparse
import datetime
import glob
import http.server
import json
import math
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from local_server import call, free_port, serve  # noqa: E402

PASSWORD = "benchmark operator passphrase"
# Load from one address, above the server's per-address and in-flight limits.
UNLIMITED = {"TASKGATE_MAX_REQUESTS_PER_ADDRESS": "4096", "TASKGATE_MAX_REQUESTS_IN_FLIGHT": "4096"}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(url, token=None, seconds=10, connections=32, script=None):
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script:
        command += ["-s", os.path.join(os.path.dirname(os.path.abspath(__file__)), script)]
    out = subprocess.run(command + [url], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rate, "p99": p99.group(1) if p99 else "?",
            "non_2xx": int(errors.group(1)) if errors else 0}


class HelloServer:
    """The bare hyper reference (bench-hello), for as long as the block runs."""

    def __init__(self, release, env=None):
        self.binary = os.path.join(release, "bench-hello")
        self.env = env

    def __enter__(self):
        self.port = free_port()
        self.process = subprocess.Popen([self.binary, f"127.0.0.1:{self.port}"], env=self.env)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/")
                break
            except OSError:
                time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_):
        self.process.terminate()
        self.process.wait()


def section_reads(args):
    """Each request is measured in rounds, and in every round right after
    its own run of the reference: its figure is its req/s against that run.
    This machine's throughput moves by a third within seconds (one round
    gave `GET /tasks/{id}` 60% and the next 34% against references a
    quarter of a minute away), so a reference run once, or once a round,
    said more about the minute than about the server."""
    with HelloServer(args.release) as hello, serve(args.taskgate, PASSWORD, **UNLIMITED) as (base, _):
        token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
        task = call(base, "POST", "/tasks", token, {"type": "delay", "seconds": 0})["id"]
        project = call(base, "POST", "/projects", token, {"name": "Reads"})["id"]
        for i in range(300):
            call(base, "POST", f"/projects/{project}/items", token,
                 {"title": f"item {i}", "status": ["pending", "in_progress", "completed"][i % 3],
                  "due_date": f"2027-01-{1 + i % 28:02d}"})
        page_path = f"/projects/{project}/items?status=pending&sort=due_date&limit=50"
        request = urllib.request.Request(base + page_path, headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request) as response:
            page_bytes = len(response.read())
        # The page is 50 items, not 11 bytes: the same bare server answering
        # as many bytes says what moving them costs on their own.
        references = {"hello": ("bare hyper hello-world, `GET /`", hello + "/"),
                      "bytes": (f"bare hyper, `GET /bytes/{page_bytes}` (the page's size)",
                                f"{hello}/bytes/{page_bytes}")}
        fresh = ("`GET /projects/{id}/items?status=pending&sort=due_date&limit=50` (300 items), "
                 "a page not asked before each time (a random `cursor`: read, not kept)")
        kept = "the same, one page asked again (kept while the project is unchanged)"
        requests = [("anonymous `GET /`", base + "/", None, None),
                    ("`GET /` with a token", base + "/", token, None),
                    ("`GET /tasks/{id}`", f"{base}/tasks/{task}", token, None),
                    (fresh, base + page_path, token, "fresh_pages.lua"),
                    (kept, base + page_path, token, None)]
        # (label, its run, the runs of each reference made just before it)
        runs = []
        for _ in range(args.read_rounds):
            size = wrk(references["bytes"][1], seconds=args.seconds)
            hello_run = wrk(references["hello"][1], seconds=args.seconds)
            runs.append((references["bytes"][0], size, {"hello": hello_run}))
            runs.append((references["hello"][0], hello_run, {}))
            for label, url, auth, script in requests:
                before = {}
                if script or label == kept:
                    before["bytes"] = wrk(references["bytes"][1], seconds=args.seconds)
                before["hello"] = wrk(references["hello"][1], seconds=args.seconds)
                runs.append((label, wrk(url, auth, seconds=args.seconds, script=script), before))

    def row(label, against=None, shown=None):
        mine = [(result, before) for name, result, before in runs if name == label]
        rps = statistics.median(result["rps"] for result, _ in mine)
        p99 = sorted((r for r, _ in mine), key=lambda r: r["rps"])[len(mine) // 2]["p99"]
        errors = sum(result["non_2xx"] for result, _ in mine)
        if against is None:
            return f"| {shown or label} | {rps:.0f} | {p99} | reference | — | {errors} |"
        ratios = [100 * result["rps"] / before[against]["rps"] for result, before in mine]
        each = ", ".join(f"{ratio:.0f}%" for ratio in ratios)
        return (f"| {shown or label} | {rps:.0f} | {p99} | {statistics.median(ratios):.0f}% | "
                f"{each} | {errors} |")

    lines = [f"{args.read_rounds} rounds of {args.seconds} s per run; each request right after its own "
             "reference run, its ratio against that run: the median of the rounds, then each round.", "",
             "| request | req/s (median) | p99 (of that round) | vs reference | each round | non-2xx |",
             "|---|---|---|---|---|---|",
             row(references["hello"][0])]
    lines += [row(label, "hello") for label, *_ in requests]
    lines.append(row(references["bytes"][0], "hello"))
    lines.append(row(fresh, "bytes", "the page not asked before, against the same-size reference"))
    lines.append(row(kept, "bytes", "the page asked again, against the same-size reference"))
    return "Authenticated reads (target: ≥ 40% of the hello-world)", lines


def section_delays(args):
    count = args.delays
    # Every delay must still be pending when memory is read: due well after
    # the last start (at ~1,500 starts per second, with room).
    seconds = max(20.0, count / 1000 * 1.5 + 15)
    settings = {"TASKGATE_MAX_ACTIVE_TASKS_PER_ADMIN": str(count * 2),
                "TASKGATE_MAX_REQUESTS_PER_ADDRESS": "4096", "TASKGATE_MAX_REQUESTS_IN_FLIGHT": "4096"}
    with serve(args.taskgate, PASSWORD, **settings) as (base, server):
        token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
        call(base, "POST", "/tasks", token, {"type": "delay", "seconds": 0})
        time.sleep(1)
        before = rss_kib(server.pid)
        load = subprocess.Popen([os.path.join(args.release, "bench-load"), "delays", base, token,
                                 str(count), str(seconds), "32"], stdout=subprocess.PIPE, text=True)
        # Memory once every delay is started and none is due yet.
        assert load.stdout.readline().strip() == "started"
        peak = rss_kib(server.pid)
        result = json.loads(load.stdout.read())
    per_task = (peak - before) * 1024 / count
    lines = [
        "| figure | value | target |", "|---|---|---|",
        f"| delays started | {count} (32 clients; each due {seconds:.0f} s after its start) | |",
        f"| start rate | {result['starts_per_second']:.0f}/s | ≥ 5,000/s |",
        f"| lateness p50 / p99 / max (of {result['sampled']} sampled) | {result['lateness_ms_p50']:.1f} / "
        f"{result['lateness_ms_p99']:.1f} / {result['lateness_ms_max']:.1f} ms | p99 ≤ 10 ms |",
        f"| RSS per pending delay, once all are started | {per_task:.0f} B (RSS {before // 1024} → {peak // 1024} MiB) | ≤ 2 KB |",
        f"| unfinished in the sample after their due time + 2 s | {result['unfinished_in_sample']} | 0 |",
    ]
    return f"{count} concurrent delay tasks", lines


def section_scripts(args):
    settings = {"TASKGATE_MAX_REQUESTS_PER_ADDRESS": "4096"}
    with serve(args.taskgate, PASSWORD, **settings) as (base, _):
        token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
        load = os.path.join(args.release, "bench-load")
        one = json.loads(subprocess.run([load, "scripts", base, token, "200", "1"], check=True,
                                        capture_output=True, text=True).stdout)
        many = json.loads(subprocess.run([load, "scripts", base, token, "400", "8"], check=True,
                                         capture_output=True, text=True).stdout)
        # The same, told of each end by a WebSocket (as the console is)
        # rather than asking every millisecond.
        one_push = json.loads(subprocess.run([load, "scripts", base, token, "200", "1", "push"], check=True,
                                             capture_output=True, text=True).stdout)
        many_push = json.loads(subprocess.run([load, "scripts", base, token, "400", "8", "push"], check=True,
                                              capture_output=True, text=True).stdout)
    cold, warm = worker_handover(args.taskgate, warm=False), worker_handover(args.taskgate, warm=True)
    lines = [
        "| figure | one at a time (200) | 8 at a time (400) |", "|---|---|---|",
        f"| submit → succeeded p50 | {one['latency_ms_p50']:.1f} ms | {many['latency_ms_p50']:.1f} ms |",
        f"| submit → succeeded p99 | {one['latency_ms_p99']:.1f} ms | {many['latency_ms_p99']:.1f} ms |",
        f"| scripts per second | {one['scripts_per_second']:.0f} | {many['scripts_per_second']:.0f} |",
        f"| told by the WebSocket: submit → succeeded p50 | {one_push['latency_ms_p50']:.1f} ms | "
        f"{many_push['latency_ms_p50']:.1f} ms |",
        f"| told by the WebSocket: submit → succeeded p99 | {one_push['latency_ms_p99']:.1f} ms | "
        f"{many_push['latency_ms_p99']:.1f} ms |",
        f"| told by the WebSocket: scripts per second | {one_push['scripts_per_second']:.0f} | "
        f"{many_push['scripts_per_second']:.0f} |",
        f"| the worker alone, script in → outcome and exit, p50 (200 each) | started for it: {cold:.2f} ms | "
        f"started ahead, waiting: {warm:.2f} ms |",
    ]
    return "A trivial script (`1 + 1`), polled every millisecond, then told by a WebSocket", lines


def worker_handover(binary, warm, runs=200):
    """Median ms from handing `taskgate js-worker` its script to its exit
    with the outcome read, as the runner does it: a worker started for the
    script, or one started 20 ms before and waiting (TASKGATE_JS_WARM_WORKERS)."""
    placeholder = "--task=" + " " * 36
    script = b"0193ab12-cd34-7ef0-8123-456789abcdef\n1 + 1"
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        worker = subprocess.Popen([binary, "js-worker", placeholder], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={"MALLOC_ARENA_MAX": "2"})
        if warm:
            time.sleep(0.02)
            started = time.perf_counter()
        out, _ = worker.communicate(script)
        times.append(time.perf_counter() - started)
        if json.loads(out).get("result") != 2:
            # A build from before workers took their task's id on stdin.
            return float("nan")
    return 1000 * statistics.median(times)


# Filtered pages of the listing section: (what it shows, query). The items'
# spread is bench-load's (`items`): status by turn, 3 in 4 dated over
# 2026-2027, 1 in 10 assigned to the admin.
LISTINGS = [
    ("`status=pending&sort=due_date` (1 in 3)", "status=pending&sort=due_date&limit=50"),
    ("`assignee=me&status=in_progress` (1 in 30)", "assignee=me&status=in_progress&limit=50"),
    ("`due=overdue&sort=-created_at` (about 1 in 4)", "due=overdue&sort=-created_at&limit=50"),
    ("`due=today&status=completed&assignee=none` (a few dozen)",
     "due=today&status=completed&assignee=none&limit=50"),
]


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def section_listing(args):
    """Each store gets the same project of N items (through the API); each
    query is walked page by page (following `next`, one request at a time)
    with bench-load; on DynamoDB the read units of each page are read from
    the server's `taskgate_item_page_read_units` between pages."""
    load = os.path.join(args.release, "bench-load")
    dynamodb = subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "start",
                               args.work + "/ddb-listing"], check=True, capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
    # (store, server settings, seeding clients): one project's changes take
    # its feed's positions one at a time, and on DynamoDB each is a
    # transaction, so more writers than a few only race for the head.
    stores = [("SQLite (embedded)", {}, 32),
              ("DynamoDB Local", {"TASKGATE_STORE": "dynamodb", "TASKGATE_DYNAMODB_ENDPOINT": dynamodb,
                                  "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                                  "AWS_REGION": "us-east-1"}, 8)]
    lines = ["| store | filter (limit 50) | first page p50 / p99 | pages walked | items per page | "
             "walk p50 / p99 / max | read units per page, mean / max |", "|---|---|---|---|---|---|---|"]
    seeding = []
    try:
        for store, extra, writers in stores:
            if ("dynamodb" if "TASKGATE_STORE" in extra else "sqlite") not in args.stores.split(","):
                continue
            metrics_port = free_port()
            # Pages are read from the store every time: the first page is
            # asked again and again, and a kept page would measure memory.
            settings = dict(extra, TASKGATE_MAX_REQUESTS_PER_ADDRESS="4096",
                            TASKGATE_MAX_REQUESTS_IN_FLIGHT="4096",
                            TASKGATE_METRICS_ADDR=f"127.0.0.1:{metrics_port}",
                            TASKGATE_PAGE_CACHE_BYTES="0")
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            with serve(args.taskgate, PASSWORD, **settings) as (base, _):
                token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
                project = call(base, "POST", "/projects", token, {"name": "Listing"})["id"]
                seeded = json.loads(subprocess.run(
                    [load, "items", base, token, project, str(args.items), str(writers)],
                    check=True, stdout=subprocess.PIPE, text=True).stdout)
                seeding.append(f"{store}: {args.items} items created through the API at "
                               f"{seeded['items_per_second']:.0f}/s ({writers} clients; "
                               f"{seeded['retried_after_503']} retried after a 503)")
                for label, query in LISTINGS:
                    path = f"/projects/{project}/items?{query}"
                    walked = json.loads(subprocess.run(
                        [load, "pages", base, token, path, str(args.pages)],
                        check=True, stdout=subprocess.PIPE, text=True).stdout)
                    first = json.loads(subprocess.run(
                        [load, "pages", base, token, path, str(max(20, args.pages // 3)), "first"],
                        check=True, stdout=subprocess.PIPE, text=True).stdout)
                    units = "—"
                    if "TASKGATE_STORE" in extra:
                        per_page, cursor = [], None
                        for _ in range(min(args.pages, 40)):
                            before = metric(urllib.request.urlopen(metrics_url).read().decode(),
                                            "taskgate_item_page_read_units_sum")
                            page = call(base, "GET", path + (f"&cursor={cursor}" if cursor else ""), token)
                            after = metric(urllib.request.urlopen(metrics_url).read().decode(),
                                           "taskgate_item_page_read_units_sum")
                            per_page.append(after - before)
                            cursor = page["next"]
                            if cursor is None:
                                break
                        units = f"{statistics.mean(per_page):.1f} / {max(per_page):.1f}"
                    lines.append(
                        f"| {store} | {label} | {first['latency_ms_p50']:.1f} / {first['latency_ms_p99']:.1f} ms | "
                        f"{walked['requests']} ({walked['walks_to_the_end']} to the end) | "
                        f"{walked['items_per_page']:.1f} | {walked['latency_ms_p50']:.1f} / "
                        f"{walked['latency_ms_p99']:.1f} / {walked['latency_ms_max']:.1f} ms | {units} |")
                    print(lines[-1], flush=True)
    finally:
        subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "stop", args.work + "/ddb-listing"])
    lines += ["", *[f"- {line}" for line in seeding],
              "- Latency is the client's: one request at a time over HTTP, token checked, page "
              "serialised; each walk follows `next` from the first page to the end."]
    return (f"Filtered pages from a project of {args.items} items (target: p99 ≤ 5 ms on SQLite; "
            "read units per page bounded on DynamoDB)", lines)


def section_fanout(args):
    """Every subscriber is held by bench-load (tokio-tungstenite), one task
    per socket on all cores: one asyncio loop (the section's client until
    2026-12-06) spent longer reading 10,000 messages than the server took to
    send them. One server per count, so each starts empty."""
    rows = []
    for subscribers in args.subscribers:
        settings = {"TASKGATE_WS_MAX_CONNECTIONS_PER_USER": str(min(subscribers, 10_000)),
                    "TASKGATE_MAX_REQUESTS_PER_ADDRESS": "65536",
                    "TASKGATE_MAX_REQUESTS_IN_FLIGHT": "65536"}
        with serve(args.taskgate, PASSWORD, **settings) as (base, server):
            token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
            project = call(base, "POST", "/projects", token, {"name": "Fan-out"})["id"]
            item = call(base, "POST", f"/projects/{project}/items", token, {"title": "x"})["id"]
            before = rss_kib(server.pid)
            with PeakRss(server.pid) as peak:
                figures = json.loads(subprocess.run(
                    [os.path.join(args.release, "bench-load"), "fanout", base, token, project, item,
                     str(subscribers), str(args.rounds)],
                    check=True, capture_output=True, text=True).stdout)
        rows.append(
            f"| {subscribers} | {args.rounds} | {figures['connect_seconds']:.1f} s | "
            f"{figures['round_trip_ms_p50']:.1f} / {figures['round_trip_ms_p99']:.1f} | "
            f"{figures['delivery_ms_p50']:.1f} / {figures['delivery_ms_p99']:.1f} / "
            f"{figures['delivery_ms_max']:.1f} | {before / 1024:.0f} → {peak.peak / 1024:.0f} MiB |")
    lines = ["| subscribers | changes | all subscribed in | PATCH round trip p50 / p99 (ms) | "
             "change to last subscriber p50 / p99 / max (ms) | server RSS before → peak |",
             "|---|---|---|---|---|---|", *rows]
    return ("WebSocket fan-out: one project's subscribers, all held by bench-load "
            "(target: p99 ≤ 250 ms at 10,000)", lines)


class PeakRss:
    """Samples a process's RSS every 20 ms while the block runs; `peak` in KiB."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True

    def __enter__(self):
        def sample():
            while self.running:
                self.peak = max(self.peak, rss_kib(self.pid))
                time.sleep(0.02)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.running = False
        self.thread.join()


def timed(command):
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def section_files(args):
    """Rounds, as in the reads section: in each, every transfer of ours runs
    right after the same transfer to the bare server, and its ratio is
    against that run (a reference measured once had been an outlier: 467
    MiB/s, slower than its own synced run). Both servers stay up; each
    round uploads a new file to each."""
    size = args.file_mib * 1024 * 1024
    source = os.path.join(args.work, "bench-file.bin")
    if not os.path.exists(source) or os.path.getsize(source) != size:
        with open(source, "wb") as out, open("/dev/urandom", "rb") as random:
            for _ in range(args.file_mib):
                out.write(random.read(1024 * 1024))
    env = dict(os.environ, BENCH_BLOB=os.path.join(args.work, "bench-blob.bin"))
    hello_server = HelloServer(args.release, env)
    settings = {"TASKGATE_MAX_FILE_BYTES": str(size * 2)}
    rounds = []
    try:
        with hello_server as hello, serve(args.taskgate, PASSWORD, **settings) as (base, server):
            token = call(base, "POST", "/auth", body={"username": "admin", "password": PASSWORD})["token"]
            auth = ["-H", f"authorization: Bearer {token}"]
            hello_pid = hello_server.process.pid
            hello_rss, ours_rss = rss_kib(hello_pid), rss_kib(server.pid)
            for round_ in range(args.file_rounds):
                request = urllib.request.Request(base + "/files", method="POST")
                for name, value in [("authorization", f"Bearer {token}"), ("tus-resumable", "1.0.0"),
                                    ("upload-length", str(size))]:
                    request.add_header(name, value)
                with urllib.request.urlopen(request) as response:
                    location = response.headers["location"]
                # Every PUT writes a new file and keeps it, as every upload
                # does: on this machine's disk, rewriting one file's blocks
                # runs at 2.4 GB/s throughout, while new files slow from
                # 1.8 GB/s to under 400 MB/s after the first 2 GiB (dd).
                blob = f"{hello}/blob/r{round_}"
                with PeakRss(hello_pid) as ref_up:
                    timed(["curl", "-sf", "-T", source, blob + "-first"])
                # An upload's offset is durable when it is answered: the same
                # PUT with an fsync before the answer, to see what that costs.
                put_synced = timed(["curl", "-sf", "-T", source, blob + "-synced?sync"])
                put_again = timed(["curl", "-sf", "-T", source, blob])
                with PeakRss(server.pid) as up:
                    patch = timed(["curl", "-sf", "-X", "PATCH", "-T", source, *auth, "-H",
                                   "tus-resumable: 1.0.0", "-H", "upload-offset: 0", "-H",
                                   "content-type: application/offset+octet-stream", base + location])
                with PeakRss(hello_pid) as ref_down:
                    get = timed(["curl", "-sf", "-o", "/dev/null", blob])
                with PeakRss(server.pid) as down:
                    ours_get = timed(["curl", "-sf", "-o", "/dev/null", *auth, f"{base}{location}/content"])
                rounds.append({"put": put_again, "synced": put_synced, "patch": patch,
                               "get": get, "ours_get": ours_get, "ref_up": ref_up.peak,
                               "ref_down": ref_down.peak, "up": up.peak, "down": down.peak})
    finally:
        for name in glob.glob(env["BENCH_BLOB"] + ".*"):
            os.remove(name)
    mib = args.file_mib

    def rate(key):
        return statistics.median(mib / r[key] for r in rounds)

    def ratios(ours, reference):
        each = [100 * r[reference] / r[ours] for r in rounds]
        return statistics.median(each), ", ".join(f"{x:.0f}%" for x in each)

    up_ratio, up_each = ratios("patch", "put")
    down_ratio, down_each = ratios("ours_get", "get")
    synced_ratio, synced_each = ratios("synced", "put")
    patch_vs_synced, patch_vs_synced_each = ratios("patch", "synced")
    peak = lambda key: max(r[key] for r in rounds) // 1024  # noqa: E731
    lines = [f"{len(rounds)} rounds; in each, our upload runs right after the bare server's PUT "
             "and our download right after its GET; ratios against those runs, the median of the "
             "rounds first, then each round.", "",
             f"| transfer of {mib} MiB | upload MiB/s | download MiB/s | vs reference (up / down) | "
             "each round (up / down) | RSS before → peak up / down (MiB) |",
             "|---|---|---|---|---|---|",
             f"| curl PUT / GET to bench-hello (reference) | {rate('put'):.0f} | {rate('get'):.0f} | "
             f"reference | — | {hello_rss // 1024} → {peak('ref_up')} / {peak('ref_down')} |",
             f"| curl PUT to bench-hello, synced before the answer | {rate('synced'):.0f} | — | "
             f"{synced_ratio:.0f}% / — | {synced_each} | — |",
             f"| taskgate: one tus PATCH / GET …/content | {rate('patch'):.0f} | {rate('ours_get'):.0f} | "
             f"{up_ratio:.0f}% / {down_ratio:.0f}% | {up_each} / {down_each} | "
             f"{ours_rss // 1024} → {peak('up')} / {peak('down')} |",
             f"| the tus PATCH against the synced PUT (both durable when answered) | | | "
             f"{patch_vs_synced:.0f}% / — | {patch_vs_synced_each} | |"]
    return f"Upload and download of {mib} MiB (target: ≥ 50% of the reference, RSS flat)", lines


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """The Lambda Runtime API, as far as a cold start needs: records when the
    function first asks for an invocation, and never gives it one."""
    first_poll = None

    def do_GET(self):
        if "/runtime/invocation/next" in self.path and RuntimeApi.first_poll is None:
            RuntimeApi.first_poll = time.perf_counter()
        time.sleep(5)
        self.send_response(500)
        self.end_headers()

    def do_POST(self):
        self.send_response(202)
        self.end_headers()

    def log_message(self, *_):
        pass


def cold_start(binary, env, runs):
    times = []
    for _ in range(runs):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        RuntimeApi.first_poll = None
        full = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
                    AWS_LAMBDA_FUNCTION_NAME="bench", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
                    AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_GROUP_NAME="bench",
                    AWS_LAMBDA_LOG_STREAM_NAME="bench")
        started = time.perf_counter()
        process = subprocess.Popen([binary], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = started + 20
        while RuntimeApi.first_poll is None and time.perf_counter() < deadline and process.poll() is None:
            time.sleep(0.0005)
        if RuntimeApi.first_poll is not None:
            times.append((RuntimeApi.first_poll - started) * 1000)
        process.kill()
        process.wait()
        server.shutdown()
        server.server_close()
    return statistics.median(times) if times else float("nan"), len(times)


def lambda_environment():
    """What a function's process gets on Lambda, and nothing of this
    machine's environment: Lambda sets its reserved variables (added per run
    by cold_start and section_coldstart), PATH, LANG, TZ and
    LD_LIBRARY_PATH, and no SSL_CERT_FILE or SSL_CERT_DIR, so the SDK finds
    the system's trust store itself. On provided.al2023 (Fedora's layout)
    that is one bundle, /etc/pki/tls/certs/ca-bundle.crt; its directory
    holds only that bundle and its OpenSSL trust-format twin, which rustls
    skips unread. Debian's /etc/ssl/certs also holds every certificate once more
    as a file of its own, so the suite names a trust store laid out as a
    Lambda's (lambda_trust_store) and measures the Debian layout beside."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
            "LD_LIBRARY_PATH": "/lib64:/usr/lib64"}


def lambda_trust_store(work):
    """This machine's CA bundle laid out as on provided.al2023: the bundle
    (SSL_CERT_FILE), and a directory (SSL_CERT_DIR) holding it and its
    trust-format twin, made with `openssl x509 -trustout`."""
    bundle = system_ca_bundle()
    directory = os.path.join(work, "lambda-certs")
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "ca-bundle.crt")
    if not os.path.lexists(link):
        os.symlink(bundle, link)
    with open(bundle) as f:
        certificates = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", f.read(), re.S)
    trusted = [subprocess.run(["openssl", "x509", "-trustout", "-addtrust", "serverAuth"], input=c,
                              capture_output=True, text=True, check=True).stdout for c in certificates]
    with open(os.path.join(directory, "ca-bundle.trust.crt"), "w") as f:
        f.write("".join(trusted))
    return bundle, directory


def system_ca_bundle():
    """This machine's CA bundle: the file OpenSSL trusts by default."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            return os.path.realpath(candidate)
    raise SystemExit("no CA bundle found on this machine")


def section_coldstart(args):
    tools = os.environ.get("TASKGATE_TOOLS_DIR", os.path.expanduser("~/.cache/taskgate-tools"))
    dynamodb = subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "start", args.work + "/ddb"],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    moto = subprocess.run([os.path.join(ROOT, "infra/local/moto-server.sh"), "start", args.work + "/moto"],
                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    try:
        python = os.path.join(tools, "venv/bin/python")
        secret = subprocess.run([python, "-c", f"""
import boto3, time
c = boto3.client('secretsmanager', endpoint_url='{moto}', region_name='us-east-1',
                 aws_access_key_id='test', aws_secret_access_key='test')
arn = c.create_secret(Name='bench-jwt', SecretString='x' * 64)['ARN']
c.get_secret_value(SecretId=arn)
times = []
for _ in range(20):
    t = time.perf_counter(); c.get_secret_value(SecretId=arn); times.append((time.perf_counter() - t) * 1000)
times.sort()
print(arn, times[len(times) // 2])
"""], check=True, capture_output=True, text=True).stdout.split()
        arn, secret_ms = secret[0], float(secret[1])
        env = dict(lambda_environment(), AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                   TASKGATE_DYNAMODB_ENDPOINT=dynamodb, TASKGATE_SECRETSMANAGER_ENDPOINT=moto,
                   TASKGATE_STEPFUNCTIONS_ENDPOINT=moto, TASKGATE_S3_ENDPOINT=moto,
                   TASKGATE_JWT_SECRET_ARN=arn, TASKGATE_FILES_BUCKET="bench-files",
                   TASKGATE_STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:bench",
                   TASKGATE_WS_ENDPOINT=moto)
        # The system's trust store as a Lambda on provided.al2023 finds it
        # (see lambda_environment), and, for comparison, as this machine's
        # own layout gives it.
        machine_trust = dict(env)
        env["SSL_CERT_FILE"], env["SSL_CERT_DIR"] = lambda_trust_store(args.work)
        binaries = [("hello-world `lambda_http` (reference)", "bench-lambda-hello", {}),
                    ("`http-api` (every HTTP function)", "http-api", {}),
                    ("`realtime` ($connect)", "realtime", {"TASKGATE_REALTIME_HANDLER": "connect"}),
                    ("`realtime` (fan-out)", "realtime", {"TASKGATE_REALTIME_HANDLER": "fan-out"}),
                    ("`step-record`", "step-record", {}), ("`step-js`", "step-js", {}),
                    ("`step-export`", "step-export", {}), ("`task-reconciler`", "task-reconciler", {}),
                    ("`upload-reaper`", "upload-reaper", {})]
        lines = ["| binary | exec → first poll (median) | runs | vs reference |", "|---|---|---|---|"]
        reference = None
        for label, name, extra in binaries:
            median, runs = cold_start(os.path.join(args.release, name), dict(env, **extra), args.runs)
            if reference is None:
                reference = median
                lines.append(f"| {label} | {median:.1f} ms | {runs} | reference |")
            else:
                lines.append(f"| {label} | {median:.1f} ms | {runs} | +{median - reference:.1f} ms |")
        median, runs = cold_start(os.path.join(args.release, "http-api"), machine_trust, args.runs)
        lines.append("| `http-api` with this machine's trust store layout (the bundle and every "
                     f"single-certificate file of /etc/ssl/certs) | {median:.1f} ms | {runs} | "
                     f"+{median - reference:.1f} ms |")
        lines.append(f"| a `GetSecretValue` round trip to moto (Python client, median of 20) | "
                     f"{secret_ms:.1f} ms | 20 | the secret read's share |")
    finally:
        subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "stop", args.work + "/ddb"])
        subprocess.run([os.path.join(ROOT, "infra/local/moto-server.sh"), "stop", args.work + "/moto"])
    return ("Lambda cold start, emulated Runtime API (target: ≤ the reference + the secret read + 5 ms)",
            lines)


# Published on-demand prices, us-east-1, the tiers a small deployment is in
# (docs/benchmarks/cost.md says where each was read, and how sure it is).
# Update here; the section recomputes every cost from these and its
# measurements.
PRICES_READ_ON = "2026-12-06"
PRICES = {
    "apigw_http_per_million": (1.00, "API Gateway HTTP API, first 300 million requests a month, metered in 512 KB "
                               "increments", "https://aws.amazon.com/api-gateway/pricing/ (figures as quoted by "
                               "AWS's whitepaper docs.aws.amazon.com/whitepapers/latest/"
                               "best-practices-api-gateway-private-apis-integration/cost-optimization.html)"),
    "lambda_request_per_million": (0.20, "Lambda requests", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_arm_gb_second": (0.0000133334, "Lambda duration, Arm (the template's arm64), first 7.5 billion "
                             "GB-s a month", "https://aws.amazon.com/lambda/pricing/"),
    "dynamodb_write_per_million": (0.625, "DynamoDB on-demand write request units (after the 50% cut of "
                                   "1 November 2024)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "dynamodb_read_per_million": (0.125, "DynamoDB on-demand read request units (after the same cut)",
                                  "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "sfn_standard_per_thousand": (0.025, "Step Functions Standard state transitions",
                                  "https://aws.amazon.com/step-functions/pricing/"),
    "s3_class_a_per_thousand": (0.005, "S3 Standard PUT, COPY, POST, LIST requests", "https://aws.amazon.com/s3/pricing/"),
    "s3_class_b_per_thousand": (0.0004, "S3 Standard GET, HEAD and other requests", "https://aws.amazon.com/s3/pricing/"),
    "s3_storage_gb_month": (0.023, "S3 Standard storage, first 50 TB a month", "https://aws.amazon.com/s3/pricing/"),
    "transfer_out_per_gb": (0.09, "data transfer out to the internet, first 10 TB a month (after 100 GB free)",
                            "https://aws.amazon.com/s3/pricing/"),
    "logs_ingest_per_gb": (0.50, "CloudWatch Logs ingestion, Standard (Lambda logs: the first tier)",
                           "https://aws.amazon.com/cloudwatch/pricing/"),
}
S3_CLASS_A = {"PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload",
              "CompleteMultipartUpload", "ListParts", "ListObjectsV2", "ListObjects", "ListMultipartUploads"}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
# The operation mix priced per million API calls (each row is also priced
# on its own, for other mixes): per 100 calls.
API_MIX = [("login", 2), ("task-get", 40), ("item-page", 20), ("item-patch", 15), ("item-create", 10),
           ("task-start-delay", 8), ("task-start-js", 2), ("project-create", 1), ("file-content", 2)]
# The template's access log line (AccessLogSettings.Format), filled in per request.
ACCESS_LOG = re.compile(r"Format: '(.*)'")


def price(name):
    return PRICES[name][0]


def template_yaml():
    """infra/template.yaml with its intrinsic functions kept as {tag: value}."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {suffix: value}

    Loader.add_multi_constructor("!", tagged)
    with open(os.path.join(ROOT, "infra/template.yaml")) as f:
        return yaml.load(f, Loader=Loader)


def resolve(value, names, parameters):
    """A template value with !Ref, !Sub and !GetAtt resolved (None if it
    cannot be: the function does not get that variable)."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        (tag, arg), = value.items()
        if tag == "Ref":
            return names.get(arg) or (str(parameters[arg]["Default"]) if arg in parameters else None)
        if tag == "GetAtt":
            return names.get(arg if isinstance(arg, str) else ".".join(arg))
        if tag == "Sub" and isinstance(arg, str):
            out = arg
            for found in re.findall(r"\$\{([^}]+)\}", arg):
                got = names.get(found) or (str(parameters[found]["Default"]) if found in parameters else None)
                if got is None:
                    return None
                out = out.replace("${" + found + "}", got)
            return out
    return None


def section_cost(args):
    """Every figure of docs/benchmarks/cost.md, measured: the functions as
    their release binaries under an emulated Runtime API (tests/bench/
    aws_emulation.py), each with its own counting proxies in front of
    DynamoDB Local and moto; the real state machine on moto's Step
    Functions, its Lambda tasks forwarded to the step binaries."""
    import boto3
    from aws_emulation import (CountingProxy, HttpAnswer, InvokeEndpoint, LambdaFunction, Ledger,
                               api_gateway_event)

    work = os.path.join(args.work, "cost")
    os.makedirs(work, exist_ok=True)
    dynamodb = subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "start", work + "/ddb"],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    moto = subprocess.run([os.path.join(ROOT, "infra/local/moto-server.sh"), "start", work + "/moto"],
                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    functions, proxies, invoke_endpoint = {}, [], None
    try:
        template = template_yaml()
        parameters = template["Parameters"]
        resources = template["Resources"]
        globals_ = template["Globals"]["Function"]
        stack = f"cost{uuid.uuid4().hex[:8]}"
        tables = {"UsersTable": "users", "TokensTable": "tokens", "TaskEventsTable": "task-events",
                  "SecurityTable": "security", "ProjectsTable": "projects", "ProjectLogTable": "project-log",
                  "ConnectionsTable": "connections", "FilesTable": "files"}
        names = {logical: f"{stack}-{suffix}" for logical, suffix in tables.items()}
        aws = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        s3 = boto3.client("s3", endpoint_url=moto, **aws)
        bucket = f"{stack}-files"
        s3.create_bucket(Bucket=bucket)
        secret = boto3.client("secretsmanager", endpoint_url=moto, **aws).create_secret(
            Name=f"{stack}-jwt", SecretString=uuid.uuid4().hex * 2)["ARN"]
        machine_name = f"{stack}-tasks"
        machine_arn = f"arn:aws:states:us-east-1:123456789012:stateMachine:{machine_name}"
        names.update({"FilesBucket": bucket, "JwtSecret": secret, "WebSocketApi": "wsapi0test",
                      "AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws",
                      "AWS::AccountId": "123456789012", "AWS::StackName": stack})

        # Tables and the first admin, by the CLI (as for a deployment).
        store_env = dict(os.environ, TASKGATE_STORE="dynamodb", TASKGATE_DYNAMODB_ENDPOINT=dynamodb,
                         TASKGATE_ADMIN_PASSWORD=PASSWORD, AWS_ACCESS_KEY_ID="test",
                         AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                         **{f"TASKGATE_{logical[:-5].upper()}_TABLE".replace("TASKEVENTS", "TASK_EVENTS")
                            .replace("PROJECTLOG", "PROJECT_LOG"): name
                            for logical, name in names.items() if logical in tables})
        for command in ("create-tables", "create-admin"):
            subprocess.run([args.taskgate, command], env=store_env, check=True, capture_output=True)

        # Each function: the template's environment and memory, its AWS
        # endpoints pointed at proxies of its own.
        def start(logical, binary, ledger_name=None):
            properties = resources[logical]["Properties"]
            variables = dict(globals_["Environment"]["Variables"])
            variables.update((properties.get("Environment") or {}).get("Variables") or {})
            env = dict(lambda_environment(), AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
                       AWS_SECRET_ACCESS_KEY="test")
            for name, value in variables.items():
                got = resolve(value, names, parameters)
                if got is not None:
                    env[name] = got
            ledger = Ledger()
            ddb_proxy, moto_proxy = CountingProxy(dynamodb, ledger), CountingProxy(moto, ledger)
            proxies.extend([ddb_proxy, moto_proxy])
            env.update(TASKGATE_DYNAMODB_ENDPOINT=ddb_proxy.endpoint, TASKGATE_S3_ENDPOINT=moto_proxy.endpoint,
                       TASKGATE_STEPFUNCTIONS_ENDPOINT=moto_proxy.endpoint,
                       TASKGATE_SECRETSMANAGER_ENDPOINT=moto_proxy.endpoint,
                       TASKGATE_WS_ENDPOINT=moto_proxy.endpoint + "/live",
                       TASKGATE_STATE_MACHINE_ARN=machine_arn)
            memory = int(properties.get("MemorySize", globals_["MemorySize"]))
            name = f"{stack}-{logical}"
            function = LambdaFunction(name, os.path.join(args.release, binary), env,
                                      os.path.join(work, f"{logical}.log"), memory)
            function.ledger, function.logical = ledger, logical
            functions[ledger_name or logical] = function
            return function

        http_fn = start("TasksGetFunction", "http-api", "http")
        steps = {"RecordFunctionArn": start("StepRecordFunction", "step-record"),
                 "JsFunctionArn": start("StepJsFunction", "step-js"),
                 "ExportFunctionArn": start("StepExportFunction", "step-export")}
        reconciler = start("TaskReconcilerFunction", "task-reconciler")

        # The state machine on moto, its Lambda tasks forwarded to the steps.
        invoke_endpoint = InvokeEndpoint({f.name: f for f in steps.values()})
        iam = boto3.client("iam", endpoint_url=moto, **aws)
        role = iam.create_role(RoleName=f"{stack}-states", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": [
                "lambda.amazonaws.com", "states.amazonaws.com"]}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        lam = boto3.client("lambda", endpoint_url=moto, **aws)
        definition = open(os.path.join(ROOT, "infra/statemachine/task.asl.json")).read()
        targets = {}
        for placeholder, function in steps.items():
            arn = lam.create_function(FunctionName=function.name, Runtime="provided.al2023", Role=role,
                                      Handler="bootstrap", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18}
                                      )["FunctionArn"]
            definition = definition.replace("${" + placeholder + "}", arn)
            targets[function.name] = f"{invoke_endpoint.endpoint}/invoke/{function.name}"
        urllib.request.urlopen(urllib.request.Request(moto + "/_taskgate/lambda-targets", method="POST",
                                                      data=json.dumps(targets).encode()))
        sfn = boto3.client("stepfunctions", endpoint_url=moto, **aws)
        sfn.create_state_machine(name=machine_name, definition=definition, roleArn=role, type="STANDARD")

        access_format = ACCESS_LOG.search(open(os.path.join(ROOT, "infra/template.yaml")).read()).group(1)

        def http(method, path, route, headers=None, body=None, binary=False, label=None):
            """One request through API Gateway to the HTTP function; the
            answer and what it cost (its row)."""
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            head = dict(headers or {})
            if data is not None and not binary:
                head.setdefault("content-type", "application/json")
            before = http_fn.ledger.snapshot()
            kind, answer = http_fn.invoke(api_gateway_event(method, path, route, head, data, binary), label)
            assert kind == "response", answer
            answer = HttpAnswer(json.loads(answer))
            requests, units = http_fn.ledger.since(before)
            _, duration, cpu, log_bytes = http_fn.invocations[-1]
            access = (access_format.replace("$context.requestId", str(uuid.uuid4()))
                      .replace("$context.identity.sourceIp", "203.0.113.10").replace("$context.httpMethod", method)
                      .replace("$context.path", path.split("?")[0]).replace("$context.status", str(answer.status))
                      .replace("$context.responseLatency", str(round(duration)))
                      .replace("$context.integrationErrorMessage", ""))
            size = max(len(data or b""), len(answer.body))
            row = {"label": label, "api_calls": 1, "api_metered": max(1, -(-size // (512 * 1024))),
                   "invocations": [(http_fn.memory_mb, duration, cpu)], "requests": requests, "units": units,
                   "log_bytes": log_bytes + len(access) + 1, "transitions": 0}
            return answer, row

        token = None

        def authed(method, path, route, body=None, label=None, headers=None, binary=False):
            head = {"authorization": f"Bearer {token}", **(headers or {})}
            return http(method, path, route, head, body, binary, label)

        rows = {}
        reps = args.cost_reps

        def measure(label, run):
            """Runs `run` (which returns a row) `reps` times: the row of the
            median duration, units and requests averaged."""
            got = [run() for _ in range(reps)]
            rows[label] = merge(got, len(got))
            return got

        login = {"username": "admin", "password": PASSWORD}
        answer, _ = http("POST", "/auth", "/auth", body=login, label="login")
        token = answer.json()["token"]
        measure("login", lambda: http("POST", "/auth", "/auth", body=login, label="login")[1])
        project = authed("POST", "/projects", "/projects", {"name": "Cost"})[0].json()["id"]
        measure("project-create", lambda: authed("POST", "/projects", "/projects", {"name": "Cost p"},
                                                 "project-create")[1])
        items_route = "/projects/{id}/items"
        for i in range(args.cost_items):
            authed("POST", f"/projects/{project}/items", items_route,
                   {"title": f"item {i}", "status": ["pending", "in_progress", "completed"][i % 3],
                    "due_date": f"2027-01-{1 + i % 28:02d}"})
        measure("item-create", lambda: authed("POST", f"/projects/{project}/items", items_route,
                                              {"title": "a new item", "status": "pending",
                                               "due_date": "2027-02-01"}, "item-create")[1])
        item = authed("POST", f"/projects/{project}/items", items_route, {"title": "patched"})[0].json()["id"]
        counter = iter(range(10 ** 6))
        measure("item-patch", lambda: authed("PATCH", f"/projects/{project}/items/{item}",
                                             "/projects/{id}/items/{item_id}",
                                             {"title": f"patched {next(counter)}"}, "item-patch")[1])
        page = f"/projects/{project}/items?status=pending&sort=due_date&limit=50"
        measure("item-page", lambda: authed("GET", page, items_route, label="item-page")[1])

        # Tasks: the start request, then the execution to its end, the
        # steps it invoked and the reconciler EventBridge calls for it.
        def run_task(kind, body):
            start_answer, start_row = authed("POST", "/tasks", "/tasks", body, f"task-start-{kind}")
            assert start_answer.status == 202, (start_answer.status, start_answer.body)
            task = start_answer.json()["id"]
            marks = {f: (f.ledger.snapshot(), len(f.invocations)) for f in steps.values()}
            execution = f"{machine_arn.replace(':stateMachine:', ':execution:')}:{task}"
            deadline = time.time() + 120
            while True:
                described = sfn.describe_execution(executionArn=execution)
                if described["status"] != "RUNNING":
                    break
                if time.time() > deadline:
                    raise SystemExit(f"the {kind} execution did not end within 120 s")
                time.sleep(0.2)
            history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
            entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
            rec_mark = (reconciler.ledger.snapshot(), len(reconciler.invocations))
            reconciler.invoke({"version": "0", "id": str(uuid.uuid4()), "source": "aws.states",
                               "detail-type": "Step Functions Execution Status Change",
                               "account": "123456789012", "region": "us-east-1", "resources": [execution],
                               "detail": {"executionArn": execution, "stateMachineArn": machine_arn,
                                          "name": task, "status": described["status"]}}, "reconciler")
            life = {"label": f"{kind} task", "api_calls": 0, "api_metered": 0, "invocations": [],
                    "requests": {}, "units": {}, "log_bytes": 0, "transitions": entered,
                    "status": described["status"]}
            for function, (mark, count) in [(f, marks[f]) for f in steps.values()] + [(reconciler, rec_mark)]:
                requests, units = function.ledger.since(mark)
                add(life["requests"], requests)
                add(life["units"], units)
                for _, duration, cpu, log_bytes in function.invocations[count:]:
                    life["invocations"].append((function.memory_mb, duration, cpu))
                    life["log_bytes"] += log_bytes
            outcome = authed("GET", f"/tasks/{task}", "/tasks/{id}")[0].json()
            life["outcome"] = outcome.get("status")
            return task, start_row, life

        kinds = [("delay", {"type": "delay", "seconds": 1}), ("js", {"type": "js", "code": "1 + 1"}),
                 ("export", {"type": "export", "project": project, "format": "csv"})]
        task_rows = {}
        finished_task = None
        for kind, body in kinds:
            runs = [run_task(kind, body) for _ in range(reps)]
            finished_task = finished_task or runs[0][0]
            rows[f"task-start-{kind}"] = merge([r[1] for r in runs], len(runs))
            task_rows[kind] = merge([r[2] for r in runs], len(runs))
            task_rows[kind]["outcomes"] = sorted({r[2]["outcome"] for r in runs})
        measure("task-get", lambda: authed("GET", f"/tasks/{finished_task}", "/tasks/{id}", label="task-get")[1])

        # A file: tus creation, PATCHes of the largest chunk a Lambda takes,
        # and a download (the 307 and the presigned GET).
        chunk = int(globals_["Environment"]["Variables"]["TASKGATE_MAX_PATCH_BYTES"])
        size = args.cost_file_mib * 1024 * 1024
        payload = os.urandom(size)
        upload_rows = []
        created, row = authed("POST", "/files", "/files", label="file-create",
                              headers={"tus-resumable": "1.0.0", "upload-length": str(size)})
        assert created.status == 201, (created.status, created.body)
        location = created.headers["location"]
        upload_rows.append(row)
        for offset in range(0, size, chunk):
            answer, row = authed("PATCH", location, "/files/{id}", payload[offset:offset + chunk],
                                 "file-patch", binary=True,
                                 headers={"tus-resumable": "1.0.0", "upload-offset": str(offset),
                                          "content-type": "application/offset+octet-stream"})
            assert answer.status == 204, (answer.status, answer.body)
            upload_rows.append(row)
        upload = merge(upload_rows, 1)
        upload["label"] = f"upload of {args.cost_file_mib} MiB"

        def download():
            answer, row = authed("GET", f"{location}/content", "/files/{id}/content", label="file-content")
            assert answer.status == 307, (answer.status, answer.body)
            before = http_fn.ledger.snapshot()
            with urllib.request.urlopen(answer.headers["location"]) as got:
                fetched = len(got.read())
            assert fetched == size, (fetched, size)
            requests, units = http_fn.ledger.since(before)
            add(row["requests"], requests)
            return row
        measure("file-content", download)
    finally:
        for function in functions.values():
            function.stop()
        for proxy in proxies:
            proxy.close()
        if invoke_endpoint:
            invoke_endpoint.close()
        subprocess.run([os.path.join(ROOT, "infra/local/dynamodb-local.sh"), "stop", work + "/ddb"])
        subprocess.run([os.path.join(ROOT, "infra/local/moto-server.sh"), "stop", work + "/moto"])
    return cost_tables(args, rows, task_rows, upload, size)


def add(into, more):
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def merge(rows, divide):
    """Rows summed, then divided by `divide` (1: a total; the number of
    runs: a mean). Invocations are kept whole (medians are taken later)."""
    out = {"label": rows[0]["label"], "api_calls": 0, "api_metered": 0, "invocations": [], "requests": {},
           "units": {}, "log_bytes": 0, "transitions": 0, "runs": divide}
    for row in rows:
        out["api_calls"] += row["api_calls"]
        out["api_metered"] += row["api_metered"]
        out["invocations"] += row["invocations"]
        add(out["requests"], row["requests"])
        add(out["units"], row["units"])
        out["log_bytes"] += row["log_bytes"]
        out["transitions"] += row["transitions"]
    for key in ("api_calls", "api_metered", "log_bytes", "transitions"):
        out[key] /= divide
    out["requests"] = {k: v / divide for k, v in out["requests"].items()}
    out["units"] = {k: v / divide for k, v in out["units"].items()}
    return out


def costs(row, cpu_only=False):
    """What one row costs, in dollars, by component (for one operation, or
    the whole of a total row). `cpu_only`: Lambda billed for the CPU time
    the process used instead of the wall-clock time (the floor: here every
    call waits on DynamoDB Local, far slower than DynamoDB)."""
    runs = row["runs"]
    gb_seconds = sum(memory / 1024 * math.ceil(max(cpu if cpu_only else duration, 1)) / 1000
                     for memory, duration, cpu in row["invocations"])
    reads = sum(v for (kind, _), v in row["units"].items() if kind == "read")
    writes = sum(v for (kind, _), v in row["units"].items() if kind == "write")
    s3_a = sum(v for (service, op), v in row["requests"].items() if service == "s3" and op in S3_CLASS_A)
    s3_b = sum(v for (service, op), v in row["requests"].items()
               if service == "s3" and op not in S3_CLASS_A and op not in S3_FREE)
    return {
        "API Gateway": row["api_metered"] * price("apigw_http_per_million") / 1e6,
        "Lambda requests": len(row["invocations"]) / runs * price("lambda_request_per_million") / 1e6,
        "Lambda duration": gb_seconds / runs * price("lambda_arm_gb_second"),
        "DynamoDB reads": reads * price("dynamodb_read_per_million") / 1e6,
        "DynamoDB writes": writes * price("dynamodb_write_per_million") / 1e6,
        "Step Functions": row["transitions"] * price("sfn_standard_per_thousand") / 1e3,
        "S3 requests": s3_a * price("s3_class_a_per_thousand") / 1e3 + s3_b * price("s3_class_b_per_thousand") / 1e3,
        "CloudWatch Logs": row["log_bytes"] / 1e9 * price("logs_ingest_per_gb"),
    }


def money(value):
    return f"${value:,.2f}" if value >= 0.995 else (f"${value:.3f}" if value >= 0.0095 else f"${value:.4f}")


def cost_tables(args, rows, task_rows, upload, size):
    components = list(costs(next(iter(rows.values()))).keys())
    lines = [f"Prices: us-east-1 on-demand, read {PRICES_READ_ON} (sources in docs/benchmarks/cost.md); "
             f"{args.cost_reps} runs of each operation; Lambda on this machine's x86 cores against DynamoDB "
             "Local and moto (durations are this machine's, not Graviton's against DynamoDB).", "",
             "#### What each API operation consumed (mean per call; duration: median)", "",
             "| operation | Lambda duration (CPU) | memory | DynamoDB RRU / WRU (where) | other AWS calls | "
             "log bytes |", "|---|---|---|---|---|---|"]

    def where(units):
        parts = {}
        for (kind, place), value in units.items():
            place = place.split("-", 1)[-1]  # without the stack's name
            parts.setdefault(place, [0.0, 0.0])[0 if kind == "read" else 1] += value
        return ", ".join(f"{p} {r:g}/{w:g}" for p, (r, w) in sorted(parts.items()))

    def calls(requests, skip_dynamodb=True):
        return ", ".join(f"{op} {n:g}" for (service, op), n in sorted(requests.items())
                         if not (skip_dynamodb and service == "dynamodb")) or "—"

    def duration(row):
        if not row["invocations"]:
            return "—"
        return (f"{statistics.median(d for _, d, _ in row['invocations']):.1f} ms "
                f"({statistics.median(c for _, _, c in row['invocations']):.0f} ms)")

    def units_of(row, kind):
        return sum(v for (k, _), v in row["units"].items() if k == kind)

    for label, row in rows.items():
        round_trips = sum(n for (service, _), n in row["requests"].items() if service == "dynamodb")
        lines.append(f"| {label} | {duration(row)} | {row['invocations'][0][0]} MB | "
                     f"{units_of(row, 'read'):g} / {units_of(row, 'write'):g} in {round_trips:g} calls "
                     f"({where(row['units'])}) | "
                     f"{calls(row['requests'])} | {row['log_bytes']:.0f} |")
    lines += ["", "#### Per million calls of each operation, by component", "",
              "| operation | " + " | ".join(components) + " | total |", "|---" * (len(components) + 2) + "|"]
    per_million = {}
    for label, row in rows.items():
        each = {k: v * 1e6 for k, v in costs(row).items()}
        per_million[label] = each
        lines.append(f"| {label} | " + " | ".join(money(v) for v in each.values()) +
                     f" | **{money(sum(each.values()))}** |")
    total = sum(weight for _, weight in API_MIX)
    mix = {k: sum(per_million[label][k] * weight / total for label, weight in API_MIX) for k in components}
    mix_total = sum(mix.values())
    lines += ["", f"#### Per million API calls of the mix ({', '.join(f'{l} {w}%' for l, w in API_MIX)})", "",
              "| component | cost | share |", "|---|---|---|"]
    for k, v in sorted(mix.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {money(v)} | {100 * v / mix_total:.0f}% |")
    lines.append(f"| **total** | **{money(mix_total)}** | |")
    floor = sum(costs(rows[label], cpu_only=True)["Lambda duration"] * 1e6 * weight / total
                for label, weight in API_MIX)
    lines += ["", f"Lambda duration billed for the functions' CPU time alone instead of their wall-clock "
              f"time (every call here waits on DynamoDB Local): {money(floor)} instead of "
              f"{money(mix['Lambda duration'])}, a total of {money(mix_total - mix['Lambda duration'] + floor)}."]

    lines += ["", "#### Per thousand tasks of each kind (the start request, the execution, its steps, "
              "the reconciler's event)", "",
              "| kind | state transitions (StateEntered) | Lambda invocations (median duration) | "
              "DynamoDB RRU / WRU | other AWS calls | " + " | ".join(components) + " | total |",
              "|---" * (len(components) + 6) + "|"]
    for kind, life in task_rows.items():
        start = rows[f"task-start-{kind}"]
        each = {k: (costs(start)[k] + costs(life)[k]) * 1e3 for k in components}
        invocations = len(life["invocations"]) / life["runs"]
        lines.append(
            f"| {kind} ({', '.join(life['outcomes'])}) | {life['transitions']:g} | 1 + {invocations:g} ("
            f"{statistics.median(d for _, d, _ in life['invocations']):.1f} ms) | "
            f"{units_of(start, 'read') + units_of(life, 'read'):g} / "
            f"{units_of(start, 'write') + units_of(life, 'write'):g} | {calls(life['requests'])} | " +
            " | ".join(money(v) for v in each.values()) + f" | **{money(sum(each.values()))}** |")

    gib = size / 2 ** 30
    up = {k: v / gib for k, v in costs(upload).items()}
    down = {k: v * 2 ** 30 / size for k, v in costs(rows["file-content"]).items()}
    storage = price("s3_storage_gb_month") * 2 ** 30 / 1e9
    transfer = price("transfer_out_per_gb") * 2 ** 30 / 1e9
    lines += ["", f"#### Per GiB uploaded (measured on {size // 2 ** 20} MiB: one tus creation and "
              f"{len(upload['invocations']) - 1} PATCHes) and downloaded", "",
              "| | " + " | ".join(components) + " | total | besides |", "|---" * (len(components) + 3) + "|",
              "| upload, per GiB | " + " | ".join(money(v) for v in up.values()) +
              f" | **{money(sum(up.values()))}** | storage {money(storage)} per month kept |",
              f"| download, per GiB (one `GET …/content` per {size // 2 ** 20} MiB) | " +
              " | ".join(money(v) for v in down.values()) +
              f" | **{money(sum(down.values()))}** | transfer out {money(transfer)} |",
              "", f"Upload: {calls(upload['requests'])}; DynamoDB {units_of(upload, 'read'):g} RRU / "
              f"{units_of(upload, 'write'):g} WRU ({where(upload['units'])}); Lambda "
              f"{len(upload['invocations'])} invocations, median {duration(upload)}; API Gateway metered "
              f"{upload['api_metered']:g} requests (512 KB each) for {upload['api_calls']:g} calls."]
    return "What it costs on AWS (measured operations at published prices)", lines


SECTIONS = {"reads": section_reads, "delays": section_delays, "scripts": section_scripts,
            "listing": section_listing, "fanout": section_fanout, "files": section_files, "coldstart": section_coldstart,
            "cost": section_cost}


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), commit {commit}, release build"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--release", required=True, help="the release target directory")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per run (reads)")
    parser.add_argument("--read-rounds", type=int, default=3, help="rounds of the reads section")
    parser.add_argument("--delays", type=int, default=10000)
    parser.add_argument("--items", type=int, default=100000, help="items in the listing's project")
    parser.add_argument("--pages", type=int, default=300, help="pages read per listing query")
    parser.add_argument("--stores", default="sqlite,dynamodb", help="the listing section's stores")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--subscribers", type=lambda v: [int(n) for n in v.split(",")],
                        default=[1000, 10000], help="fan-out sizes, e.g. 1000,10000")
    parser.add_argument("--runs", type=int, default=5, help="cold starts per binary")
    parser.add_argument("--file-mib", type=int, default=1024, help="the transferred file's size")
    parser.add_argument("--file-rounds", type=int, default=3, help="rounds of the files section")
    parser.add_argument("--cost-reps", type=int, default=5, help="runs of each operation (cost)")
    parser.add_argument("--cost-items", type=int, default=60, help="items in the cost section's project")
    parser.add_argument("--cost-file-mib", type=int, default=64, help="the cost section's upload size")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks/suite-results.md"))
    parser.add_argument("--work", default="/tmp/taskgate-bench")
    parser.add_argument("--taskgate", help="the taskgate binary (default: the release directory's)")
    parser.add_argument("--label", default="", help="what this run is, for the results' heading")
    args = parser.parse_args()
    args.taskgate = args.taskgate or os.path.join(args.release, "taskgate")
    os.makedirs(args.work, exist_ok=True)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    label = f": {args.label}" if args.label else ""
    parts = [f"## Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{label}",
             "", machine(), ""]
    for name in chosen:
        print(f"== {name}", flush=True)
        title, lines = SECTIONS[name](args)
        parts += [f"### {title}", "", *lines, ""]
        print("\n".join(lines), flush=True)
    with open(args.out, "a") as out:
        out.write("\n".join(parts) + "\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
