"""SIGTERM to the gateway's gunicorn master and to the local model server while requests run.

The gateway test puts a slow fake model server behind the gateway, so that
requests are certainly in flight when the signal arrives. The model server
test sends large Predict batches straight to the real local model server.
"""

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests

from gateway.messages import (
    build_metadata_request,
    build_predict_request,
    parse_metadata,
    parse_prediction,
)
from gateway.preprocess import preprocess
from gateway.tfs import prediction_service_pb2_grpc
from tests.conftest import SAMPLES, start_gateway, start_model_server, stop
from tests.gateway_fake_model_server import FakeModelServer

# gunicorn's graceful_timeout in gateway/gunicorn.conf.py, in seconds.
GRACEFUL_TIMEOUT = 10.0
# The model server's STOP_GRACE_SECONDS in serving/model_server.py, in seconds.
MODEL_SERVER_GRACE = 5.0
# Seconds a process may take to exit beyond its grace period (interpreter and gRPC teardown).
EXIT_MARGIN = 3.0
# Seconds the fake model server delays each Predict reply.
PREDICT_DELAY = 3.0
# Concurrent requests: at most one gunicorn worker's 4 threads, so that every
# request runs at once even when one worker accepts all of them.
IN_FLIGHT = 4
# Seconds to wait for any single HTTP reply or RPC.
HTTP_TIMEOUT = 30
# Images per Predict in the model server test, so that each call runs long
# enough for SIGTERM to arrive while it runs.
MODEL_BATCH = 96

ROCK = (SAMPLES / "rock1.png").read_bytes()


@pytest.fixture
def fake_server():
    """A fake model server whose Predict takes PREDICT_DELAY seconds."""
    server = FakeModelServer()
    yield server
    server.stop()


def classify(url: str) -> requests.Response:
    """POST the rock sample to /classify on a new connection."""
    return requests.post(
        f"{url}/classify", files=[("file", ("rock1.png", ROCK, "image/png"))],
        timeout=HTTP_TIMEOUT,
    )


def timed_classify(url: str) -> tuple[requests.Response, float]:
    """POST the rock sample to /classify; return the reply and the monotonic time it arrived."""
    response = classify(url)
    return response, time.monotonic()


def wait_for_calls(server: FakeModelServer, method: str, count: int, timeout: float) -> None:
    """Block until the fake server has received `count` calls of `method`."""
    deadline = time.monotonic() + timeout
    while server.started_calls.count(method) < count:
        started = server.started_calls.count(method)
        assert time.monotonic() < deadline, f"only {started} of {count} {method} calls arrived"
        time.sleep(0.05)


def connection_refused(port: int) -> bool:
    """Return True when a TCP connection to the loopback port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_gateway_sigterm_finishes_requests_in_flight(tmp_path, fake_server):
    gateway = start_gateway(tmp_path / "gateway.log", fake_server.address)
    try:
        assert classify(gateway.url).status_code == 200
        fake_server.behaviour.delays["Predict"] = PREDICT_DELAY
        fake_server.started_calls.clear()

        with ThreadPoolExecutor(max_workers=IN_FLIGHT + 1) as pool:
            in_flight = [pool.submit(timed_classify, gateway.url) for _ in range(IN_FLIGHT)]
            wait_for_calls(fake_server, "Predict", IN_FLIGHT, timeout=HTTP_TIMEOUT)
            signalled_at = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)

            # A request on a new connection during the drain must not be served.
            time.sleep(0.5)
            try:
                late: int | str = classify(gateway.url).status_code
            except requests.ConnectionError as error:
                late = repr(error.args[0])[:120]
            late_after = time.monotonic() - signalled_at
            results = [future.result(timeout=HTTP_TIMEOUT) for future in in_flight]

        exit_code = gateway.process.wait(timeout=GRACEFUL_TIMEOUT + EXIT_MARGIN)
        exited_after = time.monotonic() - signalled_at
        replies = [reply for reply, _ in results]
        first_reply_after = min(arrived for _, arrived in results) - signalled_at
        replied_after = max(arrived for _, arrived in results) - signalled_at
        print(
            f"gateway shutdown: {IN_FLIGHT} in-flight replies {[r.status_code for r in replies]}, "
            f"the last {replied_after:.2f} s after SIGTERM; a request during the drain ended "
            f"after {late_after:.2f} s with {late}; the master exited with {exit_code} "
            f"{exited_after:.2f} s after SIGTERM"
        )

        assert [reply.status_code for reply in replies] == [200] * IN_FLIGHT
        labels = [reply.json()["predictions"][0]["label"] for reply in replies]
        assert labels == ["rock"] * IN_FLIGHT
        assert first_reply_after > 0, "a request finished before SIGTERM"
        assert late != 200
        assert exit_code == 0, gateway.log.read_text()
        assert exited_after < GRACEFUL_TIMEOUT + EXIT_MARGIN
        assert connection_refused(gateway.port)
    finally:
        stop(gateway.process)


def test_model_server_sigterm_finishes_predict_calls(tmp_path):
    server = start_model_server(tmp_path / "model_server.log")
    channel = grpc.insecure_channel(server.address)
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata = parse_metadata(
            stub.GetModelMetadata(build_metadata_request("rps"), timeout=HTTP_TIMEOUT)
        )
        image = preprocess(ROCK, metadata.size)
        batch = np.repeat(image[np.newaxis], MODEL_BATCH, axis=0)
        request = build_predict_request("rps", metadata, batch)
        started = time.monotonic()
        stub.Predict(request, timeout=HTTP_TIMEOUT)
        one_call = time.monotonic() - started

        # One call per RPC thread of the model server (--rpc_workers, default 4).
        calls = [stub.Predict.future(request, timeout=HTTP_TIMEOUT) for _ in range(4)]
        finished_at: list[float] = []
        for call in calls:
            call.add_done_callback(lambda _: finished_at.append(time.monotonic()))
        time.sleep(min(0.2, one_call / 4))
        signalled_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        replies = [call.result() for call in calls]
        finished_after = [round(moment - signalled_at, 2) for moment in sorted(finished_at)]
        exit_code = server.process.wait(timeout=MODEL_SERVER_GRACE + EXIT_MARGIN)
        exited_after = time.monotonic() - signalled_at
        print(
            f"model server shutdown: one Predict of {MODEL_BATCH} images took {one_call:.2f} s, "
            f"4 calls in flight finished {finished_after} s after SIGTERM, exit code {exit_code} "
            f"{exited_after:.2f} s after SIGTERM"
        )

        assert min(finished_after) > 0, "the calls finished before SIGTERM"
        for reply in replies:
            scores = parse_prediction(reply, batch_size=MODEL_BATCH).scores
            assert {max(row, key=row.get) for row in scores} == {"rock"}
        assert exit_code == 0, server.log.read_text()
        assert exited_after < MODEL_SERVER_GRACE + EXIT_MARGIN
        assert connection_refused(server.port)
    finally:
        channel.close()
        stop(server.process)
