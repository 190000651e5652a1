"""gRPC front end of the local model server, on TensorFlow Serving's service definitions.

PredictionService implements Predict and GetModelMetadata, and ModelService
implements GetModelStatus. The other RPCs return UNIMPLEMENTED. Each request is
logged on one line with its method, model, version, batch size, status code and
duration.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import inference
from serving.inference import ServingError
from serving.versions import VersionManager

logger = logging.getLogger(__name__)

# Codes that mean the request was wrong, not the server, so they are logged at
# INFO without a traceback.
_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


@dataclass
class RequestRecord:
    """The fields of one request's log line, filled in as the request proceeds."""

    method: str
    model: str
    version: int | None = None
    batch: int | None = None


def handle(
    context: grpc.ServicerContext,
    record: RequestRecord,
    call: Callable[[RequestRecord], Any],
) -> Any:
    """Run `call`, log the request, and abort the RPC with the status of any failure."""
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    message = ""
    response = None

    try:
        response = call(record)
    except ServingError as error:
        code, message = error.code, error.message
    except Exception:
        logger.exception("%s failed with an unexpected error", record.method)
        code = grpc.StatusCode.INTERNAL
        message = f"{record.method} failed with an internal error (see the model server log)"

    duration_ms = (time.perf_counter() - started) * 1000
    level = logging.INFO if code == grpc.StatusCode.OK or code in _CLIENT_ERRORS else logging.ERROR
    logger.log(
        level,
        "%s model=%s version=%s batch=%s code=%s duration_ms=%.1f%s",
        record.method,
        record.model or "-",
        "-" if record.version is None else record.version,
        "-" if record.batch is None else record.batch,
        code.name,
        duration_ms,
        f" error={message!r}" if message else "",
    )

    if code != grpc.StatusCode.OK:
        context.abort(code, message)
    return response


def new_record(method: str, model_spec: model_pb2.ModelSpec) -> RequestRecord:
    """Start a log record with the model name and version the request names."""
    requested = model_spec.version.value if model_spec.HasField("version") else None
    return RequestRecord(method, model_spec.name, version=requested)


def require_model_spec(request: Any) -> None:
    """Raise INVALID_ARGUMENT if the request has no model_spec, as TensorFlow Serving does."""
    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def batch_size(request: predict_pb2.PredictRequest) -> int | None:
    """Return the first dimension of the request's first input, if it has one."""
    for alias in sorted(request.inputs):
        dims = request.inputs[alias].tensor_shape.dim
        return dims[0].size if dims else None
    return None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TensorFlow Serving's PredictionService: Predict and GetModelMetadata."""

    def __init__(self, manager: VersionManager) -> None:
        self._manager = manager

    def Predict(self, request, context):
        def call(record: RequestRecord) -> predict_pb2.PredictResponse:
            require_model_spec(request)
            record.batch = batch_size(request)
            servable = self._manager.resolve(request.model_spec)
            record.version = servable.version
            return inference.predict(servable, request, self._manager.max_input_bytes)

        return handle(context, new_record("Predict", request.model_spec), call)

    def GetModelMetadata(self, request, context):
        def call(record: RequestRecord):
            require_model_spec(request)
            inference.check_metadata_fields(request)
            servable = self._manager.resolve(request.model_spec)
            record.version = servable.version
            return inference.get_model_metadata(servable, request.model_spec.name)

        return handle(context, new_record("GetModelMetadata", request.model_spec), call)

    def Classify(self, request, context):
        return unimplemented("Classify", request.model_spec, context)

    def Regress(self, request, context):
        return unimplemented("Regress", request.model_spec, context)

    def MultiInference(self, request, context):
        model_spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return unimplemented("MultiInference", model_spec, context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """TensorFlow Serving's ModelService: GetModelStatus."""

    def __init__(self, manager: VersionManager) -> None:
        self._manager = manager

    def GetModelStatus(self, request, context):
        def call(record: RequestRecord) -> get_model_status_pb2.GetModelStatusResponse:
            require_model_spec(request)
            model_spec = request.model_spec
            # Like TensorFlow Serving, GetModelStatus ignores version_label.
            version = model_spec.version.value if model_spec.HasField("version") else None
            statuses = self._manager.version_statuses(model_spec.name, version)
            return get_model_status_pb2.GetModelStatusResponse(model_version_status=statuses)

        return handle(context, new_record("GetModelStatus", request.model_spec), call)

    def HandleReloadConfigRequest(self, request, context):
        return unimplemented("HandleReloadConfigRequest", model_pb2.ModelSpec(), context)


def unimplemented(method: str, model_spec: model_pb2.ModelSpec, context: grpc.ServicerContext):
    """Log the request and abort it with UNIMPLEMENTED."""

    def call(record: RequestRecord) -> None:
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not implemented by the local model server, a development "
            "stand-in for TensorFlow Serving; it implements Predict, GetModelMetadata "
            "and GetModelStatus",
        )

    return handle(context, new_record(method, model_spec), call)


def add_services(server: grpc.Server, manager: VersionManager) -> None:
    """Register PredictionService and ModelService on `server`."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
