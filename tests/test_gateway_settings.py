"""Settings parsing, and the app's own replies that need no model server.

These run the app in-process with Flask's test client; requests that would
reach the model server are in test_gateway_routes.py and test_gateway_faults.py.
"""

import logging
import os
import subprocess
import sys

import pytest

from gateway.app import create_app
from gateway.preprocess import DEFAULT_MAX_PIXELS
from gateway.settings import Settings, SettingsError, load_settings
from tests.conftest import ROOT, SAMPLES, free_port

# Seconds for gunicorn to give up on a worker that fails to boot.
GUNICORN_EXIT_TIMEOUT = 60

# Nothing listens here; the tests below must not reach a model server anyway.
UNUSED_MODEL_SERVER = "127.0.0.1:9"


@pytest.fixture
def client():
    """A test client for an app whose limits are small enough to hit cheaply."""
    app = create_app(
        {"model_server": UNUSED_MODEL_SERVER, "max_upload_bytes": 1000, "max_files": 2}
    )
    return app.test_client()


def test_load_settings_without_environment_uses_defaults():
    settings = load_settings(environ={})

    assert settings == Settings()
    assert settings.model_server == "localhost:8500"
    assert settings.model_name == "rps"
    assert settings.rpc_timeout == 5.0
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.max_files == 16
    assert settings.max_pixels == DEFAULT_MAX_PIXELS
    assert settings.metadata_ttl == 10.0
    assert settings.log_level == "INFO"


def test_load_settings_reads_every_variable():
    environ = {
        "RPS_MODEL_SERVER": "127.0.0.1:9000",
        "RPS_MODEL_NAME": "hands",
        "RPS_RPC_TIMEOUT": "2.5",
        "RPS_MAX_UPLOAD_BYTES": "1048576",
        "RPS_MAX_FILES": "4",
        "RPS_MAX_PIXELS": "1000000",
        "RPS_METADATA_TTL": "0",
        "RPS_LOG_LEVEL": "debug",
    }

    settings = load_settings(environ=environ)

    assert settings == Settings(
        model_server="127.0.0.1:9000",
        model_name="hands",
        rpc_timeout=2.5,
        max_upload_bytes=1048576,
        max_files=4,
        max_pixels=1000000,
        metadata_ttl=0.0,
        log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RPS_MODEL_SERVER", ""),
        ("RPS_MODEL_SERVER", "local host:8500"),
        ("RPS_MODEL_NAME", "   "),
        ("RPS_RPC_TIMEOUT", "fast"),
        ("RPS_RPC_TIMEOUT", "0"),
        ("RPS_RPC_TIMEOUT", "-1"),
        ("RPS_RPC_TIMEOUT", "nan"),
        ("RPS_RPC_TIMEOUT", "inf"),
        ("RPS_MAX_UPLOAD_BYTES", "20MB"),
        ("RPS_MAX_UPLOAD_BYTES", "1.5"),
        ("RPS_MAX_UPLOAD_BYTES", "0"),
        ("RPS_MAX_FILES", "-3"),
        ("RPS_MAX_PIXELS", ""),
        ("RPS_METADATA_TTL", "-1"),
        ("RPS_LOG_LEVEL", "LOUD"),
    ],
)
def test_load_settings_invalid_variable_names_it(variable, value):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={variable: value})

    assert variable in str(raised.value)
    assert repr(value) in str(raised.value)


def test_load_settings_overrides_win_over_environment():
    settings = load_settings(
        environ={"RPS_MAX_FILES": "4", "RPS_MODEL_NAME": "hands"},
        overrides={"max_files": 8},
    )

    assert settings.max_files == 8
    assert settings.model_name == "hands"


def test_load_settings_invalid_override_names_field():
    with pytest.raises(SettingsError, match="max_files"):
        load_settings(environ={}, overrides={"max_files": 2.5})


def test_load_settings_unknown_override_raises():
    with pytest.raises(SettingsError, match="max_file"):
        load_settings(environ={}, overrides={"max_file": 3})


