"""Start and stop the servers under test as child processes on loopback ports."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
MODEL_BASE_PATH = ROOT / "serving" / "models" / "rps"

# Seconds to wait for a server to listen; the model server imports TensorFlow first.
START_TIMEOUT = 120


class StartError(RuntimeError):
    """A server process exited or did not respond before START_TIMEOUT."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path) -> float:
    """Poll `url` until it returns 200 and return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        if process.poll() is not None:
            raise StartError(f"process exited with {process.returncode}; log: {log}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise StartError(f"{url} did not return 200 within {START_TIMEOUT} s; log: {log}")


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Block until 127.0.0.1:`port` accepts connections."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"process exited with {process.returncode}; log: {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise StartError(f"nothing listened on port {port} within {START_TIMEOUT} s; log: {log}")


def start_model_server(log: Path) -> tuple[subprocess.Popen, int]:
    """Start the local model server on a free port and wait until it listens."""
    port = free_port()
    command = [
        sys.executable, "-m", "serving.model_server",
        "--port", str(port), "--model_name", "rps",
        "--model_base_path", str(MODEL_BASE_PATH),
    ]
    process = _spawn(command, log)
    wait_for_port(port, process, log)
    return process, port


def start_gateway(log: Path, model_port: int) -> tuple[subprocess.Popen, int, float]:
    """Start the gateway under gunicorn with its default workers and threads.

    Returns the process, its port and the seconds from spawn until /healthz returned 200.
    """
    port = free_port()
    environment = {
        **os.environ,
        "RPS_MODEL_SERVER": f"127.0.0.1:{model_port}",
        "RPS_GATEWAY_BIND": f"127.0.0.1:{port}",
    }
    # The defaults are what is measured, so inherited overrides are dropped.
    environment.pop("RPS_GATEWAY_WORKERS", None)
    environment.pop("RPS_GATEWAY_THREADS", None)
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "gateway/gunicorn.conf.py", "gateway.app:create_app()",
    ]
    started = time.monotonic()
    process = _spawn(command, log, environment)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", process, log)
    return process, port, time.monotonic() - started


def start_classroom(log: Path) -> tuple[subprocess.Popen, int]:
    """Start the classroom baseline server (bench.classroom) and wait until it listens."""
    port = free_port()
    command = [sys.executable, "-m", "bench.classroom", "--port", str(port)]
    process = _spawn(command, log)
    wait_for_port(port, process, log)
    return process, port


def stop(process: subprocess.Popen) -> None:
    """Stop a process with SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def child_pids(pid: int) -> list[int]:
    """Return the ids of the direct children of process `pid` (gunicorn's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(value) for value in path.read_text().split()]
    except OSError:
        return []


def _spawn(command: list[str], log: Path, environment: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=ROOT, env=environment,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
