"""Call TensorFlow Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus).

This is the only gateway module that touches gRPC. It reads the model's input
name and size from the served signature, and the class names and the optional
certainty outputs from each Predict reply, so a new model version needs no
gateway change. gRPC failures become ModelServerError subclasses whose detail
is safe to send to clients, and the upstream text goes to the log only.
"""

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np

from gateway import metrics
from gateway.errors import (
    GatewayError,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    PayloadTooLarge,
)
from gateway.messages import (
    ModelMetadata,
    Prediction,
    UnexpectedReply,
    build_metadata_request,
    build_predict_request,
    build_status_request,
    highest_available_version,
    parse_metadata,
    parse_prediction,
)
from gateway.tfs import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

logger = logging.getLogger(__name__)

# gRPC retries a call that failed with UNAVAILABLE up to twice, 0.2 to 0.6 s
# later, while the deadline allows. Each gunicorn worker has its own channel, so
# a worker whose channel is still in reconnect backoff when the model server
# comes up would otherwise return 503 while another worker already returns 200.
# All three methods are read-only, so a retry cannot apply anything twice.
RETRY_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [
            {"service": "tensorflow.serving.PredictionService"},
            {"service": "tensorflow.serving.ModelService"},
        ],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.2s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
})

# Reconnect within 1 s of the model server coming back, instead of gRPC's
# default backoff that grows to 120 s.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", RETRY_SERVICE_CONFIG),
)

# Status codes of a pinned Predict whose cached metadata is stale, because the
# version was unloaded (NOT_FOUND) or a new version takes another input (INVALID_ARGUMENT).
_STALE_METADATA_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


# gRPC reports a message over the receiver's size limit as RESOURCE_EXHAUSTED
# with this text; other RESOURCE_EXHAUSTED errors (memory, quotas) stay 502.
_MESSAGE_TOO_LARGE = "larger than max"


class _StaleMetadata(Exception):
    """A pinned Predict failed in a way fresh metadata may fix."""