def test_create_app_invalid_environment_raises(monkeypatch):
    monkeypatch.setenv("RPS_MAX_FILES", "many")

    with pytest.raises(SettingsError, match="RPS_MAX_FILES"):
        create_app()


def test_gunicorn_invalid_setting_exits_with_variable_name(tmp_path):
    environment = {
        **os.environ,
        "RPS_RPC_TIMEOUT": "soon",
        "RPS_GATEWAY_BIND": f"127.0.0.1:{free_port()}",
        "RPS_GATEWAY_WORKERS": "1",
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "gateway/gunicorn.conf.py",
        "gateway.app:create_app()",
    ]

    result = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=GUNICORN_EXIT_TIMEOUT,
    )

    assert result.returncode != 0
    assert "invalid RPS_RPC_TIMEOUT (seconds): 'soon'" in result.stderr


def test_healthz_in_process_returns_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_classify_body_over_limit_returns_413(client):
    response = client.post("/classify", data=b"\x89PNG" + b"\0" * 2000, content_type="image/png")

    assert response.status_code == 413
    assert response.get_json() == {
        "error": "payload_too_large",
        "detail": "the request body exceeds the limit of 1000 bytes",
    }


def test_classify_too_many_files_returns_413(client):
    files = [(SAMPLES / "rock1.png").open("rb") for _ in range(3)]
    app = create_app({"model_server": UNUSED_MODEL_SERVER, "max_files": 2})

    try:
        response = app.test_client().post(
            "/classify", data={"file": [(file, "rock1.png") for file in files]}
        )
    finally:
        for file in files:
            file.close()

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert "3 files" in response.get_json()["detail"]


def test_classify_too_many_form_parts_returns_413():
    app = create_app({"model_server": UNUSED_MODEL_SERVER})
    fields = {f"field{index}": "x" for index in range(app.config["MAX_FORM_PARTS"] + 1)}

    response = app.test_client().post(
        "/classify", data=fields, content_type="multipart/form-data"
    )

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert "form parts" in response.get_json()["detail"]


def test_request_id_supplied_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "probe-42"})

    assert response.headers["X-Request-ID"] == "probe-42"


@pytest.mark.parametrize("supplied", [None, "", "x" * 200, "id with spaces; and=signs"])
def test_request_id_missing_or_unsafe_is_generated(client, supplied):
    headers = {} if supplied is None else {"X-Request-ID": supplied}

    response = client.get("/healthz", headers=headers)

    assert len(response.headers["X-Request-ID"]) == 32
    assert response.headers["X-Request-ID"] != supplied


def test_unhandled_error_returns_500_without_text(caplog):
    app = create_app({"model_server": UNUSED_MODEL_SERVER})
    secret = "internal-detail-5b1e"

    def fail():
        raise RuntimeError(secret)

    # A route of this test only, because no gateway route fails on demand.
    app.add_url_rule("/fail", view_func=fail)
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.addHandler(caplog.handler)
    try:
        response = app.test_client().get("/fail")
    finally:
        gateway_logger.removeHandler(caplog.handler)

    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert secret not in response.get_data(as_text=True)
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert tracebacks, "the error was not logged with a traceback"
    assert tracebacks[0].levelno == logging.ERROR
    assert secret in str(tracebacks[0].exc_info[1])


def test_not_ready_is_logged_below_error(client, caplog):
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.addHandler(caplog.handler)
    try:
        response = client.get("/readyz")
    finally:
        gateway_logger.removeHandler(caplog.handler)

    assert response.status_code == 503
    levels = {record.name: record.levelno for record in caplog.records}
    assert levels["gateway.request_log"] == logging.INFO
    assert levels["gateway.model_client"] == logging.WARNING


def test_client_errors_log_no_traceback(client, caplog):
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.addHandler(caplog.handler)
    try:
        client.get("/missing")
        client.post("/classify", data=b"text", content_type="text/plain")
    finally:
        gateway_logger.removeHandler(caplog.handler)

    request_lines = [record for record in caplog.records if record.name == "gateway.request_log"]
    assert [record.levelno for record in request_lines] == [logging.WARNING, logging.WARNING]
    assert not any(record.exc_info for record in caplog.records)
