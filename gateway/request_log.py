"""Request ids, per-stage timings and one log line per request.

The same timings feed the Prometheus histograms in gateway.metrics, so the log
line and /metrics report the same measurements.
"""

import logging
import re
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, Response, g, has_request_context, request

from gateway import metrics

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"

READINESS_ROUTE = "/readyz"

# A client-supplied id is echoed and logged only if it is short and plain,
# so that it cannot inject text into log lines or headers.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class _RequestIdFilter(logging.Filter):
    """Add the current request id (or "-") to every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        else:
            record.request_id = "-"
        return True


def configure_logging(level: str) -> None:
    """Send the `gateway` loggers to stderr at `level`. Later calls change only the level."""
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.setLevel(level)
    if any(isinstance(handler, _GatewayHandler) for handler in gateway_logger.handlers):
        return

    handler = _GatewayHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.addFilter(_RequestIdFilter())
    gateway_logger.addHandler(handler)
    gateway_logger.propagate = False


class _GatewayHandler(logging.StreamHandler):
    """The stderr handler configure_logging installs, recognised by type on later calls."""


def init_app(app: Flask) -> None:
    """Register the hooks that assign request ids and log each request."""
    app.before_request(_start_request)
    app.after_request(_finish_request)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the time spent in the `with` block to the request's `name` stage, in ms."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record_stage(name, (time.perf_counter() - started) * 1000.0)


def record_stage(name: str, milliseconds: float) -> None:
    """Add `milliseconds` to the request's `name` stage."""
    g.timings[name] = g.timings.get(name, 0.0) + milliseconds


def stage_milliseconds(name: str) -> float:
    """Return the time recorded so far for the request's `name` stage, in ms."""
    return g.timings.get(name, 0.0)


def set_file_count(count: int) -> None:
    """Record how many files the request carried, for the request log line."""
    g.file_count = count


def set_error(code: str, detail: str) -> None:
    """Record the error code and detail sent to the client, for the request log line."""
    g.error = f"{code}: {detail}"


def _start_request() -> None:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = supplied if _REQUEST_ID_PATTERN.fullmatch(supplied) else uuid.uuid4().hex
    g.started = time.perf_counter()
    g.timings = {}
    g.file_count = 0


def _finish_request(response: Response) -> Response:
    # Flask skips the remaining before_request hooks when one of them fails.
    if "request_id" not in g:
        _start_request()
    response.headers[REQUEST_ID_HEADER] = g.request_id

    total = (time.perf_counter() - g.started) * 1000.0
    fields = [f"files={g.file_count}"]
    fields += [f"{name}_ms={value:.1f}" for name, value in g.timings.items()]
    fields.append(f"total_ms={total:.1f}")
    if "error" in g:
        fields.append(f"error={g.error!r}")
    status = response.status_code
    route = request.url_rule.rule if request.url_rule is not None else None
    logger.log(
        _log_level(status, route),
        "%s %s %d %s", request.method, _loggable_path(), status, " ".join(fields)
    )

    metrics.observe_request(route, request.method, status, g.timings, total)
    return response


def _log_level(status: int, route: str | None) -> int:
    # A 503 from the readiness route is the expected reply while the model
    # loads, and probes poll every second or so. The model client logs the cause.
    if route == READINESS_ROUTE and status == 503:
        return logging.INFO
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    return logging.INFO


def _loggable_path() -> str:
    # Percent-encode the decoded path again, so that a client cannot write line
    # breaks, terminal escapes or NUL bytes into the log.
    return urllib.parse.quote(request.path, safe="/:@!$&'()*+,;=-._~")
