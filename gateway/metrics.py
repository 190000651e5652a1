"""Prometheus metrics of the gateway and the GET /metrics route that exposes them.

Under gunicorn, gateway/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before
the workers fork, so every worker writes its samples to files in that folder
and /metrics sums them over all workers. Without that variable (Flask's test
client, `flask run`) the metrics of the one process are exposed.
"""

import os

from flask import Blueprint, Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from gateway.messages import LOW_CONFIDENCE, NO_HAND

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Route label of requests that matched no route, so that scanners probing
# random paths cannot create one time series per path.
UNMATCHED_ROUTE = "unmatched"

# Method label of any other method, for the same reason.
OTHER_METHOD = "other"
_KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

# Reason label of an `uncertain_reason` value that is not one of the known
# reasons, so that a model cannot create one time series per string it returns.
OTHER_REASON = "other"
_KNOWN_REASONS = frozenset((NO_HAND, LOW_CONFIDENCE))

# Upper bounds in seconds. A model call that hits the default 5 s deadline
# lands in the 10 s bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Images per Predict call. The default limit is 16 files per request.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

REQUESTS = Counter(
    "rps_gateway_requests",
    "HTTP requests answered, by route pattern, method and status code.",
    ("route", "method", "status"),
)
REQUEST_DURATION = Histogram(
    "rps_gateway_request_duration_seconds",
    "Time from the start of a request to its reply, by route pattern.",
    ("route",),
    buckets=LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "rps_gateway_stage_duration_seconds",
    "Time spent in one stage of a request: preprocess (decode, convert, resize) "
    "or model (the gRPC calls to the model server). These are the *_ms fields "
    "of the request log line.",
    ("stage",),
    buckets=LATENCY_BUCKETS,
)
MODEL_SERVER_ERRORS = Counter(
    "rps_gateway_model_server_errors",
    "Failed gRPC calls to the model server, by method and gRPC status code.",
    ("method", "code"),
)
BATCH_SIZE = Histogram(
    "rps_gateway_batch_size",
    "Images sent in one Predict call.",
    buckets=BATCH_SIZE_BUCKETS,
)
UNCERTAIN_PREDICTIONS = Counter(
    "rps_gateway_uncertain_predictions",
    "Predictions that the model flagged as uncertain, by its reason: no_hand, "
    "low_confidence, or other for a reason this gateway does not know.",
    ("reason",),
)

blueprint = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    """Register the GET /metrics route."""
    app.register_blueprint(blueprint)


def observe_request(
    route: str | None, method: str, status: int, stage_milliseconds: dict[str, float],
    total_milliseconds: float,
) -> None:
    """Count one finished request and record its stage and total times, given in ms."""
    route = route or UNMATCHED_ROUTE
    method = method if method in _KNOWN_METHODS else OTHER_METHOD
    REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    REQUEST_DURATION.labels(route=route).observe(total_milliseconds / 1000.0)
    for stage, milliseconds in stage_milliseconds.items():
        STAGE_DURATION.labels(stage=stage).observe(milliseconds / 1000.0)


def count_model_server_error(method: str, code: str) -> None:
    """Count one failed gRPC call by method and status code name, such as UNAVAILABLE."""
    MODEL_SERVER_ERRORS.labels(method=method, code=code).inc()


def observe_batch_size(size: int) -> None:
    """Record the number of images in one Predict call."""
    BATCH_SIZE.observe(size)


def count_uncertain_prediction(reason: str) -> None:
    """Count one prediction the model flagged as uncertain, by its `uncertain_reason`."""
    reason = reason if reason in _KNOWN_REASONS else OTHER_REASON
    UNCERTAIN_PREDICTIONS.labels(reason=reason).inc()


@blueprint.get("/metrics")
def metrics() -> Response:
    """Expose the metrics in Prometheus' text format, summed over all gunicorn workers."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
