"""The gateway under gunicorn when the model server is down, slow or misbehaves.

A real gRPC server from tests/gateway_fake_model_server.py plays the model
server, because the local model server cannot fail on demand.
"""

import io
import re
import time
from pathlib import Path

import grpc
import pytest
import requests
from PIL import Image

from gateway.tfs import get_model_status_pb2
from tests.conftest import SAMPLES, resident_mb, start_gateway, stop, worker_pids
from tests.gateway_fake_model_server import FakeModelServer

# The RPC deadline the fault gateway runs with, in seconds.
RPC_TIMEOUT = 1.0
# How long the fake server stalls a "slow" method, in seconds (well past RPC_TIMEOUT).
STALL = 4.0
# Seconds to wait for any single HTTP reply in these tests.
HTTP_TIMEOUT = 15
# Resident memory budget of one gateway worker.
MAX_WORKER_RSS_MB = 80

ROCK = SAMPLES / "rock1.png"


def error_of(response: requests.Response) -> str:
    """Return the `error` code of a JSON error reply, checking its shape."""
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    return body["error"]


def classify(gateway, *paths: Path) -> requests.Response:
    """POST the files to /classify as multipart parts named `file`."""
    files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    return requests.post(f"{gateway.url}/classify", files=files, timeout=HTTP_TIMEOUT)


@pytest.fixture(scope="module")
def fake_server():
    """A fake model server on a loopback port, shared by this module."""
    server = FakeModelServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def default_behaviour(request):
    """Reset the fake server before each test that uses it."""
    if "fake_server" in request.fixturenames:
        request.getfixturevalue("fake_server").reset()


@pytest.fixture(scope="module")
def fault_gateway(tmp_path_factory, fake_server):
    """One gateway worker with a short deadline and a metadata cache that outlives the tests.

    One worker keeps the cached metadata in one process, so a test can make it
    stale on purpose. The long TTL means only a failed Predict refreshes it.
    """
    log = tmp_path_factory.mktemp("fault_gateway") / "gateway.log"
    server = start_gateway(
        log,
        fake_server.address,
        RPS_RPC_TIMEOUT=str(RPC_TIMEOUT),
        RPS_METADATA_TTL="3600",
        RPS_GATEWAY_WORKERS="1",
    )
    yield server
    stop(server.process)


# No model server.


