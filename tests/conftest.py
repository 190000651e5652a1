"""Shared fixtures: the local model server and the gateway as real processes.

The pytest process imports the gateway's own protobuf stubs and must never
import TensorFlow or `tensorflow_serving`: both register the same protobuf
message names (`tensorflow.TensorProto` and others) in the default descriptor
pool, which rejects the second registration. Tests that need TensorFlow run it
in a subprocess, as the model server already is.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODEL_BASE_PATH = ROOT / "serving" / "models" / "rps"
SAMPLES = ROOT / "client" / "samples"
SAMPLE_LABELS = {"rock1.png": "rock", "paper1.png": "paper", "scissors1.png": "scissors"}

# A uniform grey image that has no hand in it. Model versions that judge their
# certainty are expected to flag it as "no_hand".
GREY_IMAGE_SIZE = (300, 300)
GREY_IMAGE_COLOUR = (128, 128, 128)

# Seconds to wait for a process to start serving; TensorFlow alone takes about 5 s to import.
START_TIMEOUT = 90


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Block until `port` accepts connections, or fail with the process log."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} after {START_TIMEOUT} s:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process with SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server:
    """A started server process, its address and its log file."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_model_server(log: Path, base_path: Path = MODEL_BASE_PATH, *extra: str) -> Server:
    """Start the local model server on a free loopback port and wait until it listens."""
    port = free_port()
    command = [
        sys.executable, "-m", "serving.model_server",
        "--port", str(port),
        "--model_name", "rps",
        "--model_base_path", str(base_path),
        *extra,
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    wait_for_port(port, process, log)
    return Server(process, port, log)


def start_gateway(log: Path, model_server: str, **env: str) -> Server:
    """Start the gateway under gunicorn on a free loopback port and wait for /healthz."""
    port = free_port()
    environment = {
        **os.environ,
        "RPS_MODEL_SERVER": model_server,
        "RPS_GATEWAY_BIND": f"127.0.0.1:{port}",
        **env,
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "gateway/gunicorn.conf.py",
        "gateway.app:create_app()",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    wait_for_port(port, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthz_ok(port):
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"gateway /healthz never returned 200:\n{log.read_text()}")
        time.sleep(0.2)
    return Server(process, port, log)


def _healthz_ok(port: int) -> bool:
    # gunicorn's master listens before its workers have imported the app, and
    # on a busy machine that import can outlast a short read timeout.
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


@pytest.fixture(scope="session")
def model_server(tmp_path_factory) -> Server:
    """The local model server serving the committed SavedModel."""
    log = tmp_path_factory.mktemp("model_server") / "model_server.log"
    server = start_model_server(log)
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, model_server) -> Server:
    """The gateway under gunicorn, talking to the session's model server."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    server = start_gateway(log, model_server.address)
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def orphan_gateway(tmp_path_factory) -> Server:
    """A gateway whose model server address has nothing listening on it."""
    log = tmp_path_factory.mktemp("orphan_gateway") / "gateway.log"
    server = start_gateway(log, f"127.0.0.1:{free_port()}")
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def version_1_model_server(tmp_path_factory) -> Server:
    """The local model server serving only a copy of version 1, which has no certainty outputs."""
    base_path = tmp_path_factory.mktemp("version_1_model") / "rps"
    shutil.copytree(MODEL_BASE_PATH / "1", base_path / "1")
    log = tmp_path_factory.mktemp("version_1_model_server") / "model_server.log"
    server = start_model_server(log, base_path)
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def version_1_gateway(tmp_path_factory, version_1_model_server) -> Server:
    """The gateway under gunicorn in front of the version 1 model server."""
    log = tmp_path_factory.mktemp("version_1_gateway") / "gateway.log"
    server = start_gateway(log, version_1_model_server.address)
    yield server
    stop(server.process)


@pytest.fixture
def grey_image(tmp_path) -> Path:
    """A 300x300 uniform grey PNG, grey.png in the test's temporary folder."""
    path = tmp_path / "grey.png"
    Image.new("RGB", GREY_IMAGE_SIZE, GREY_IMAGE_COLOUR).save(path, format="PNG")
    return path


@pytest.fixture(scope="module")
def one_worker_gateway(tmp_path_factory, model_server):
    """One gateway worker with the default threads in front of the real model server.

    Module-scoped, so that each memory test module reads a worker of its own.
    """
    log = tmp_path_factory.mktemp("one_worker_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address, RPS_GATEWAY_WORKERS="1")
    yield server
    stop(server.process)


def worker_pids(gateway) -> list[int]:
    """Return the pids of the gunicorn workers, the children of the master process."""
    master = gateway.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def resident_mb(pid: int) -> float:
    """Return a process's resident set size (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS line for process {pid}")
