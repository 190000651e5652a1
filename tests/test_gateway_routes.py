"""The gateway's HTTP routes under gunicorn, against the local model server.

Replies are checked against docs/api.md: the prediction shape, the
/send_file sentence, the health routes and every error status and code.
"""

import http.client
import io
import json
import re
import socket
import urllib.parse
from datetime import datetime, timedelta

import pytest
import requests
from PIL import Image

from tests.conftest import SAMPLE_LABELS, SAMPLES, start_gateway, stop

# Seconds to wait for any single HTTP reply in these tests.
HTTP_TIMEOUT = 30

CLASS_NAMES = {"paper", "rock", "scissors"}
ENTRY_KEYS = {
    "file", "label", "confidence", "scores", "uncertain", "reason", "hand_probability",
    "model", "server_time",
}
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
SENTENCE = re.compile(
    rf"The model predicts (rock|paper|scissors); server time \d{{4}}-({MONTHS})-\d{{2}} "
    r"\d{2}:\d{2}:\d{2}"
)
# Upload limit of the second gateway in bytes, smaller than every sample file.
SMALL_UPLOAD_BYTES = 50_000


def png_bytes(image: Image.Image) -> bytes:
    """Encode a Pillow image as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sample(name: str) -> bytes:
    """Return the bytes of a sample image from client/samples."""
    return (SAMPLES / name).read_bytes()


def post_files(url: str, *files: tuple[str, bytes], path: str = "/classify") -> requests.Response:
    """POST the (name, bytes) pairs as multipart parts named `file`."""
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return requests.post(f"{url}{path}", files=parts, timeout=HTTP_TIMEOUT)


def assert_error(response: requests.Response, status: int, code: str) -> str:
    """Check a JSON error reply and return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code
    assert body["detail"]
    return body["detail"]


def assert_rock_still_classified(url: str) -> None:
    """Check that a good request after an error still returns the right label."""
    response = post_files(url, ("rock1.png", sample("rock1.png")))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "rock"