class ModelClient:
    """A per-process gRPC client for one model, with cached signature metadata.

    The channel opens on first use in the calling process (a gunicorn worker,
    after the fork) and is reused by all its threads.
    """

    def __init__(
        self, target: str, model_name: str, timeout: float, metadata_ttl: float
    ) -> None:
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self.metadata_ttl = metadata_ttl

        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: grpc.Channel | None = None
        self._prediction_stub = None
        self._model_stub = None

        self._metadata: ModelMetadata | None = None
        self._metadata_time = 0.0

    def close(self) -> None:
        """Close the channel if this process opened one."""
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None
            self._pid = None

    def _stubs(self) -> tuple[
        prediction_service_pb2_grpc.PredictionServiceStub,
        model_service_pb2_grpc.ModelServiceStub,
    ]:
        pid = os.getpid()
        with self._lock:
            # A channel inherited through fork() is unusable, so each process opens its own.
            if self._channel is None or self._pid != pid:
                channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
                self._prediction_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                self._model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
                self._channel = channel
                self._pid = pid
                logger.info("opened gRPC channel to %s in process %d", self.target, pid)
            return self._prediction_stub, self._model_stub

    def metadata(self, refresh: bool = False) -> ModelMetadata:
        """Return the model's input metadata, cached for the TTL unless `refresh` is set."""
        with self._lock:
            cached = self._metadata
            age = time.monotonic() - self._metadata_time
        if cached is not None and not refresh and age < self.metadata_ttl:
            return cached

        prediction_stub, _ = self._stubs()
        request = build_metadata_request(self.model_name)
        response = self._call("GetModelMetadata", prediction_stub.GetModelMetadata, request)
        try:
            metadata = parse_metadata(response)
        except UnexpectedReply as error:
            raise self._unexpected("GetModelMetadata", error) from None

        with self._lock:
            self._metadata = metadata
            self._metadata_time = time.monotonic()
        if metadata != cached:
            logger.info(
                "model %s version %s takes input %r of %dx%d pixels",
                self.model_name, metadata.version, metadata.input_name, *metadata.size,
            )
        return metadata

    def classify(self, prepare: Callable[[ModelMetadata], np.ndarray]) -> Prediction:
        """Run one batched Predict on the array `prepare(metadata)` returns.

        Predict pins the version from the cached metadata. When it fails with
        NOT_FOUND or INVALID_ARGUMENT, the metadata is fetched again and the
        call retried once, calling `prepare` again if the input changed.
        """
        metadata = self.metadata()
        batch = prepare(metadata)
        try:
            return self._predict(metadata, batch, retry_allowed=True)
        except _StaleMetadata as stale:
            logger.warning(
                "Predict on model %s version %s failed (%s); "
                "fetching metadata again and retrying once",
                self.model_name, metadata.version, stale,
            )

        fresh = self.metadata(refresh=True)
        if (fresh.input_name, fresh.size) != (metadata.input_name, metadata.size):
            batch = prepare(fresh)
        return self._predict(fresh, batch, retry_allowed=False)

    def _predict(
        self, metadata: ModelMetadata, batch: np.ndarray, retry_allowed: bool
    ) -> Prediction:
        prediction_stub, _ = self._stubs()
        request = build_predict_request(self.model_name, metadata, batch)
        metrics.observe_batch_size(len(batch))
        try:
            response = prediction_stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            metrics.count_model_server_error("Predict", error.code().name)
            if retry_allowed and error.code() in _STALE_METADATA_CODES:
                raise _StaleMetadata(f"{error.code().name}: {error.details()}") from error
            raise self._translate("Predict", error) from None

        try:
            prediction = parse_prediction(response, batch_size=len(batch))
        except UnexpectedReply as error:
            raise self._unexpected("Predict", error) from None
        if prediction.version is None:
            return dataclasses.replace(prediction, version=metadata.version)
        return prediction

    def available_version(self) -> int:
        """Return the highest AVAILABLE version, or raise ModelServerUnavailable."""
        _, model_stub = self._stubs()
        request = build_status_request(self.model_name)
        response = self._call("GetModelStatus", model_stub.GetModelStatus, request)

        version = highest_available_version(response)
        if version is None:
            state_name = get_model_status_pb2.ModelVersionStatus.State.Name
            states = {
                status.version: state_name(status.state)
                for status in response.model_version_status
            }
            logger.warning(
                "model %s has no AVAILABLE version; version states: %s",
                self.model_name, states or "none",
            )
            raise ModelServerUnavailable(f"model {self.model_name} has no available version")
        return version

    def _call(self, method: str, rpc: Callable, request):
        try:
            return rpc(request, timeout=self.timeout)
        except grpc.RpcError as error:
            metrics.count_model_server_error(method, error.code().name)
            raise self._translate(method, error) from None

    def _translate(self, method: str, error: grpc.RpcError) -> GatewayError:
        code = error.code()
        # Status checks come from readiness probes, which expect failures while
        # the model server starts. A failed prediction stays an error.
        level = logging.WARNING if method == "GetModelStatus" else logging.ERROR
        logger.log(
            level, "%s on model %s at %s failed: %s: %s",
            method, self.model_name, self.target, code.name, error.details(),
        )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ModelServerTimeout(f"the model server did not reply within {self.timeout:g} s")
        if code == grpc.StatusCode.UNAVAILABLE:
            return ModelServerUnavailable("the model server is unreachable; retry later")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _MESSAGE_TOO_LARGE in (
            error.details() or ""
        ):
            return PayloadTooLarge(
                "the images are too large for the model server's message size limit; "
                "send fewer images per request"
            )
        if code == grpc.StatusCode.NOT_FOUND and method != "Predict":
            return ModelServerUnavailable(
                f"model {self.model_name} is not loaded on the model server"
            )
        return ModelServerError(f"the model server failed on {method} ({code.name})")

    def _unexpected(self, method: str, error: UnexpectedReply) -> ModelServerError:
        logger.error(
            "%s on model %s returned an unexpected reply: %s", method, self.model_name, error
        )
        return ModelServerError(f"the model server sent an unexpected {method} reply")
