"""Closed-loop HTTP load generator, run as its own process pinned to one CPU.

    python -m bench.loadgen --url URL --file IMAGE --concurrency 8 --duration 10

Each of `--concurrency` threads sends one request, waits for the reply and
sends the next, over its own keep-alive connection. The multipart body is
encoded once, so the client spends its CPU on HTTP and not on re-encoding.
Prints one JSON object: the latencies (ms) of requests that started after the
warm-up and finished before the deadline, the error count, the measured
window and the CPU seconds this process used.
"""

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import requests


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the load generator's command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True, help="endpoint to POST to (loopback only)")
    parser.add_argument("--file", type=Path, required=True, help="image to upload")
    parser.add_argument("--field", default="file", help="multipart field name")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=100_000,
                        help="stop after this many requests in total")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU number to pin this process to (default: not pinned)")
    parser.add_argument("--request-id-prefix", default="bench",
                        help="X-Request-ID prefix, to find these requests in the server log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one load phase and print its results as JSON on stdout."""
    args = parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        print(f"loadgen: error: {args.url} is not a loopback URL", file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    prepared = requests.Request(
        "POST", args.url,
        files={args.field: (args.file.name, args.file.read_bytes(), "application/octet-stream")},
    ).prepare()
    body, content_type = prepared.body, prepared.headers["Content-Type"]

    lock = threading.Lock()
    samples: list[tuple[float, float]] = []
    counters = {"sent": 0, "errors": 0}
    error_examples: list[str] = []
    started = time.perf_counter()
    measure_from = started + args.warmup
    deadline = measure_from + args.duration
    cpu_started = os.times()

    def worker(index: int) -> None:
        session = requests.Session()
        number = 0
        while time.perf_counter() < deadline:
            with lock:
                if counters["sent"] >= args.max_requests:
                    break
                counters["sent"] += 1
            number += 1
            headers = {
                "Content-Type": content_type,
                "X-Request-ID": f"{args.request_id_prefix}-{index}-{number}",
            }
            sent = time.perf_counter()
            try:
                response = session.post(args.url, data=body, headers=headers,
                                        timeout=args.timeout)
                ok = response.status_code == 200
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as error:
                ok, failure = False, f"{type(error).__name__}: {error}"
            finished = time.perf_counter()
            with lock:
                if not ok:
                    counters["errors"] += 1
                    if len(error_examples) < 3:
                        error_examples.append(failure)
                elif sent >= measure_from and finished <= deadline:
                    samples.append((sent, finished))
        session.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.warmup + args.duration + args.timeout + 10)

    cpu_finished = os.times()
    window = min(time.perf_counter(), deadline) - measure_from
    result = {
        "concurrency": args.concurrency,
        "latencies_ms": [(end - begin) * 1000.0 for begin, end in samples],
        "completed": len(samples),
        "window_s": window,
        "throughput_rps": len(samples) / window if window > 0 else 0.0,
        "errors": counters["errors"],
        "error_examples": error_examples,
        "loadgen_cpu_s": (cpu_finished.user - cpu_started.user)
        + (cpu_finished.system - cpu_started.system),
        "pinned_cpu": args.cpu,
    }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
