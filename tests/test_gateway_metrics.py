"""GET /metrics on a real gunicorn gateway with two workers.

The counters come from prometheus-client's multiprocess mode, so every check
compares totals over both workers before and after a known set of requests.
"""

import re
import uuid
from pathlib import Path

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SAMPLES, start_gateway, stop
from tests.gateway_fake_model_server import FakeModelServer

# Seconds to wait for any single HTTP reply in these tests.
HTTP_TIMEOUT = 30
# The RPC deadline of the gateway in front of the fake model server, in seconds.
RPC_TIMEOUT = 1.0
WORKERS = 2

ROCK = SAMPLES / "rock1.png"
PAPER = SAMPLES / "paper1.png"

REQUESTS_TOTAL = "rps_gateway_requests_total"

LOG_FOLDER_LINE = re.compile(r"metrics: multiprocess folder (\S+)")

Samples = dict[tuple[str, frozenset], float]


def scrape(gateway) -> tuple[str, Samples]:
    """Return the /metrics text and its samples keyed by (name, frozenset of label pairs)."""
    response = requests.get(f"{gateway.url}/metrics", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")

    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return one sample's value, or 0 when the series does not exist yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def classify(gateway, *paths: Path, request_id: str | None = None) -> requests.Response:
    """POST the files to /classify as multipart parts named `file`."""
    files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    headers = {"X-Request-ID": request_id} if request_id else {}
    return requests.post(
        f"{gateway.url}/classify", files=files, headers=headers, timeout=HTTP_TIMEOUT
    )


def worker_pids(gateway) -> list[int]:
    """Return the pids of the gunicorn workers, the children of the master process."""
    master = gateway.process.pid
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def logged_stage_milliseconds(log: Path, request_id: str) -> dict[str, float]:
    """Return the *_ms fields of the request log line of `request_id`."""
    lines = [line for line in log.read_text().splitlines()
             if f"[{request_id}]" in line and "POST /classify" in line]
    assert len(lines) == 1, lines
    return {name: float(number) for name, number in re.findall(r"(\w+)_ms=([\d.]+)", lines[0])}


@pytest.fixture(scope="module")
def metrics_gateway(tmp_path_factory, model_server):
    """A gateway with two workers in front of the local model server."""
    log = tmp_path_factory.mktemp("metrics_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address, RPS_GATEWAY_WORKERS=str(WORKERS))
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def fake_server():
    """A fake model server that the error-count tests make fail."""
    server = FakeModelServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_gateway(tmp_path_factory, fake_server):
    """A gateway with two workers and a 1 s deadline in front of the fake model server."""
    log = tmp_path_factory.mktemp("metrics_fake_gateway") / "gateway.log"
    server = start_gateway(
        log, fake_server.address,
        RPS_GATEWAY_WORKERS=str(WORKERS), RPS_RPC_TIMEOUT=str(RPC_TIMEOUT),
    )
    yield server
    stop(server.process)


def test_metrics_gateway_runs_two_workers(metrics_gateway):
    assert len(worker_pids(metrics_gateway)) == WORKERS


def test_metrics_count_classify_requests(metrics_gateway):
    _, before = scrape(metrics_gateway)

    # More requests than workers, so that both workers very likely serve some.
    for _ in range(6):
        assert classify(metrics_gateway, ROCK).status_code == 200
    assert classify(metrics_gateway, ROCK, PAPER, ROCK).status_code == 200
    _, after = scrape(metrics_gateway)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(REQUESTS_TOTAL, route="/classify", method="POST", status="200") == 7
    assert delta("rps_gateway_request_duration_seconds_count", route="/classify") == 7
    assert delta("rps_gateway_stage_duration_seconds_count", stage="preprocess") == 7
    assert delta("rps_gateway_stage_duration_seconds_count", stage="model") == 7
    assert delta("rps_gateway_batch_size_count") == 7
    assert delta("rps_gateway_batch_size_sum") == 6 * 1 + 3
    assert delta("rps_gateway_batch_size_bucket", le="1.0") == 6
    # The scrape before counts itself only after its reply is built.
    assert delta(REQUESTS_TOTAL, route="/metrics", method="GET", status="200") == 1


def test_metrics_count_client_errors_by_status(metrics_gateway):
    _, before = scrape(metrics_gateway)

    not_image = requests.post(
        f"{metrics_gateway.url}/classify", files=[("file", ("notes.txt", b"plain text"))],
        timeout=HTTP_TIMEOUT,
    )
    unknown = requests.get(f"{metrics_gateway.url}/no/such/path/{uuid.uuid4().hex}",
                           timeout=HTTP_TIMEOUT)
    _, after = scrape(metrics_gateway)

    assert not_image.status_code == 400
    assert unknown.status_code == 404
    labels_400 = {"route": "/classify", "method": "POST", "status": "400"}
    labels_404 = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, REQUESTS_TOTAL, **labels_400) == (
        value(before, REQUESTS_TOTAL, **labels_400) + 1
    )
    assert value(after, REQUESTS_TOTAL, **labels_404) == (
        value(before, REQUESTS_TOTAL, **labels_404) + 1
    )
    assert "/no/such/path" not in scrape(metrics_gateway)[0]


def test_metrics_stage_sums_match_request_log(metrics_gateway):
    request_ids = [f"metrics-stage-{index}-{uuid.uuid4().hex[:8]}" for index in range(4)]
    _, before = scrape(metrics_gateway)

    for request_id in request_ids:
        assert classify(metrics_gateway, ROCK, request_id=request_id).status_code == 200
    _, after = scrape(metrics_gateway)

    logged = [logged_stage_milliseconds(metrics_gateway.log, rid) for rid in request_ids]
    # Log fields are rounded to 0.1 ms, so each request may differ by 0.05 ms.
    tolerance = len(request_ids) * 0.05e-3 + 1e-9
    for stage in ("preprocess", "model"):
        logged_seconds = sum(fields[stage] for fields in logged) / 1000.0
        name = "rps_gateway_stage_duration_seconds_sum"
        metric_seconds = value(after, name, stage=stage) - value(before, name, stage=stage)
        assert metric_seconds == pytest.approx(logged_seconds, abs=tolerance), stage
    total_name = "rps_gateway_request_duration_seconds_sum"
    total_seconds = (value(after, total_name, route="/classify")
                     - value(before, total_name, route="/classify"))
    logged_total = sum(fields["total"] for fields in logged) / 1000.0
    assert total_seconds == pytest.approx(logged_total, abs=tolerance)


def test_metrics_exposition_parses_with_types(metrics_gateway):
    assert classify(metrics_gateway, ROCK).status_code == 200

    text, _ = scrape(metrics_gateway)
    types = {family.name: family.type for family in text_string_to_metric_families(text)}

    # A labelled metric with no series yet, such as the model server errors
    # here, is absent in multiprocess mode.
    assert types["rps_gateway_requests"] == "counter"
    assert types["rps_gateway_request_duration_seconds"] == "histogram"
    assert types["rps_gateway_stage_duration_seconds"] == "histogram"
    assert types["rps_gateway_batch_size"] == "histogram"


def test_metrics_count_uncertain_by_reason(metrics_gateway, grey_image):
    # Expects the committed model to flag a grey image as "no_hand" and the
    # samples as confident, which version 1, without the certainty outputs, does not.
    uncertain = "rps_gateway_uncertain_predictions_total"
    _, before = scrape(metrics_gateway)

    assert classify(metrics_gateway, grey_image, ROCK, grey_image).status_code == 200
    assert classify(metrics_gateway, PAPER).status_code == 200
    sentence = requests.post(
        f"{metrics_gateway.url}/send_file",
        files=[("file", (grey_image.name, grey_image.read_bytes(), "image/png"))],
        timeout=HTTP_TIMEOUT,
    )
    text, after = scrape(metrics_gateway)

    def delta(reason: str) -> float:
        return value(after, uncertain, reason=reason) - value(before, uncertain, reason=reason)

    assert sentence.status_code == 200
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["rps_gateway_uncertain_predictions"] == "counter"
    assert delta("no_hand") == 3
    assert delta("low_confidence") == 0
    assert delta("other") == 0


def test_metrics_count_model_server_errors_by_code(fake_gateway, fake_server):
    assert classify(fake_gateway, ROCK).status_code == 200
    _, before = scrape(fake_gateway)

    fake_server.behaviour.failures["Predict"] = (grpc.StatusCode.INTERNAL, "broken on purpose")
    internal = [classify(fake_gateway, ROCK) for _ in range(3)]
    fake_server.reset()
    fake_server.behaviour.delays["Predict"] = RPC_TIMEOUT + 2
    timed_out = classify(fake_gateway, ROCK)
    fake_server.reset()
    recovered = classify(fake_gateway, ROCK)
    text, after = scrape(fake_gateway)

    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["rps_gateway_model_server_errors"] == "counter"
    assert [response.status_code for response in internal] == [502, 502, 502]
    assert timed_out.status_code == 504
    assert recovered.status_code == 200
    errors = "rps_gateway_model_server_errors_total"
    for code, count in (("INTERNAL", 3), ("DEADLINE_EXCEEDED", 1)):
        labels = {"method": "Predict", "code": code}
        assert value(after, errors, **labels) - value(before, errors, **labels) == count, code
    requests_502 = {"route": "/classify", "method": "POST", "status": "502"}
    assert value(after, REQUESTS_TOTAL, **requests_502) - value(
        before, REQUESTS_TOTAL, **requests_502
    ) == 3


def test_metrics_folder_removed_when_gateway_stops(tmp_path, fake_server):
    log = tmp_path / "gateway.log"
    server = start_gateway(log, fake_server.address, RPS_GATEWAY_WORKERS="1")
    try:
        assert classify(server, ROCK).status_code == 200
        folders = LOG_FOLDER_LINE.findall(log.read_text())
        assert len(folders) == 1, log.read_text()
        folder = Path(folders[0])
        assert folder.is_dir()
        assert list(folder.glob("*.db")), "the worker wrote no metric files"
    finally:
        stop(server.process)

    assert server.process.returncode == 0
    assert not folder.exists()


def test_metrics_keep_user_folder_and_clear_old_files(tmp_path, fake_server):
    folder = tmp_path / "metrics"
    folder.mkdir()
    stale = folder / "counter_999999.db"
    stale.write_bytes(b"left over from an earlier run")
    log = tmp_path / "gateway.log"

    server = start_gateway(
        log, fake_server.address, RPS_GATEWAY_WORKERS="1", PROMETHEUS_MULTIPROC_DIR=str(folder)
    )
    try:
        assert not stale.exists()
        assert classify(server, ROCK).status_code == 200
        _, samples = scrape(server)
        labels = {"route": "/classify", "method": "POST", "status": "200"}
        assert value(samples, REQUESTS_TOTAL, **labels) == 1
    finally:
        stop(server.process)

    assert folder.is_dir()
