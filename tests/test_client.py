"""Tests of the `rps-classify` client, in-process and as a subprocess, against the real gateway."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from client.cli import Environment, format_prediction, main, plan_batches
from client.errors import GatewayFailed
from tests.conftest import ROOT, SAMPLE_LABELS, SAMPLES, free_port, start_gateway, stop

# The tests that send grey_image to the session's gateway expect the committed model
# to judge its certainty (version 2 or later) and to flag that image as "no_hand".
# They fail while version 1 is the latest committed version.

# One output line, for example
# `rock1.png: rock (99.2%), model rps v1, server time 2026-12-04 19:20:00+00:00`, with a
# note such as `uncertain: not a hand gesture, ` before `model` for an uncertain prediction.
LINE = re.compile(
    r"^(?P<name>[^:]+): (?P<label>rock|paper|scissors) \((?P<percent>\d{1,3}\.\d)%\), "
    r"(?:(?P<note>uncertain(?:: [^,]+)?), )?"
    r"model rps v(?P<version>\d+), "
    r"server time (?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2})$"
)

# Maximum seconds for a subprocess, which imports requests and makes one local request.
SUBPROCESS_TIMEOUT = 60


@dataclass
class Run:
    """Exit status and output of one CLI run."""

    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, environ: dict[str, str] | None = None, samples_dir: Path = SAMPLES) -> Run:
    """Run main() in-process with captured streams and only the given environment variables."""
    stdout, stderr = io.StringIO(), io.StringIO()
    environment = Environment(
        stdout=stdout, stderr=stderr, environ=environ or {}, samples_dir=samples_dir
    )
    code = main(list(args), environment)
    return Run(code, stdout.getvalue(), stderr.getvalue())


def run_subprocess(*command: str, cwd: Path, **env: str) -> Run:
    """Run a command with the environment of the tests plus `env`, and capture its output."""
    completed = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def error_line(run: Run) -> str:
    """Return the only stderr line of a run and check that it is a `rps-classify: error:` line."""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("rps-classify: error: "), run.stderr
    return lines[0]


def parse_lines(stdout: str) -> list[re.Match]:
    """Match every stdout line against LINE, failing on the first that does not match."""
    matches = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        assert match, f"unexpected output line: {line!r}"
        matches.append(match)
    return matches


def copy_sample(sample: str, destination: Path) -> Path:
    """Copy a bundled sample to `destination` and return the new path."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / sample, destination)
    return destination


