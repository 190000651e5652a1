"""One request whose Predict message exceeds gRPC's default 4 MiB receive limit.

128 images of 112 × 112 × 3 uint8 pixels (the input of version 2) make a
4.8 MB Predict request. gRPC
clients send messages of any size by default, so the limit that matters is the
model server's maximum receive size: 64 MiB for the local model server, and a
server started with 4 MiB rejects the call with RESOURCE_EXHAUSTED.
"""

import time

import requests

from tests.conftest import (
    MODEL_BASE_PATH,
    SAMPLE_LABELS,
    SAMPLES,
    start_gateway,
    start_model_server,
    stop,
)

BATCH_FILES = 128
# gRPC's default maximum size of a received message, in bytes.
GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024
# Seconds to wait for the reply, generous because a busy CPU slows the large Predict.
HTTP_TIMEOUT = 60
# The gateway's RPC deadline for these tests, in seconds.
RPC_TIMEOUT = "30"

NAMES = [list(SAMPLE_LABELS)[index % len(SAMPLE_LABELS)] for index in range(BATCH_FILES)]
FILES = [("file", (name, (SAMPLES / name).read_bytes(), "image/png")) for name in NAMES]
UPLOAD_BYTES = sum(len(content) for _, (_, content, _) in FILES)


def start_batch_gateway(log, model_server: str):
    """Start a gateway that accepts BATCH_FILES images in one request."""
    return start_gateway(
        log,
        model_server,
        RPS_MAX_FILES=str(BATCH_FILES),
        RPS_MAX_UPLOAD_BYTES=str(2 * UPLOAD_BYTES),
        RPS_RPC_TIMEOUT=RPC_TIMEOUT,
    )


def test_batch_over_4_mib_returns_all_predictions(tmp_path, model_server):
    gateway = start_batch_gateway(tmp_path / "gateway.log", model_server.address)
    try:
        started = time.monotonic()
        response = requests.post(f"{gateway.url}/classify", files=FILES, timeout=HTTP_TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        stop(gateway.process)
    print(
        f"{BATCH_FILES} images ({UPLOAD_BYTES} bytes uploaded): "
        f"{response.status_code} in {elapsed:.2f} s"
    )

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == BATCH_FILES
    assert [prediction["label"] for prediction in predictions] == [
        SAMPLE_LABELS[name] for name in NAMES
    ]


def test_batch_over_model_server_limit_returns_413(tmp_path):
    model_server = start_model_server(
        tmp_path / "model_server.log",
        MODEL_BASE_PATH,
        f"--max_message_bytes={GRPC_DEFAULT_MAX_RECEIVE}",
    )
    gateway = start_batch_gateway(tmp_path / "gateway.log", model_server.address)
    try:
        response = requests.post(f"{gateway.url}/classify", files=FILES, timeout=HTTP_TIMEOUT)
    finally:
        stop(gateway.process)
        stop(model_server.process)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "fewer images" in response.json()["detail"]
    assert "RESOURCE_EXHAUSTED" in gateway.log.read_text()
