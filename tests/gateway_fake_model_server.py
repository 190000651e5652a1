"""A real gRPC server, built on the gateway's own stubs, that fails on demand.

The local model server cannot be made slow, return another input size or send
a malformed reply when a test needs it, so the fault tests use this server.
It implements Predict, GetModelMetadata and GetModelStatus like TensorFlow
Serving does for a model with a `serving_default` signature that takes
`image` (uint8 [batch, height, width, 3]) and returns `scores` and `classes`.
"""

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np

from gateway.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    types_pb2,
)

CLASS_NAMES = ("paper", "rock", "scissors")

# Upper bound for any configured delay, in seconds, so a stuck test cannot hang.
MAX_DELAY = 10.0


@dataclass
class Behaviour:
    """What the fake server does; tests change fields between requests."""

    model_name: str = "rps"
    version: int = 1
    size: tuple[int, int] = (150, 150)
    class_names: tuple[str, ...] = CLASS_NAMES
    # Row of scores returned for every image, in class_names order.
    scores: tuple[float, ...] = (0.1, 0.7, 0.2)
    scores_encoding: str = "tensor_content"  # or "float_val"
    state: int = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    # Method name -> seconds to wait before replying.
    delays: dict[str, float] = field(default_factory=dict)
    # Method name -> (gRPC status code, details) to fail with.
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    # Output names to leave out of Predict replies.
    omit_outputs: tuple[str, ...] = ()


@dataclass
class PredictCall:
    """One Predict request as the fake server saw it."""

    version: int | None
    input_names: list[str]
    shape: list[int]
    status: str


class _Servicer(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self, server: "FakeModelServer") -> None:
        self.server = server

    def _begin(self, method: str, context: grpc.ServicerContext) -> Behaviour:
        behaviour = self.server.behaviour
        self.server.started_calls.append(method)
        delay = min(behaviour.delays.get(method, 0.0), MAX_DELAY)
        if delay:
            self.server.released.wait(delay)
        if method in behaviour.failures:
            code, details = behaviour.failures[method]
            context.abort(code, details)
        return behaviour

    def _check_model(self, model_spec, behaviour: Behaviour, context) -> None:
        if model_spec.name != behaviour.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for {model_spec.name}")

    def GetModelMetadata(self, request, context):
        behaviour = self._begin("GetModelMetadata", context)
        self._check_model(request.model_spec, behaviour, context)

        signatures = get_model_metadata_pb2.SignatureDefMap()
        signature = signatures.signature_def["serving_default"]
        signature.method_name = "tensorflow/serving/predict"
        image = signature.inputs["image"]
        image.name = "serving_default_image:0"
        image.dtype = types_pb2.DT_UINT8
        for size in (-1, *behaviour.size, 3):
            image.tensor_shape.dim.add(size=size)
        signature.outputs["scores"].dtype = types_pb2.DT_FLOAT
        signature.outputs["classes"].dtype = types_pb2.DT_STRING

        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = behaviour.model_name
        response.model_spec.version.value = behaviour.version
        response.metadata["signature_def"].Pack(signatures)
        return response

    def GetModelStatus(self, request, context):
        behaviour = self._begin("GetModelStatus", context)
        self._check_model(request.model_spec, behaviour, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=behaviour.version, state=behaviour.state)
        return response

    def Predict(self, request, context):
        behaviour = self._begin("Predict", context)
        self._check_model(request.model_spec, behaviour, context)

        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        tensor = request.inputs["image"] if "image" in request.inputs else None
        shape = [dim.size for dim in tensor.tensor_shape.dim] if tensor is not None else []
        call = PredictCall(version, sorted(request.inputs), shape, "OK")
        self.server.predict_calls.append(call)

        if version is not None and version != behaviour.version:
            call.status = "NOT_FOUND"
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for version {version}")
        expected = [shape[0] if shape else -1, *behaviour.size, 3]
        valid = (
            tensor is not None
            and tensor.dtype == types_pb2.DT_UINT8
            and shape == expected
            and len(tensor.tensor_content) == int(np.prod(shape))
        )
        if not valid:
            call.status = "INVALID_ARGUMENT"
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"expected uint8 {expected}, got {shape}"
            )

        return self._reply(behaviour, batch=shape[0])

    def _reply(self, behaviour: Behaviour, batch: int) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse()
        response.model_spec.name = behaviour.model_name
        response.model_spec.version.value = behaviour.version
        response.model_spec.signature_name = "serving_default"
        class_count = len(behaviour.class_names)

        if "scores" not in behaviour.omit_outputs:
            scores = response.outputs["scores"]
            scores.dtype = types_pb2.DT_FLOAT
            scores.tensor_shape.dim.add(size=batch)
            scores.tensor_shape.dim.add(size=class_count)
            values = np.tile(np.asarray(behaviour.scores, dtype=np.float32), batch)
            if behaviour.scores_encoding == "float_val":
                scores.float_val.extend(values.tolist())
            else:
                scores.tensor_content = values.astype("<f4").tobytes()

        if "classes" not in behaviour.omit_outputs:
            classes = response.outputs["classes"]
            classes.dtype = types_pb2.DT_STRING
            classes.tensor_shape.dim.add(size=batch)
            classes.tensor_shape.dim.add(size=class_count)
            for _ in range(batch):
                classes.string_val.extend(name.encode() for name in behaviour.class_names)
        return response


class FakeModelServer:
    """A gRPC server on a free loopback port, serving `behaviour` until stop()."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.predict_calls: list[PredictCall] = []
        # Method names in the order calls arrived, before any delay or failure.
        self.started_calls: list[str] = []
        self.released = threading.Event()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        servicer = _Servicer(self)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Restore the default behaviour and forget recorded calls."""
        self.behaviour = Behaviour()
        self.predict_calls.clear()
        self.started_calls.clear()

    def stop(self) -> None:
        """Wake any delayed handler and stop the server."""
        self.released.set()
        self._server.stop(grace=None).wait(timeout=5)