def test_healthz_without_model_server_returns_200(orphan_gateway):
    response = requests.get(f"{orphan_gateway.url}/healthz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_without_model_server_returns_503(orphan_gateway):
    response = requests.get(f"{orphan_gateway.url}/readyz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 503
    assert error_of(response) == "model_server_unavailable"


def test_classify_without_model_server_returns_503_quickly(orphan_gateway):
    started = time.monotonic()
    response = classify(orphan_gateway, ROCK)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert error_of(response) == "model_server_unavailable"
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


# Slow model server.


def test_classify_slow_predict_returns_504_at_deadline(fault_gateway, fake_server):
    assert classify(fault_gateway, ROCK).status_code == 200
    fake_server.behaviour.delays["Predict"] = STALL

    started = time.monotonic()
    response = classify(fault_gateway, ROCK)
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert error_of(response) == "model_server_timeout"
    assert RPC_TIMEOUT <= elapsed < RPC_TIMEOUT + 1.5, f"took {elapsed:.2f} s"


def test_classify_slow_metadata_returns_504(fault_gateway, fake_server):
    assert classify(fault_gateway, ROCK).status_code == 200
    # A new version makes the cached metadata stale, so the gateway fetches it again.
    fake_server.behaviour.version = 2
    fake_server.behaviour.delays["GetModelMetadata"] = STALL

    response = classify(fault_gateway, ROCK)

    assert response.status_code == 504
    assert error_of(response) == "model_server_timeout"


def test_readyz_slow_status_returns_503(fault_gateway, fake_server):
    fake_server.behaviour.delays["GetModelStatus"] = STALL

    started = time.monotonic()
    response = requests.get(f"{fault_gateway.url}/readyz", timeout=HTTP_TIMEOUT)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert error_of(response) == "model_server_unavailable"
    assert elapsed < RPC_TIMEOUT + 1.5, f"took {elapsed:.2f} s"


def test_classify_after_timeout_succeeds(fault_gateway, fake_server):
    fake_server.behaviour.delays["Predict"] = STALL
    assert classify(fault_gateway, ROCK).status_code == 504
    fake_server.behaviour.delays.clear()

    response = classify(fault_gateway, ROCK)

    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "rock"


# Model versions and the model contract.


def test_classify_follows_new_version_input_size(fault_gateway, fake_server):
    first = classify(fault_gateway, ROCK)
    fake_server.behaviour.version = 5
    fake_server.behaviour.size = (96, 128)
    fake_server.predict_calls.clear()

    second = classify(fault_gateway, ROCK, ROCK)

    assert first.status_code == 200
    assert first.json()["predictions"][0]["model"]["version"] == 1
    assert second.status_code == 200, second.text
    assert [entry["model"]["version"] for entry in second.json()["predictions"]] == [5, 5]
    calls = [(call.version, call.shape, call.status) for call in fake_server.predict_calls]
    assert calls == [
        (1, [2, 150, 150, 3], "NOT_FOUND"),
        (5, [2, 96, 128, 3], "OK"),
    ]


def test_classify_labels_come_from_model_classes(fault_gateway, fake_server):
    fake_server.behaviour.class_names = ("scissors", "rock", "paper")
    fake_server.behaviour.scores = (0.6, 0.3, 0.1)

    response = classify(fault_gateway, ROCK)
    prediction = response.json()["predictions"][0]

    assert response.status_code == 200
    assert prediction["label"] == "scissors"
    assert prediction["confidence"] == pytest.approx(0.6)
    assert prediction["scores"] == pytest.approx({"scissors": 0.6, "rock": 0.3, "paper": 0.1})


def test_classify_decodes_float_val_scores(fault_gateway, fake_server):
    fake_server.behaviour.scores_encoding = "float_val"

    response = classify(fault_gateway, ROCK, ROCK)

    assert response.status_code == 200
    for prediction in response.json()["predictions"]:
        assert prediction["label"] == "rock"
        assert prediction["scores"] == pytest.approx({"paper": 0.1, "rock": 0.7, "scissors": 0.2})


def test_classify_missing_output_returns_502(fault_gateway, fake_server):
    fake_server.behaviour.omit_outputs = ("classes",)

    response = classify(fault_gateway, ROCK)

    assert response.status_code == 502
    assert error_of(response) == "model_server_error"


def test_classify_upstream_error_text_stays_in_log(fault_gateway, fake_server):
    secret = "upstream-detail-7f3a9c"
    fake_server.behaviour.failures["Predict"] = (grpc.StatusCode.INTERNAL, secret)

    response = classify(fault_gateway, ROCK)

    assert response.status_code == 502
    assert error_of(response) == "model_server_error"
    assert secret not in response.text
    assert secret in fault_gateway.log.read_text()


def test_classify_model_not_loaded_returns_503(fault_gateway, fake_server):
    unloaded = (grpc.StatusCode.NOT_FOUND, "Servable not found")
    fake_server.behaviour.failures["Predict"] = unloaded
    fake_server.behaviour.failures["GetModelMetadata"] = unloaded

    response = classify(fault_gateway, ROCK)

    assert response.status_code == 503
    assert error_of(response) == "model_server_unavailable"


def test_readyz_reports_available_version(fault_gateway, fake_server):
    fake_server.behaviour.version = 3

    response = requests.get(f"{fault_gateway.url}/readyz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model": {"name": "rps", "version": 3}}


def test_readyz_loading_version_returns_503(fault_gateway, fake_server):
    fake_server.behaviour.state = get_model_status_pb2.ModelVersionStatus.LOADING

    response = requests.get(f"{fault_gateway.url}/readyz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 503
    assert error_of(response) == "model_server_unavailable"


# The worker process.


def test_worker_loads_no_tensorflow_and_stays_small(fault_gateway, fake_server, record_property):
    samples = [ROCK, SAMPLES / "paper1.png", SAMPLES / "scissors1.png"]
    for _ in range(5):
        assert classify(fault_gateway, *samples).status_code == 200

    pids = worker_pids(fault_gateway)
    assert pids, "gunicorn has no worker process"
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        rss = resident_mb(pid)
        record_property(f"worker_{pid}_rss_mb", round(rss, 1))
        print(f"gateway worker {pid}: VmRSS {rss:.1f} MB")

        assert not re.search(r"tensorflow/|libtensorflow|_pywrap_tensorflow", maps), (
            f"worker {pid} maps TensorFlow libraries"
        )
        assert "grpc" in maps, f"worker {pid} has not loaded gRPC, so it served no request"
        assert rss < MAX_WORKER_RSS_MB, f"worker {pid} uses {rss:.1f} MB"


def test_master_opens_no_grpc(fault_gateway):
    maps = Path(f"/proc/{fault_gateway.process.pid}/maps").read_text()

    assert "cygrpc" not in maps


# Memory.


def test_worker_memory_returns_after_large_image(one_worker_gateway):
    image = io.BytesIO()
    Image.new("1", (6000, 6000)).save(image, "PNG")
    [worker] = worker_pids(one_worker_gateway)
    files = [("file", ("large.png", image.getvalue(), "image/png"))]

    response = requests.post(f"{one_worker_gateway.url}/classify", files=files, timeout=60)

    assert response.status_code == 200, response.text
    # Decoding 36 megapixels to RGB allocates over 100 MB; the worker must give
    # it back to the system instead of keeping it.
    assert resident_mb(worker) < 110
