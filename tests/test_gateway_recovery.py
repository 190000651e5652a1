"""The gateway under gunicorn while the real local model server crashes and comes back.

The model server runs on one fixed loopback port for the whole module, so a
new process can take the place of a killed one at the same address, as a
restarted container or service would.
"""

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    MODEL_BASE_PATH,
    ROOT,
    SAMPLES,
    free_port,
    start_gateway,
    stop,
    wait_for_port,
)

# The gateway's RPC deadline, in seconds.
RPC_TIMEOUT = 2.0
# A request can make up to three RPCs (metadata, Predict, and one retry after
# stale metadata), but only the slow ones use their deadline. Two deadlines
# plus this margin, in seconds, bound every reply during a crash.
REPLY_MARGIN = 2.0
MAX_REPLY_SECONDS = 2 * RPC_TIMEOUT + REPLY_MARGIN
# Seconds after the new model server listens by which the gateway must return 200.
RECOVERY_SECONDS = 15.0
# Client-side timeout, in seconds: a request still open then counts as hung.
HTTP_TIMEOUT = 30

BURST_THREADS = 8
BURST_REQUESTS_PER_THREAD = 20
# Requests of the burst that complete before the model server is killed.
KILL_AFTER_REQUESTS = 30

ROCK = (SAMPLES / "rock1.png").read_bytes()


class ModelServerSlot:
    """One loopback port on which the test starts, kills and restarts the local model server."""

    def __init__(self, port: int, log_folder: Path) -> None:
        self.port = port
        self.log_folder = log_folder
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start a model server on the port and return the monotonic time it began listening."""
        self.starts += 1
        log = self.log_folder / f"model_server_{self.starts}.log"
        command = [
            sys.executable, "-m", "serving.model_server",
            "--port", str(self.port),
            "--model_name", "rps",
            "--model_base_path", str(MODEL_BASE_PATH),
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process, log)
        return time.monotonic()

    def kill(self) -> None:
        """Kill the running model server with SIGKILL, as a crash would, and reap it."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the model server if one is running."""
        if self.process is not None:
            stop(self.process)


@pytest.fixture(scope="module")
def model_slot(tmp_path_factory):
    """The fixed port, with a model server already listening on it."""
    slot = ModelServerSlot(free_port(), tmp_path_factory.mktemp("recovery_model_server"))
    slot.start()
    yield slot
    slot.stop()


@pytest.fixture(scope="module")
def recovery_gateway(tmp_path_factory, model_slot):
    """A gateway with two workers pointed at the fixed port."""
    log = tmp_path_factory.mktemp("recovery_gateway") / "gateway.log"
    server = start_gateway(
        log, model_slot.address, RPS_RPC_TIMEOUT=str(RPC_TIMEOUT), RPS_GATEWAY_WORKERS="2"
    )
    yield server
    stop(server.process)


def classify(gateway) -> requests.Response:
    """POST the rock sample to /classify."""
    return requests.post(
        f"{gateway.url}/classify", files=[("file", ("rock1.png", ROCK, "image/png"))],
        timeout=HTTP_TIMEOUT,
    )


def worker_pids(gateway) -> list[int]:
    """Return the pids of the gunicorn workers, the children of the master process."""
    master = gateway.process.pid
    return sorted(
        int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()
    )


def ensure_running(slot: ModelServerSlot, gateway) -> None:
    """Start the model server if an earlier test left it dead, and wait for a 200."""
    if slot.process is None or slot.process.poll() is not None:
        slot.start()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while classify(gateway).status_code != 200:
        assert time.monotonic() < deadline, "the gateway never returned 200"
        time.sleep(0.2)


def test_gateway_recovers_after_model_server_restart(recovery_gateway, model_slot):
    ensure_running(model_slot, recovery_gateway)
    workers_before = worker_pids(recovery_gateway)

    model_slot.kill()
    down = [classify(recovery_gateway) for _ in range(4)]
    listening_at = model_slot.start()

    # Several 200s in a row, so that both workers very likely reconnected.
    statuses = []
    consecutive_ok = 0
    while consecutive_ok < 6:
        elapsed = time.monotonic() - listening_at
        assert elapsed < RECOVERY_SECONDS, f"no recovery after {elapsed:.1f} s: {statuses}"
        status = classify(recovery_gateway).status_code
        statuses.append(status)
        consecutive_ok = consecutive_ok + 1 if status == 200 else 0
        if status != 200:
            time.sleep(0.2)
    recovered_after = time.monotonic() - listening_at
    print(f"gateway returned 200 again {recovered_after:.2f} s after the new model server listened")

    assert [response.status_code for response in down] == [503] * 4
    assert {response.json()["error"] for response in down} == {"model_server_unavailable"}
    assert set(statuses) <= {200, 503}, statuses
    assert worker_pids(recovery_gateway) == workers_before


def test_model_server_killed_during_burst(recovery_gateway, model_slot):
    ensure_running(model_slot, recovery_gateway)
    workers_before = worker_pids(recovery_gateway)
    completed = threading.Semaphore(0)

    def run_client(_: int) -> list[tuple[int | str, float]]:
        results = []
        for _ in range(BURST_REQUESTS_PER_THREAD):
            started = time.monotonic()
            try:
                outcome: int | str = classify(recovery_gateway).status_code
            except requests.RequestException as error:
                outcome = type(error).__name__
            results.append((outcome, time.monotonic() - started))
            completed.release()
        return results

    with ThreadPoolExecutor(max_workers=BURST_THREADS) as pool:
        futures = [pool.submit(run_client, index) for index in range(BURST_THREADS)]
        for _ in range(KILL_AFTER_REQUESTS):
            assert completed.acquire(timeout=HTTP_TIMEOUT), "the burst stalled before the kill"
        model_slot.kill()
        results = [result for future in futures for result in future.result(timeout=300)]

    outcomes = Counter(outcome for outcome, _ in results)
    slowest = max(seconds for _, seconds in results)
    print(f"burst outcomes: {dict(outcomes)}, slowest reply {slowest:.2f} s")

    assert len(results) == BURST_THREADS * BURST_REQUESTS_PER_THREAD
    assert set(outcomes) <= {200, 503, 504}, outcomes
    assert outcomes[200] >= KILL_AFTER_REQUESTS
    assert outcomes[503] + outcomes[504] > 0, "the kill happened after the burst ended"
    assert slowest < MAX_REPLY_SECONDS, f"slowest reply took {slowest:.2f} s"
    assert worker_pids(recovery_gateway) == workers_before
    assert "unhandled error" not in recovery_gateway.log.read_text()
