"""The README's first commands: `make up`, then `make classify` and the classroom curl call."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, SAMPLE_LABELS, START_TIMEOUT, free_port

VENV = sys.prefix


def port_is_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`make up` on free ports, stopped with SIGINT to its process group like Ctrl-C."""
    yield from _make_up(tmp_path_factory.mktemp("make_up") / "make-up.log")


@pytest.fixture
def second_stack(tmp_path):
    """Another `make up`, for a test that stops one of its servers."""
    yield from _make_up(tmp_path / "make-up.log")


def _make_up(log):
    gateway_port, model_port = free_port(), free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "up", f"GATEWAY_PORT={gateway_port}",
         f"MODEL_PORT={model_port}", f"VENV={VENV}"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{gateway_port}"

    try:
        _wait_until_ready(process, url, log)
    except BaseException:
        # A failed start must not leave the stack running behind the test run.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        raise

    yield {"process": process, "url": url, "ports": (gateway_port, model_port), "log": log}

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def _wait_until_ready(process: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"make up exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"stack not ready:\n{log.read_text()}"
        # A worker still starting can be slow to respond under load, so timeouts retry too.
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)


@pytest.mark.parametrize("name", sorted(SAMPLE_LABELS))
def test_make_classify_prints_label(stack, name):
    completed = subprocess.run(
        ["make", "--no-print-directory", "classify", f"IMG={name}",
         f"URL={stack['url']}", f"VENV={VENV}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    line = re.compile(
        rf"^{re.escape(name)}: {SAMPLE_LABELS[name]} \(\d+\.\d%\), model rps v\d+, "
        r"server time \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d$",
        re.MULTILINE,
    )
    assert line.search(completed.stdout), completed.stdout


def test_classroom_curl_call_returns_sentence(stack):
    completed = subprocess.run(
        ["curl", "-s", "-X", "POST", "-F", "file=@rock1.png",
         f"{stack['url']}/send_file"],
        cwd=ROOT / "client" / "samples", capture_output=True, text=True, timeout=60,
    )

    assert completed.returncode == 0
    assert "rock" in completed.stdout
    assert re.search(
        r"\d{4}-(January|February|March|April|May|June|July|August|September|"
        r"October|November|December)-\d\d \d\d:\d\d:\d\d",
        completed.stdout,
    ), completed.stdout


def test_make_up_ctrl_c_stops_everything(stack):
    process = stack["process"]

    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)

    log = stack["log"].read_text()
    # Bash skips up.sh's INT trap when the gateway handles the SIGINT and
    # exits first, so either line may report the stop.
    assert "up: stopping" in log or "stopped; stopping the" in log, log
    # A Ctrl-C is not a server failing, and must not trip the script.
    assert "exited with status" not in log
    assert "unbound variable" not in log
    for port in stack["ports"]:
        assert not port_is_open(port), f"port {port} still open:\n{stack['log'].read_text()}"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def test_gateway_stop_stops_model_server(second_stack):
    process = second_stack["process"]

    os.kill(_gunicorn_arbiter(process.pid), signal.SIGTERM)
    process.wait(timeout=60)

    log = second_stack["log"].read_text()
    assert "up: the gateway stopped; stopping the model server" in log, log
    for port in second_stack["ports"]:
        assert not port_is_open(port), f"port {port} still open:\n{log}"


def _gunicorn_arbiter(root: int) -> int:
    """Return the first gunicorn process below `root`: the arbiter, not one of its workers."""
    pending = [root]
    while pending:
        pid = pending.pop()
        if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pending.extend(int(child) for child in children)
    raise AssertionError(f"no gunicorn process below pid {root}")
