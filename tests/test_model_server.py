"""Tests for the local model server (python -m serving.model_server) over real gRPC.

This process must not import TensorFlow (see tests/conftest.py), so the client
side runs in tests/tfs_probe.py, a subprocess that uses tensorflow-serving-api's
own stubs and prints JSON; the tests assert on that JSON and on the server log.
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    MODEL_BASE_PATH,
    ROOT,
    SAMPLE_LABELS,
    Server,
    start_model_server,
    stop,
)

PROBE = Path(__file__).with_name("tfs_probe.py")

# Seconds for one probe run. Importing TensorFlow alone took 5 to 12 s on a
# 2-core development machine.
PROBE_TIMEOUT = 180
# Seconds for a server that fails at startup to exit, after it may have imported TensorFlow.
EXIT_TIMEOUT = 90
# Seconds from copying a version directory to serving it, with a 1 s poll.
# Loading and warming up the model took about 1 s on a 2-core development machine.
PICKUP_LIMIT = 15

STANDARD_CASES = [
    "samples", "batch", "metadata", "metadata_without_field", "metadata_unknown_model",
    "status", "status_unknown_model", "status_unknown_version", "unknown_model",
    "unknown_version", "unknown_version_label", "unknown_signature", "wrong_dtype",
    "wrong_shape", "wrong_rank", "missing_input", "extra_input", "malformed_tensor",
    "missing_model_spec", "output_filter", "unknown_output_filter", "classify",
]


def run_probe(address: str, *cases: str) -> dict:
    """Run tests/tfs_probe.py against `address` and return its JSON results by case."""
    completed = subprocess.run(
        [sys.executable, str(PROBE), address, *cases],
        cwd=ROOT, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
    )
    assert completed.returncode == 0, f"tfs_probe.py failed:\n{completed.stderr}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def latest_version(base_path: Path) -> int:
    """Return the highest numeric version directory under `base_path`."""
    return max(int(p.name) for p in base_path.iterdir() if p.is_dir() and p.name.isdigit())


def wait_for_log(server: Server, text: str, timeout: float) -> float:
    """Wait until `text` appears in the server log and return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if text in server.log.read_text():
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"{text!r} not in the server log after {timeout} s:\n{server.log.read_text()}")


def copy_version(version: int, base_path: Path) -> None:
    """Copy the committed model's latest version to `base_path` as `version`."""
    source = MODEL_BASE_PATH / str(latest_version(MODEL_BASE_PATH))
    shutil.copytree(source, base_path / str(version))


