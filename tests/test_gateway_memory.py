"""Resident memory of a gunicorn worker after phone-size JPEG uploads (gateway.memory)."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from PIL import Image

from tests.conftest import SAMPLES, resident_mb, worker_pids

# Resident memory budget of one gateway worker, as in test_gateway_faults.py.
MAX_WORKER_RSS_MB = 80
# Growth allowed across the JPEG uploads. Without fixed malloc thresholds a
# worker grew by about 15 MB here (glibc 2.36, 4 request threads).
MAX_GROWTH_MB = 6
# Requests in flight, one per request thread of the default gunicorn worker,
# so that several threads, and so several malloc arenas, serve large uploads.
CONCURRENCY = 4
HTTP_TIMEOUT = 60


def phone_jpeg() -> bytes:
    """Return a 4000x3000 JPEG of a sample with noise, about 2.3 MB like a phone photo."""
    image = Image.open(SAMPLES / "rock1.png").convert("RGB").resize((4000, 3000))
    pixels = np.asarray(image, dtype=np.int16)
    noise = np.random.default_rng(7).normal(0.0, 6.0, pixels.shape).astype(np.int16)
    noisy = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def post_concurrently(url: str, data: bytes, requests_per_connection: int) -> None:
    """POST `data` from CONCURRENCY keep-alive connections and check every reply."""

    def send(_: int) -> None:
        with requests.Session() as session:
            for _ in range(requests_per_connection):
                files = {"file": ("image", data, "application/octet-stream")}
                response = session.post(url, files=files, timeout=HTTP_TIMEOUT)
                assert response.status_code == 200, response.text

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(send, range(CONCURRENCY)))


def test_worker_memory_stays_flat_after_phone_jpegs(one_worker_gateway):
    url = f"{one_worker_gateway.url}/classify"
    [worker] = worker_pids(one_worker_gateway)
    post_concurrently(url, (SAMPLES / "rock1.png").read_bytes(), requests_per_connection=25)
    before = resident_mb(worker)

    post_concurrently(url, phone_jpeg(), requests_per_connection=8)
    post_concurrently(url, (SAMPLES / "rock1.png").read_bytes(), requests_per_connection=5)

    after = resident_mb(worker)
    assert after - before < MAX_GROWTH_MB, f"worker grew from {before:.1f} to {after:.1f} MB"
    assert after < MAX_WORKER_RSS_MB, f"worker uses {after:.1f} MB"
