"""A sustained load on the gateway under gunicorn and the real local model server.

16 client threads send the sample images for LOAD_SECONDS (default 60) over
loopback. Every reply must be 200 with the right labels, the gunicorn workers
must stay the same processes, and their summed resident memory must not grow
after the warm-up. Run with `pytest -s` to see the request rate, latency
percentiles and memory figures. `LOAD_SECONDS=20` shortens the run, and the
gateway's own RPS_GATEWAY_WORKERS and RPS_GATEWAY_THREADS variables pass
through, so the same test compares worker layouts.
"""

import os
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SAMPLE_LABELS, SAMPLES, start_gateway, stop
from tests.test_gateway_faults import resident_mb, worker_pids

CLIENTS = 16
DURATION_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
# Memory is first measured after this share of the run, at most 10 s, so that
# imports, gRPC channels and allocator arenas are in place before the baseline.
WARMUP_SECONDS = min(10.0, DURATION_SECONDS / 6)
# Allowed growth of the workers' summed VmRSS between warm-up and end, in MB.
MAX_RSS_GROWTH_MB = 15.0
# Client-side timeout of one request, in seconds: a request still open then counts as failed.
HTTP_TIMEOUT = 30
# Upper bound on the requests of one client, so a broken clock cannot loop forever.
MAX_REQUESTS_PER_CLIENT = 100_000

SAMPLE_FILES = {name: (SAMPLES / name).read_bytes() for name in SAMPLE_LABELS}
# Requests alternate between one image and all three samples in one batch.
REQUEST_MIXES = [["rock1.png"], list(SAMPLE_FILES), ["paper1.png"], ["scissors1.png"]]


@pytest.fixture(scope="module")
def load_gateway(tmp_path_factory, model_server):
    """A gateway with the default workers and threads, unless the environment sets them."""
    log = tmp_path_factory.mktemp("load_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address)
    yield server
    stop(server.process)


def check_reply(response: requests.Response, names: list[str]) -> str | None:
    """Return why a reply is wrong, or None when it is 200 with the expected labels."""
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    labels = [prediction["label"] for prediction in response.json()["predictions"]]
    expected = [SAMPLE_LABELS[name] for name in names]
    if labels != expected:
        return f"labels {labels}, expected {expected}"
    return None


def run_client(url: str, index: int, deadline: float) -> list[tuple[float, str | None]]:
    """Send requests until `deadline`; return (seconds, failure or None) per request."""
    results = []
    with requests.Session() as session:
        for count in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                break
            names = REQUEST_MIXES[(index + count) % len(REQUEST_MIXES)]
            files = [("file", (name, SAMPLE_FILES[name], "image/png")) for name in names]

            started = time.monotonic()
            try:
                response = session.post(f"{url}/classify", files=files, timeout=HTTP_TIMEOUT)
                failure = check_reply(response, names)
            except requests.RequestException as error:
                failure = f"{type(error).__name__}: {error}"
            results.append((time.monotonic() - started, failure))
    return results


def summed_rss_mb(pids: list[int]) -> float:
    """Return the summed VmRSS of the processes, in MB."""
    return sum(resident_mb(pid) for pid in pids)


def test_gateway_sustained_load(load_gateway, record_property):
    workers_before = sorted(worker_pids(load_gateway))
    assert workers_before, "gunicorn has no worker process"

    started = time.monotonic()
    deadline = started + DURATION_SECONDS
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [
            pool.submit(run_client, load_gateway.url, index, deadline) for index in range(CLIENTS)
        ]
        time.sleep(WARMUP_SECONDS)
        rss_start = summed_rss_mb(workers_before)
        results = [result for future in futures for result in future.result()]
    elapsed = time.monotonic() - started
    workers_after = sorted(worker_pids(load_gateway))
    assert workers_after == workers_before, "a gunicorn worker was restarted during the load"
    rss_end = summed_rss_mb(workers_after)
    assert results, "no request was sent"

    latencies = sorted(seconds for seconds, _ in results)
    failures = Counter(failure for _, failure in results if failure is not None)
    rate = len(results) / elapsed
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000
    summary = {
        "duration_s": round(elapsed, 1),
        "clients": CLIENTS,
        "workers": len(workers_before),
        "requests": len(results),
        "failed": sum(failures.values()),
        "requests_per_s": round(rate, 1),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "rss_after_warmup_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
    }
    for key, value in summary.items():
        record_property(key, value)
    print("load:", ", ".join(f"{key}={value}" for key, value in summary.items()))

    assert not failures, f"failed requests: {dict(failures.most_common(5))}"
    assert rss_end - rss_start < MAX_RSS_GROWTH_MB, (
        f"worker memory grew from {rss_start:.1f} MB to {rss_end:.1f} MB"
    )