def run_server_until_exit(*arguments: str) -> subprocess.CompletedProcess:
    """Run the model server with `arguments` and wait for it to exit."""
    return subprocess.run(
        [sys.executable, "-m", "serving.model_server", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=EXIT_TIMEOUT,
    )


@pytest.fixture(scope="module")
def results(model_server: Server) -> dict:
    """The probe's results for every standard case against the session's model server."""
    return run_probe(model_server.address, *STANDARD_CASES)


def test_predict_samples_labels(results):
    version = latest_version(MODEL_BASE_PATH)
    for name, label in SAMPLE_LABELS.items():
        result = results["samples"][name]
        assert result["code"] == "OK", result
        assert result["labels"] == [label], name
        assert result["model_name"] == "rps"
        assert result["version"] == version
        assert result["signature_name"] == "serving_default"


def test_predict_batch_of_three(results):
    result = results["batch"]
    assert result["code"] == "OK", result
    assert result["labels"] == [SAMPLE_LABELS[name] for name in result["files"]]
    assert result["scores_shape"] == [3, 3]


def test_predict_scores_in_float_val(results):
    assert results["batch"]["scores_in_float_val"] is True


def test_predict_output_filter(results):
    result = results["output_filter"]
    assert result["code"] == "OK", result
    assert result["outputs"] == ["scores"]


def test_metadata_signature(results):
    result = results["metadata"]
    assert result["code"] == "OK", result
    assert result["type_url"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert result["model_name"] == "rps"
    assert result["version"] == latest_version(MODEL_BASE_PATH)
    assert "serving_default" in result["signatures"]
    assert result["method_name"] == "tensorflow/serving/predict"
    assert result["inputs"] == {"image": {"dtype": "DT_UINT8", "shape": [-1, 112, 112, 3]}}
    assert result["outputs"] == ["classes", "hand_probability", "scores", "uncertain_reason"]


def test_status_available(results):
    result = results["status"]
    assert result["code"] == "OK", result
    assert result["versions"] == [{
        "version": latest_version(MODEL_BASE_PATH),
        "state": "AVAILABLE",
        "error_code": 0,
        "error_message": "",
    }]


@pytest.mark.parametrize(
    ("case", "code", "fragments"),
    [
        ("unknown_model", "NOT_FOUND", ["Servable not found for request: Latest(nope)"]),
        ("unknown_version", "NOT_FOUND", ["Servable not found for request: Specific(rps, 7)"]),
        ("unknown_version_label", "INVALID_ARGUMENT", ["version label: canary"]),
        ("unknown_signature", "FAILED_PRECONDITION", ['"nope" not found']),
        ("wrong_dtype", "INVALID_ARGUMENT", ['"image"', "expected dtype DT_UINT8, got DT_FLOAT"]),
        ("wrong_shape", "INVALID_ARGUMENT",
         ['"image"', "expected shape [-1, 112, 112, 3], got [1, 100, 100, 3]"]),
        ("wrong_rank", "INVALID_ARGUMENT", ['"image"', "got [112, 112, 3]"]),
        ("missing_input", "INVALID_ARGUMENT", ["missing {image}"]),
        ("extra_input", "INVALID_ARGUMENT", ["unexpected {mask}"]),
        ("malformed_tensor", "INVALID_ARGUMENT", ['input "image"', "malformed"]),
        ("missing_model_spec", "INVALID_ARGUMENT", ["Missing ModelSpec"]),
        ("unknown_output_filter", "INVALID_ARGUMENT", ['no output "nope"']),
        ("metadata_without_field", "INVALID_ARGUMENT", ["metadata_field"]),
        ("metadata_unknown_model", "NOT_FOUND", ["Latest(nope)"]),
        ("status_unknown_model", "NOT_FOUND", ["Could not find any versions of model nope"]),
        ("status_unknown_version", "NOT_FOUND", ["Could not find version 7 of model rps"]),
        ("classify", "UNIMPLEMENTED", ["stand-in for TensorFlow Serving"]),
    ],
)
def test_error_status(results, case, code, fragments):
    result = results[case]
    assert result["code"] == code, result
    for fragment in fragments:
        assert fragment in result["details"]


def test_request_log_lines(model_server, results):
    log = model_server.log.read_text()
    version = latest_version(MODEL_BASE_PATH)
    assert re.search(
        rf"Predict model=rps version={version} batch=3 code=OK duration_ms=\d+\.\d", log
    ), log
    assert re.search(r"Predict model=rps version=7 batch=1 code=NOT_FOUND duration_ms=", log), log
    assert re.search(r"GetModelStatus model=rps version=- batch=- code=OK duration_ms=", log), log


def test_start_log_names_stand_in(model_server):
    log = model_server.log.read_text()
    assert "development stand-in for TensorFlow Serving" in log
    assert f"listening on {model_server.address}" in log


@dataclass
class PollingRun:
    """What one server on a temporary base path did as versions 2 and 3 appeared."""

    pickup_seconds: float
    results: dict
    returncode: int
    log: str


@pytest.fixture(scope="module")
def polling_run(tmp_path_factory) -> PollingRun:
    """Serve version 1, add a broken version 2, then a copy as version 3, then send SIGTERM.

    One server covers the three cases because each start costs 5 to 12 s.
    """
    directory = tmp_path_factory.mktemp("polling")
    base_path = directory / "rps"
    copy_version(1, base_path)
    server = start_model_server(
        directory / "server.log", base_path, "--file_system_poll_wait_seconds", "1"
    )
    try:
        (base_path / "2").mkdir()
        (base_path / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
        wait_for_log(server, "failed to load version 2", timeout=60)

        shutil.copytree(base_path / "1", base_path / "3")
        pickup_seconds = wait_for_log(server, "from version 1 to version 3", timeout=60)
        results = run_probe(server.address, "status", "batch")

        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=30)
    finally:
        stop(server.process)

    return PollingRun(pickup_seconds, results, returncode, server.log.read_text())


def test_broken_version_skipped(polling_run):
    assert "failed to load version 2" in polling_run.log
    assert "Still serving version 1." in polling_run.log

    versions = {v["version"]: v for v in polling_run.results["status"]["versions"]}
    assert versions[2]["state"] == "END"
    assert versions[2]["error_code"] != 0
    assert "cannot read the SavedModel" in versions[2]["error_message"]


def test_new_version_picked_up(polling_run):
    assert polling_run.pickup_seconds < PICKUP_LIMIT

    batch = polling_run.results["batch"]
    assert batch["code"] == "OK", batch
    assert batch["version"] == 3

    versions = polling_run.results["status"]["versions"]
    assert [(v["version"], v["state"]) for v in versions] == [
        (3, "AVAILABLE"), (2, "END"), (1, "END"),
    ]


def test_sigterm_exits_zero(polling_run):
    assert polling_run.returncode == 0, polling_run.log
    assert "received SIGTERM" in polling_run.log
    assert re.search(r"serving\.model_server: stopped$", polling_run.log, re.MULTILINE)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model_base_path", "{empty}"], "no model version under {empty}"),
        (["--model_base_path={missing}"], "{missing} does not exist"),
    ],
    ids=["empty", "missing"],
)
def test_no_version_exits_nonzero(tmp_path, arguments, message):
    paths = {"empty": tmp_path, "missing": tmp_path / "missing"}
    completed = run_server_until_exit(
        "--port=0", "--model_name=rps", *(a.format(**paths) for a in arguments)
    )
    output = (completed.stdout + completed.stderr).strip()

    assert completed.returncode == 1
    assert message.format(**paths) in output
    assert len(output.splitlines()) == 1, output


def test_unloadable_only_version_exits_nonzero(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    completed = run_server_until_exit(
        "--port", "0", "--model_name", "rps", "--model_base_path", str(tmp_path)
    )

    assert completed.returncode == 1
    assert "failed to load version 1" in completed.stderr
    assert "no version of model rps" in completed.stderr


def test_port_in_use_exits_nonzero(model_server):
    completed = run_server_until_exit(
        "--port", str(model_server.port), "--model_name", "rps",
        "--model_base_path", str(MODEL_BASE_PATH), "--file_system_poll_wait_seconds", "0",
    )

    assert completed.returncode == 1
    assert f"cannot listen on {model_server.address}" in completed.stderr


def test_invalid_port_exits_two():
    completed = run_server_until_exit(
        "--port", "70000", "--model_name", "rps", "--model_base_path", str(MODEL_BASE_PATH)
    )

    assert completed.returncode == 2
    assert "70000 is not a port number" in completed.stderr