@pytest.fixture(autouse=True)
def empty_working_dir(tmp_path, monkeypatch):
    """Run each test in an empty folder, so that bare names resolve only to samples."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def dead_url() -> str:
    """A loopback URL on a port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_server():
    """A loopback socket that accepts connections but never replies, yielded with its URL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture(scope="module")
def two_file_gateway(tmp_path_factory, model_server):
    """A second gateway that accepts at most 2 files per request."""
    log = tmp_path_factory.mktemp("two_file_gateway") / "gateway.log"
    server = start_gateway(log, model_server.address, RPS_MAX_FILES="2")
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def orphan_gateway(tmp_path_factory):
    """A gateway whose model server address has nothing listening."""
    log = tmp_path_factory.mktemp("orphan_gateway") / "gateway.log"
    server = start_gateway(log, f"127.0.0.1:{free_port()}", RPS_RPC_TIMEOUT="2")
    yield server
    stop(server.process)


# --- against the real gateway ----------------------------------------------------------


def test_samples_by_bare_name(gateway):
    started = datetime.now(timezone.utc).replace(microsecond=0)
    run = run_cli("--url", gateway.url, "rock1.png", "paper1.png", "scissors1.png")
    finished = datetime.now(timezone.utc)

    assert run.code == 0, run.stderr
    assert run.stderr == ""
    matches = parse_lines(run.stdout)
    assert [m["name"] for m in matches] == ["rock1.png", "paper1.png", "scissors1.png"]
    for match in matches:
        assert match["label"] == SAMPLE_LABELS[match["name"]]
        assert 0 <= float(match["percent"]) <= 100
        assert started <= datetime.fromisoformat(match["time"]) <= finished


def test_files_and_folder_in_one_run(gateway, tmp_path):
    folder = tmp_path / "images"
    copy_sample("rock1.png", folder / "b_rock.png")
    copy_sample("paper1.png", folder / "a_paper.PNG")
    copy_sample("scissors1.png", folder / "nested" / "scissors.png")
    (folder / "notes.txt").write_text("not an image and not sent")

    run = run_cli("--url", gateway.url, str(SAMPLES / "scissors1.png"), str(folder))

    assert run.code == 0, run.stderr
    matches = parse_lines(run.stdout)
    names = [m["name"] for m in matches]
    labels = [m["label"] for m in matches]
    assert names == ["scissors1.png", "a_paper.PNG", "b_rock.png"]
    assert labels == ["scissors", "paper", "rock"]


def test_samples_folder_is_replaceable(gateway, tmp_path):
    samples = tmp_path / "samples"
    copy_sample("rock1.png", samples / "fist.png")

    run = run_cli("--url", gateway.url, "fist.png", samples_dir=samples)

    assert run.code == 0, run.stderr
    [match] = parse_lines(run.stdout)
    assert match["name"] == "fist.png"
    assert match["label"] == "rock"


def test_json_output_shape(gateway):
    run = run_cli("--url", gateway.url, "--json", "rock1.png", "paper1.png")

    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    assert list(document) == ["predictions"]
    predictions = document["predictions"]
    assert [p["file"] for p in predictions] == ["rock1.png", "paper1.png"]
    for prediction in predictions:
        assert prediction["label"] == SAMPLE_LABELS[prediction["file"]]
        assert set(prediction["scores"]) == {"rock", "paper", "scissors"}
        assert prediction["confidence"] == max(prediction["scores"].values())
        assert 0 <= prediction["confidence"] <= 1
        assert prediction["model"]["name"] == "rps"
        assert isinstance(prediction["model"]["version"], int)
        assert datetime.fromisoformat(prediction["server_time"]).tzinfo is not None


def test_grey_image_line_notes_no_hand(gateway, grey_image):
    run = run_cli("--url", gateway.url, "rock1.png", str(grey_image))

    assert run.code == 0, run.stderr
    assert run.stderr == ""
    rock, grey = parse_lines(run.stdout)
    assert rock["note"] is None
    assert grey["name"] == "grey.png"
    assert grey["note"] == "uncertain: not a hand gesture"


def test_json_passes_certainty_fields(gateway, grey_image):
    run = run_cli("--url", gateway.url, "--json", "rock1.png", str(grey_image))

    assert run.code == 0, run.stderr
    rock, grey = json.loads(run.stdout)["predictions"]
    assert rock["uncertain"] is False
    assert rock["reason"] is None
    assert isinstance(rock["hand_probability"], float)
    assert grey["uncertain"] is True
    assert grey["reason"] == "no_hand"
    assert isinstance(grey["hand_probability"], float)


def test_version_1_lines_have_no_note(version_1_gateway, grey_image):
    text_run = run_cli("--url", version_1_gateway.url, "rock1.png", str(grey_image))
    json_run = run_cli("--url", version_1_gateway.url, "--json", str(grey_image))

    assert text_run.code == 0, text_run.stderr
    assert [match["note"] for match in parse_lines(text_run.stdout)] == [None, None]
    [prediction] = json.loads(json_run.stdout)["predictions"]
    assert prediction["uncertain"] is False
    assert prediction["reason"] is None
    assert prediction["hand_probability"] is None


def test_text_confidence_matches_json(gateway):
    text_run = run_cli("--url", gateway.url, "paper1.png")
    json_run = run_cli("--url", gateway.url, "--json", "paper1.png")

    [match] = parse_lines(text_run.stdout)
    [prediction] = json.loads(json_run.stdout)["predictions"]
    assert match["percent"] == f"{prediction['confidence'] * 100:.1f}"
    assert match["version"] == str(prediction["model"]["version"])


def test_url_from_environment(gateway):
    run = run_cli("rock1.png", environ={"RPS_GATEWAY_URL": gateway.url})

    assert run.code == 0, run.stderr
    [match] = parse_lines(run.stdout)
    assert match["label"] == "rock"


def test_url_option_overrides_environment(gateway, dead_url):
    run = run_cli("--url", gateway.url, "rock1.png", environ={"RPS_GATEWAY_URL": dead_url})

    assert run.code == 0, run.stderr


def test_non_image_file_rejected(gateway, tmp_path):
    text_file = tmp_path / "rock.txt"
    text_file.write_text("this is not an image\n")
    reply = requests.post(
        f"{gateway.url}/classify",
        files=[("file", ("rock.txt", text_file.read_bytes(), "application/octet-stream"))],
        timeout=30,
    )

    run = run_cli("--url", gateway.url, str(text_file))

    assert run.code == 4
    assert run.stdout == ""
    line = error_line(run)
    assert reply.json()["detail"] in line
    assert "rock.txt" in line


def test_batches_stay_within_batch_size(two_file_gateway, tmp_path):
    folder = tmp_path / "images"
    for index in range(5):
        copy_sample("rock1.png", folder / f"rock{index}.png")

    run = run_cli("--url", two_file_gateway.url, "--batch-size", "2", str(folder))

    assert run.code == 0, run.stderr
    names = [m["name"] for m in parse_lines(run.stdout)]
    assert names == [f"rock{index}.png" for index in range(5)]


def test_batch_above_gateway_limit_rejected(two_file_gateway):
    run = run_cli(
        "--url", two_file_gateway.url, "--batch-size", "3",
        "rock1.png", "paper1.png", "scissors1.png",
    )

    assert run.code == 4
    assert "HTTP 413" in error_line(run)


def test_failed_batch_keeps_earlier_lines(two_file_gateway, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    arguments = [
        "--url", two_file_gateway.url, "--batch-size", "2",
        "rock1.png", "paper1.png", str(text_file),
    ]

    text_run = run_cli(*arguments)
    json_run = run_cli("--json", *arguments)

    assert text_run.code == 4
    assert [m["name"] for m in parse_lines(text_run.stdout)] == ["rock1.png", "paper1.png"]
    assert json_run.code == 4
    assert json_run.stdout == ""


def test_model_server_down_exits_5(orphan_gateway):
    run = run_cli("--url", orphan_gateway.url, "rock1.png")

    assert run.code == 5
    assert run.stdout == ""
    assert re.search(r"\(HTTP 50[234] model_server_\w+\)$", error_line(run))


def test_subprocess_classifies_samples(gateway, tmp_path):
    run = run_subprocess(
        sys.executable, "-m", "client", "--url", gateway.url,
        "rock1.png", "paper1.png", "scissors1.png",
        cwd=tmp_path,
    )

    assert run.code == 0, run.stderr
    assert run.stderr == ""
    matches = parse_lines(run.stdout)
    assert {m["name"]: m["label"] for m in matches} == SAMPLE_LABELS


def test_subprocess_non_image_one_line(gateway, tmp_path):
    (tmp_path / "rock.txt").write_text("this is not an image\n")

    run = run_subprocess(
        sys.executable, "-m", "client", "--url", gateway.url, "rock.txt", cwd=tmp_path
    )

    assert run.code == 4
    assert "Traceback" not in run.stderr
    assert "rock.txt" in error_line(run)


def test_installed_command_reads_url_variable(gateway, tmp_path):
    command = Path(sys.executable).with_name("rps-classify")
    assert command.exists(), f"{command} is not installed; run `make install`"

    run = run_subprocess(str(command), "scissors1.png", cwd=tmp_path, RPS_GATEWAY_URL=gateway.url)

    assert run.code == 0, run.stderr
    [match] = parse_lines(run.stdout)
    assert match["label"] == "scissors"


# --- failures that need no gateway -------------------------------------------------------


def test_gateway_down_exits_3(dead_url):
    run = run_cli("--url", dead_url, "rock1.png")

    assert run.code == 3
    assert run.stdout == ""
    expected = f"rps-classify: error: cannot reach the gateway at {dead_url}: connection refused"
    assert error_line(run) == expected


def test_gateway_down_subprocess_one_line(dead_url, tmp_path):
    run = run_subprocess(
        sys.executable, "-m", "client", "rock1.png", cwd=tmp_path, RPS_GATEWAY_URL=dead_url
    )

    assert run.code == 3
    assert dead_url in error_line(run)


def test_url_variable_used_when_no_option(dead_url):
    run = run_cli("rock1.png", environ={"RPS_GATEWAY_URL": dead_url})

    assert run.code == 3
    assert dead_url in error_line(run)


def test_silent_gateway_times_out(silent_server):
    _, url = silent_server

    run = run_cli("--url", url, "--timeout", "0.5", "rock1.png")

    assert run.code == 3
    assert f"the gateway at {url} did not reply within 0.5 s" in error_line(run)


def test_interrupt_exits_130(silent_server, tmp_path):
    listener, url = silent_server
    listener.settimeout(SUBPROCESS_TIMEOUT)
    process = subprocess.Popen(
        [sys.executable, "-m", "client", "--url", url, "rock1.png"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the request has arrived, the client is inside main() waiting for the reply.
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(SUBPROCESS_TIMEOUT)
            assert connection.recv(64).startswith(b"POST /classify ")
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines() == ["rps-classify: interrupted"]
    assert stdout == ""


def test_missing_file_exits_2(dead_url):
    run = run_cli("--url", dead_url, "missing.png")

    assert run.code == 2
    assert run.stdout == ""
    line = error_line(run)
    assert "missing.png: no such file or folder" in line
    assert "rock1.png" in line  # The message lists the available samples.


def test_path_not_looked_up_in_samples(dead_url):
    bare_run = run_cli("--url", dead_url, "rock1.png")
    path_run = run_cli("--url", dead_url, "./rock1.png")

    # Exit 3 shows that the bare name was found and the request was attempted.
    assert bare_run.code == 3
    assert path_run.code == 2
    assert "./rock1.png: no such file or folder" in error_line(path_run)


def test_folder_without_images_exits_2(dead_url, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")

    run = run_cli("--url", dead_url, str(folder))

    assert run.code == 2
    assert "contains no image files" in error_line(run)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "the following arguments are required: IMAGE"),
        (["--timeout", "0", "rock1.png"], "argument --timeout: expected a positive number"),
        (["--timeout", "nan", "rock1.png"], "argument --timeout: expected a positive number"),
        (["--batch-size", "0", "rock1.png"], "argument --batch-size: expected a whole number"),
        (["--url", "ftp://127.0.0.1", "rock1.png"], "invalid gateway URL 'ftp://127.0.0.1'"),
        (["--url", "http://127.0.0.1:99999", "rock1.png"], "invalid gateway URL"),
        (["--no-such-option", "rock1.png"], "unrecognized arguments: --no-such-option"),
        ([""], "an image argument is empty"),
    ],
)
def test_invalid_arguments_exit_2(arguments, message):
    run = run_cli(*arguments)

    assert run.code == 2
    assert run.stdout == ""
    last_line = run.stderr.splitlines()[-1]
    assert last_line.startswith("rps-classify: error: ")
    assert message in last_line


def test_invalid_url_variable_named():
    run = run_cli("rock1.png", environ={"RPS_GATEWAY_URL": "localhost:5000"})

    assert run.code == 2
    assert "from RPS_GATEWAY_URL" in error_line(run)


def test_help_lists_exit_codes():
    run = run_cli("--help")

    assert run.code == 0
    assert run.stderr == ""
    assert run.stdout.startswith("usage: rps-classify ")
    for code in (0, 2, 3, 4, 5, 130):
        assert re.search(rf"^  {code} +\S", run.stdout, re.MULTILINE), f"exit code {code} missing"


# --- formatting of one prediction ---------------------------------------------------------


def test_format_prediction_exact_line():
    prediction = {
        "file": "rock1.png",
        "label": "rock",
        "confidence": 0.99234,
        "scores": {"paper": 0.005, "rock": 0.99234, "scissors": 0.00266},
        "model": {"name": "rps", "version": 1},
        "server_time": "2026-12-04T19:20:00.987+00:00",
    }

    line = format_prediction("rock1.png", prediction)

    assert line == "rock1.png: rock (99.2%), model rps v1, server time 2026-12-04 19:20:00+00:00"


@pytest.mark.parametrize(
    ("certainty", "note"),
    [
        ({"uncertain": True, "reason": "no_hand"}, "uncertain: not a hand gesture, "),
        ({"uncertain": True, "reason": "low_confidence"}, "uncertain: not sure which gesture, "),
        ({"uncertain": True, "reason": "blurry"}, 'uncertain: reason "blurry", '),
        ({"uncertain": True, "reason": "bad\x1b[31m"}, 'uncertain: reason "bad\\u001b[31m", '),
        ({"uncertain": True, "reason": None}, "uncertain, "),
        ({"uncertain": False, "reason": None, "hand_probability": 0.99}, ""),
        ({"uncertain": False, "reason": None, "hand_probability": None}, ""),
        ({}, ""),
    ],
)
def test_format_prediction_uncertain_note(certainty, note):
    prediction = {
        "label": "rock",
        "confidence": 0.41,
        "model": {"name": "rps", "version": 2},
        "server_time": "2026-12-04T19:20:00.987+00:00",
        **certainty,
    }

    line = format_prediction("grey.png", prediction)

    assert line == (
        f"grey.png: rock (41.0%), {note}model rps v2, server time 2026-12-04 19:20:00+00:00"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"label": None},
        {"confidence": "high"},
        {"confidence": True},
        {"uncertain": "yes"},
        {"uncertain": None},
        {"reason": 3},
        {"model": {"name": "rps"}},
        {"server_time": "yesterday"},
        {"server_time": None},
    ],
)
def test_format_prediction_invalid_field(change):
    prediction = {
        "label": "rock",
        "confidence": 0.9,
        "model": {"name": "rps", "version": 1},
        "server_time": "2026-12-04T19:20:00+00:00",
        **change,
    }

    with pytest.raises(GatewayFailed, match=repr(next(iter(change)))):
        format_prediction("rock1.png", prediction)


def test_batches_split_by_bytes(tmp_path):
    sizes = [5, 5, 5, 12, 1]
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"image{index}.png"
        path.write_bytes(b"x" * size)
        paths.append(path)

    batches = plan_batches(paths, max_files=16, max_bytes=10)

    assert [[p.name for p in batch] for batch in batches] == [
        ["image0.png", "image1.png"],
        ["image2.png"],
        ["image3.png"],
        ["image4.png"],
    ]


def test_batches_split_by_count(tmp_path):
    paths = []
    for index in range(5):
        path = tmp_path / f"image{index}.png"
        path.write_bytes(b"x")
        paths.append(path)

    batches = plan_batches(paths, max_files=2, max_bytes=1000)

    assert [len(batch) for batch in batches] == [2, 2, 1]


def test_large_folder_sent_in_byte_batches(gateway, tmp_path):
    rock = (SAMPLES / "rock1.png").read_bytes()
    for index in range(3):
        (tmp_path / f"rock{index}.png").write_bytes(rock)

    run = run_cli("--url", gateway.url, "--batch-bytes", str(len(rock) + 1), str(tmp_path))

    assert run.code == 0, run.stderr
    assert [match["label"] for match in parse_lines(run.stdout)] == ["rock"] * 3
