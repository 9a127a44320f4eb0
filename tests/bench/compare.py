#!/usr/bin/env python3
"""Two or more builds of taskgate on one read, in the same minutes.

    tests/bench/compare.py --release "$CARGO_TARGET_DIR/release" \\
        --label "token cache" /tmp/taskgate-before /tmp/taskgate-after

This machine's throughput moves by a third from one minute to the next, so
a change worth a few per cent cannot be told from two runs of the suite.
Here every build is started at once (embedded store, as the suite's reads
section starts it), and each round runs the hello-world reference and then
every build on the same request, one after the other, the order reversed
every other round. Each figure is the build's req/s against the reference
of its own round. The table is appended to docs/benchmarks/suite-results.md
(`--out`), like the suite's.
"""
import argparse
import contextlib
import datetime
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import suite  # noqa: E402
from local_server import call, serve  # noqa: E402

REQUESTS = {
    "task": "`GET /tasks/{id}`",
    "root": "`GET /` with a token",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builds", nargs="+", help="taskgate binaries to compare")
    parser.add_argument("--release", required=True,
                        help="the release target directory (for bench-hello)")
    parser.add_argument("--request", choices=REQUESTS, default="task")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per run")
    parser.add_argument("--label", default="", help="what is compared, for the heading")
    parser.add_argument("--out", default=os.path.join(suite.ROOT, "docs/benchmarks/suite-results.md"))
    args = parser.parse_args()
    ratios = {build: [] for build in args.builds}
    rates = {build: [] for build in args.builds}
    with contextlib.ExitStack() as stack:
        hello = stack.enter_context(suite.HelloServer(args.release))
        targets = []
        for build in args.builds:
            base, _ = stack.enter_context(serve(build, suite.PASSWORD, **suite.UNLIMITED))
            token = call(base, "POST", "/auth",
                         body={"username": "admin", "password": suite.PASSWORD})["token"]
            url = base + "/"
            if args.request == "task":
                task = call(base, "POST", "/tasks", token, {"type": "delay", "seconds": 0})["id"]
                url = f"{base}/tasks/{task}"
            targets.append((build, url, token))
        for round_ in range(args.rounds):
            reference = suite.wrk(hello + "/", seconds=args.seconds)["rps"]
            for build, url, token in targets if round_ % 2 == 0 else targets[::-1]:
                result = suite.wrk(url, token, seconds=args.seconds)
                if result["non_2xx"]:
                    sys.exit(f"{build}: {result['non_2xx']} answers were not 2xx")
                rates[build].append(result["rps"])
                ratios[build].append(100 * result["rps"] / reference)
                print(f"round {round_}: {build} {result['rps']:.0f} req/s, "
                      f"{ratios[build][-1]:.1f}% of {reference:.0f}", flush=True)
    label = f": {args.label}" if args.label else ""
    lines = [f"## Comparison of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{label}",
             "", f"{suite.machine()}; {REQUESTS[args.request]}, {args.rounds} rounds of "
             f"{args.seconds} s, builds alternating (tests/bench/compare.py)", "",
             "| build | median req/s | median vs the round's hello-world | each round |",
             "|---|---|---|---|"]
    for build in args.builds:
        each = ", ".join(f"{r:.0f}%" for r in ratios[build])
        lines.append(f"| `{build}` | {statistics.median(rates[build]):.0f} | "
                     f"{statistics.median(ratios[build]):.1f}% | {each} |")
    print("\n".join(lines))
    with open(args.out, "a") as out:
        out.write("\n".join(lines) + "\n\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