@pytest.fixture(scope="module")
def small_upload_gateway(tmp_path_factory, model_server):
    """A second gateway whose upload limit is below the sample file sizes."""
    log = tmp_path_factory.mktemp("small_upload_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address, RPS_MAX_UPLOAD_BYTES=str(SMALL_UPLOAD_BYTES))
    yield server
    stop(server.process)


# Classification.


@pytest.mark.parametrize(("name", "label"), sorted(SAMPLE_LABELS.items()))
def test_classify_sample_returns_label_and_shape(gateway, name, label):
    before = datetime.now().astimezone()
    response = post_files(gateway.url, (name, sample(name)))

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    predictions = response.json()["predictions"]
    assert len(predictions) == 1
    entry = predictions[0]
    assert set(entry) == ENTRY_KEYS
    assert entry["file"] == name
    assert entry["label"] == label
    assert set(entry["scores"]) == CLASS_NAMES
    assert entry["confidence"] == max(entry["scores"].values())
    assert entry["scores"][label] == entry["confidence"]
    assert 0.0 <= entry["confidence"] <= 1.0
    assert sum(entry["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert isinstance(entry["uncertain"], bool)
    assert entry["reason"] is None or isinstance(entry["reason"], str)
    assert entry["hand_probability"] is None or 0.0 <= entry["hand_probability"] <= 1.0
    assert entry["model"]["name"] == "rps"
    assert isinstance(entry["model"]["version"], int)
    assert entry["model"]["version"] >= 1
    assert ISO_TIME.fullmatch(entry["server_time"]), entry["server_time"]
    server_time = datetime.fromisoformat(entry["server_time"])
    assert before - timedelta(seconds=5) <= server_time <= datetime.now().astimezone()


def test_classify_three_files_in_upload_order(gateway):
    names = ["scissors1.png", "rock1.png", "paper1.png"]

    response = post_files(gateway.url, *[(name, sample(name)) for name in names])

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [entry["file"] for entry in predictions] == names
    assert [entry["label"] for entry in predictions] == [SAMPLE_LABELS[name] for name in names]
    assert len({entry["server_time"] for entry in predictions}) == 1


def test_classify_raw_body_with_filename(gateway):
    response = requests.post(
        f"{gateway.url}/classify",
        params={"filename": "paper1.png"},
        data=sample("paper1.png"),
        headers={"Content-Type": "image/png"},
        timeout=HTTP_TIMEOUT,
    )

    assert response.status_code == 200, response.text
    entry = response.json()["predictions"][0]
    assert entry["file"] == "paper1.png"
    assert entry["label"] == "paper"


def test_classify_raw_body_without_filename(gateway):
    response = requests.post(
        f"{gateway.url}/classify",
        data=sample("scissors1.png"),
        headers={"Content-Type": "image/png"},
        timeout=HTTP_TIMEOUT,
    )

    assert response.status_code == 200, response.text
    entry = response.json()["predictions"][0]
    assert entry["file"] is None
    assert entry["label"] == "scissors"


def test_send_file_returns_classroom_sentence(gateway):
    before = datetime.now().replace(microsecond=0)
    response = post_files(gateway.url, ("rock1.png", sample("rock1.png")), path="/send_file")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert SENTENCE.fullmatch(response.text), response.text
    assert response.text.startswith("The model predicts rock; ")
    stamp = datetime.strptime(response.text.split("server time ")[1], "%Y-%B-%d %H:%M:%S")
    assert before - timedelta(seconds=5) <= stamp <= datetime.now()


def test_classify_request_id_echoed_and_logged(gateway):
    response = requests.post(
        f"{gateway.url}/classify",
        files=[("file", ("rock1.png", sample("rock1.png")))],
        headers={"X-Request-ID": "routes-test-7"},
        timeout=HTTP_TIMEOUT,
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "routes-test-7"
    lines = [line for line in gateway.log.read_text().splitlines() if "[routes-test-7]" in line]
    request_line = [line for line in lines if "POST /classify 200" in line]
    assert len(request_line) == 1, lines
    for field in ("files=1", "preprocess_ms=", "model_ms=", "total_ms="):
        assert field in request_line[0]


def test_request_log_escapes_path(gateway):
    forged = "/x%0A2026-12-04 INFO gateway.request_log FORGED%0D%1B%5B31m%00"
    response = requests.get(
        f"{gateway.url}{forged}", headers={"X-Request-ID": "routes-test-path"},
        timeout=HTTP_TIMEOUT,
    )

    assert response.status_code == 404
    log = gateway.log.read_text()
    assert "\x1b" not in log
    assert "\x00" not in log
    [line] = [line for line in log.splitlines() if "[routes-test-path]" in line]
    assert "/x%0A2026-12-04%20INFO%20gateway.request_log%20FORGED%0D%1B%5B31m%00" in line
    assert not any(line.lstrip().startswith("INFO gateway.request_log FORGED")
                   for line in log.splitlines())


# Health.


def test_healthz_returns_ok(gateway):
    response = requests.get(f"{gateway.url}/healthz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_returns_model_version(gateway):
    response = requests.get(f"{gateway.url}/readyz", timeout=HTTP_TIMEOUT)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["model"]["name"] == "rps"
    assert isinstance(body["model"]["version"], int)


# Errors.


def test_classify_without_file_part_returns_400(gateway):
    response = requests.post(
        f"{gateway.url}/classify",
        files=[("image", ("rock1.png", sample("rock1.png")))],
        timeout=HTTP_TIMEOUT,
    )

    detail = assert_error(response, 400, "invalid_request")
    assert "'file'" in detail
    assert_rock_still_classified(gateway.url)


def test_classify_non_image_returns_400(gateway):
    response = post_files(gateway.url, ("notes.txt", b"this is not an image\n"))

    detail = assert_error(response, 400, "invalid_image")
    assert detail.startswith("notes.txt: ")
    assert_rock_still_classified(gateway.url)


def test_classify_truncated_png_returns_400(gateway):
    truncated = sample("rock1.png")[:2000]

    response = post_files(gateway.url, ("cut.png", truncated))

    detail = assert_error(response, 400, "invalid_image")
    assert detail.startswith("cut.png: ")
    assert_rock_still_classified(gateway.url)


def test_classify_empty_file_returns_400(gateway):
    response = post_files(gateway.url, ("empty.png", b""))

    detail = assert_error(response, 400, "invalid_request")
    assert detail.startswith("empty.png: ")
    assert_rock_still_classified(gateway.url)


def test_classify_one_bad_file_rejects_request(gateway):
    response = post_files(
        gateway.url, ("rock1.png", sample("rock1.png")), ("bad.png", b"not a png")
    )

    detail = assert_error(response, 400, "invalid_image")
    assert detail.startswith("bad.png: ")
    assert_rock_still_classified(gateway.url)


def test_classify_wrong_content_type_returns_415(gateway):
    response = requests.post(
        f"{gateway.url}/classify",
        data=b"file=rock1.png",
        headers={"Content-Type": "text/plain"},
        timeout=HTTP_TIMEOUT,
    )

    detail = assert_error(response, 415, "unsupported_media_type")
    assert "text/plain" in detail
    assert_rock_still_classified(gateway.url)


def test_classify_ico_image_returns_415(gateway):
    buffer = io.BytesIO()
    Image.open(SAMPLES / "rock1.png").convert("RGB").resize((32, 32)).save(buffer, format="ICO")

    response = post_files(gateway.url, ("rock.ico", buffer.getvalue()))

    detail = assert_error(response, 415, "unsupported_media_type")
    assert detail.startswith("rock.ico: ")
    assert "PNG" in detail
    assert_rock_still_classified(gateway.url)


def test_classify_too_many_files_returns_413(gateway):
    tiny = png_bytes(Image.new("RGB", (8, 8), "white"))

    response = post_files(gateway.url, *[(f"tiny{index}.png", tiny) for index in range(17)])

    detail = assert_error(response, 413, "payload_too_large")
    assert "17" in detail
    assert_rock_still_classified(gateway.url)


def test_classify_too_many_pixels_returns_413(gateway):
    # 8000 x 6000 = 48 megapixels, above the 40-megapixel default. Mode "1" keeps the PNG small.
    huge = png_bytes(Image.new("1", (8000, 6000), 1))

    response = post_files(gateway.url, ("huge.png", huge))

    detail = assert_error(response, 413, "payload_too_large")
    assert detail.startswith("huge.png: ")
    assert_rock_still_classified(gateway.url)


def test_classify_body_over_upload_limit_returns_413(small_upload_gateway):
    small = png_bytes(Image.open(SAMPLES / "rock1.png").convert("RGB").resize((150, 150)))
    assert len(small) < SMALL_UPLOAD_BYTES < len(sample("rock1.png"))

    response = post_files(small_upload_gateway.url, ("rock1.png", sample("rock1.png")))

    detail = assert_error(response, 413, "payload_too_large")
    assert str(SMALL_UPLOAD_BYTES) in detail
    after = post_files(small_upload_gateway.url, ("rock-small.png", small))
    assert after.status_code == 200, after.text
    assert after.json()["predictions"][0]["label"] == "rock"


def test_chunked_raw_body_over_limit_returns_413(small_upload_gateway):
    body = sample("rock1.png")
    chunks = (body[start : start + 4096] for start in range(0, len(body), 4096))

    response = requests.post(
        f"{small_upload_gateway.url}/classify", data=chunks,
        headers={"Content-Type": "image/png"}, timeout=HTTP_TIMEOUT,
    )

    detail = assert_error(response, 413, "payload_too_large")
    assert str(SMALL_UPLOAD_BYTES) in detail


def test_chunked_raw_body_under_limit_is_classified(gateway):
    body = sample("paper1.png")
    chunks = (body[start : start + 4096] for start in range(0, len(body), 4096))

    response = requests.post(
        f"{gateway.url}/classify?filename=paper1.png", data=chunks,
        headers={"Content-Type": "image/png"}, timeout=HTTP_TIMEOUT,
    )

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "paper"


@pytest.mark.parametrize("content_type", ["image/png", "multipart/form-data; boundary=B"])
def test_malformed_chunked_body_returns_400(gateway, content_type):
    # The body is declared chunked but sent as plain bytes, so gunicorn reads
    # the first bytes of the body as a chunk size and rejects them.
    body = sample("rock1.png") if content_type == "image/png" else b"--B\r\n" + b"x" * 100
    address = urllib.parse.urlsplit(gateway.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("POST", "/classify", body=body, headers={
            "Content-Type": content_type, "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        status, reply = response.status, json.loads(response.read())
    finally:
        connection.close()

    assert status == 400, reply
    assert reply["error"] == "invalid_request"
    assert "chunked" in reply["detail"]
    assert_rock_still_classified(gateway.url)


FORM_START = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nab'


@pytest.mark.parametrize(("path", "content_type", "start"), [
    ("/classify", "multipart/form-data; boundary=B", FORM_START),
    ("/send_file", "multipart/form-data; boundary=B", FORM_START),
    ("/classify", "image/png", b"\x89PNG\r\n\x1a\n"),
])
def test_chunked_body_cut_short_returns_400(gateway, path, content_type, start):
    # The chunk announces 4096 bytes, but the client stops sending after a
    # few and closes its side, as a dropped upload would.
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    address = urllib.parse.urlsplit(gateway.url)
    with socket.create_connection((address.hostname, address.port), timeout=HTTP_TIMEOUT) as raw:
        raw.sendall(head + b"1000\r\n" + start)
        raw.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(raw)
        response.begin()
        status, reply = response.status, json.loads(response.read())

    assert status == 400, reply
    assert reply["error"] == "invalid_request"
    assert "ended before it was complete" in reply["detail"], reply["detail"]
    assert_rock_still_classified(gateway.url)


def test_send_file_empty_body_hint(gateway):
    response = requests.post(f"{gateway.url}/send_file", timeout=HTTP_TIMEOUT)

    detail = assert_error(response, 400, "invalid_request")
    assert "curl -F file=@rock1.png" in detail
    # /send_file takes only forms, so the hint must not offer a raw body.
    assert "raw body" not in detail


def test_send_file_two_files_returns_400(gateway):
    response = post_files(
        gateway.url,
        ("rock1.png", sample("rock1.png")),
        ("paper1.png", sample("paper1.png")),
        path="/send_file",
    )

    assert_error(response, 400, "invalid_request")
    assert_rock_still_classified(gateway.url)


def test_send_file_error_is_json(gateway):
    response = post_files(gateway.url, ("notes.txt", b"plain text"), path="/send_file")

    assert_error(response, 400, "invalid_image")


def test_unknown_path_returns_404_json(gateway):
    response = requests.get(f"{gateway.url}/predict", timeout=HTTP_TIMEOUT)

    detail = assert_error(response, 404, "not_found")
    assert "/predict" in detail
    assert_rock_still_classified(gateway.url)


def test_wrong_method_returns_405_json(gateway):
    response = requests.get(f"{gateway.url}/classify", timeout=HTTP_TIMEOUT)

    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_rock_still_classified(gateway.url)
