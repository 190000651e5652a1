"""Predict and GetModelMetadata for one loaded version, without the gRPC transport.

Failures raise ServingError with the gRPC status code TensorFlow Serving
returns for the same failure (predict_util.cc and get_model_metadata_impl.cc
in tensorflow/serving), so that clients tested against the local model server
handle TensorFlow Serving's replies too. The messages are this server's own.
"""

import logging
import math
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from serving.servable import LoadError, Servable, read_warmup_requests

logger = logging.getLogger(__name__)

METADATA_FIELD = "signature_def"

# The signature methods that TensorFlow Serving's Predict accepts.
PREDICTION_METHODS = (
    tf.saved_model.PREDICT_METHOD_NAME,
    tf.saved_model.CLASSIFY_METHOD_NAME,
    tf.saved_model.REGRESS_METHOD_NAME,
)

# TensorFlow error codes share their numbers with gRPC status codes.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}

# Tensor.AsProtoField in TensorFlow, which TensorFlow Serving uses for Predict
# replies, writes these dtypes to a typed repeated field, not tensor_content.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}


class ServingError(Exception):
    """A request failure with the gRPC status code to return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def predict(
    servable: Servable, request: predict_pb2.PredictRequest, max_input_bytes: int
) -> predict_pb2.PredictResponse:
    """Run the requested signature of `servable` on the request's input tensors."""
    signature_name = (
        request.model_spec.signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
    )
    signature_def = servable.signature_defs.get(signature_name)
    function = servable.functions.get(signature_name)
    if signature_def is None or function is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{signature_name}" not found. '
            f"Version {servable.version} has signatures {format_names(servable.functions)}",
        )
    if signature_def.method_name not in PREDICTION_METHODS:
        raise ServingError(
            grpc.StatusCode.INTERNAL,
            f'signature "{signature_name}" has method_name "{signature_def.method_name}", '
            f"but Predict requires one of {format_names(PREDICTION_METHODS)}",
        )

    inputs = parse_inputs(signature_name, signature_def, request.inputs, max_input_bytes)
    aliases = select_outputs(signature_name, signature_def, request.output_filter)

    try:
        outputs = function(**inputs)
    except tf.errors.OpError as error:
        code = _STATUS_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
        raise ServingError(code, error.message) from error

    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for alias in aliases:
        response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias].numpy()))
    return response


def parse_inputs(
    signature_name: str,
    signature_def: meta_graph_pb2.SignatureDef,
    inputs: dict[str, tensor_pb2.TensorProto],
    max_input_bytes: int,
) -> dict[str, tf.Tensor]:
    """Check the request's input tensors against the signature and convert them."""
    expected = set(signature_def.inputs)
    sent = set(inputs)
    if sent != expected:
        problems = []
        if expected - sent:
            problems.append(f"missing {format_names(expected - sent)}")
        if sent - expected:
            problems.append(f"unexpected {format_names(sent - expected)}")
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request has inputs {format_names(sent)}, but signature "
            f'"{signature_name}" takes {format_names(expected)}: {" and ".join(problems)}',
        )

    return {
        alias: parse_input(alias, signature_def.inputs[alias], inputs[alias], max_input_bytes)
        for alias in sorted(inputs)
    }


def parse_input(
    alias: str,
    info: meta_graph_pb2.TensorInfo,
    proto: tensor_pb2.TensorProto,
    max_input_bytes: int,
) -> tf.Tensor:
    """Convert one input TensorProto after checking its dtype and shape."""
    if proto.dtype != info.dtype:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'input "{alias}": expected dtype {dtype_name(info.dtype)}, '
            f"got {dtype_name(proto.dtype)}",
        )

    if proto.tensor_shape.unknown_rank or any(d.size < 0 for d in proto.tensor_shape.dim):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'input "{alias}": the tensor shape must be fully defined, '
            f"got {format_shape(proto.tensor_shape)}",
        )
    if not shape_matches(info.tensor_shape, proto.tensor_shape):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'input "{alias}": expected shape {format_shape(info.tensor_shape)}, '
            f"got {format_shape(proto.tensor_shape)}",
        )

    # A TensorProto may repeat one value to fill its whole shape, so a small
    # message can declare a huge tensor. Reject any tensor larger than the
    # message limit before allocating it. TensorFlow Serving has no such check.
    dtype = tf.as_dtype(proto.dtype)
    elements = math.prod(d.size for d in proto.tensor_shape.dim)
    declared_bytes = elements * max(dtype.size, 1)
    if declared_bytes > max_input_bytes:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'input "{alias}": shape {format_shape(proto.tensor_shape)} is '
            f"{declared_bytes} bytes, more than the {max_input_bytes}-byte limit "
            "set by --max_message_bytes",
        )

    try:
        array = tf.make_ndarray(proto)
    except (ValueError, TypeError, OverflowError) as error:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'input "{alias}": the TensorProto is malformed: {error}',
        ) from error
    return tf.constant(array, dtype=dtype)


def select_outputs(
    signature_name: str, signature_def: meta_graph_pb2.SignatureDef, output_filter: list[str]
) -> list[str]:
    """Return the output names to send: those in `output_filter`, or all of them."""
    if not output_filter:
        return sorted(signature_def.outputs)

    selected = []
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'output_filter: signature "{signature_name}" has no output "{alias}". '
                f"Its outputs are {format_names(signature_def.outputs)}",
            )
        if alias in selected:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'output_filter: output "{alias}" is listed twice',
            )
        selected.append(alias)
    return selected


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Convert an output array to a TensorProto encoded as TensorFlow Serving encodes it."""
    proto = tf.make_tensor_proto(array)
    field = _VALUE_FIELDS.get(proto.dtype)
    if field is not None and proto.tensor_content:
        proto.tensor_content = b""
        getattr(proto, field).extend(array.ravel().tolist())
    return proto


def check_metadata_fields(request: get_model_metadata_pb2.GetModelMetadataRequest) -> None:
    """Raise INVALID_ARGUMENT unless "signature_def" is the only metadata field requested."""
    if not request.metadata_field:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "GetModelMetadataRequest must list at least one metadata_field. "
            f'The only supported field is "{METADATA_FIELD}"',
        )
    for field in request.metadata_field:
        if field != METADATA_FIELD:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'metadata_field "{field}" is not supported. '
                f'The only supported field is "{METADATA_FIELD}"',
            )


def get_model_metadata(
    servable: Servable, model_name: str
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Return every SignatureDef of `servable`, packed as TensorFlow Serving packs them."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature_def)

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model_name
    response.model_spec.version.value = servable.version
    response.metadata[METADATA_FIELD].Pack(signature_map)
    return response


def warm_up(servable: Servable, max_input_bytes: int) -> int:
    """Replay the version's warm-up requests and return their count; raise LoadError on failure."""
    requests = read_warmup_requests(servable.path)
    started = time.perf_counter()

    for index, request in enumerate(requests):
        try:
            predict(servable, request, max_input_bytes)
        except ServingError as error:
            raise LoadError(
                f"warm-up request {index} of version {servable.version} failed: "
                f"{error.code.name}: {error.message}"
            ) from error

    logger.info(
        "version %d: replayed %d warm-up requests in %.0f ms",
        servable.version, len(requests), (time.perf_counter() - started) * 1000,
    )
    return len(requests)


def dtype_name(dtype: int) -> str:
    """Return the DataType enum name of `dtype`, such as DT_UINT8."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"unknown dtype {dtype}"


def shape_matches(
    expected: tensor_shape_pb2.TensorShapeProto, actual: tensor_shape_pb2.TensorShapeProto
) -> bool:
    """Return whether `actual` fits `expected`, where -1 and unknown rank match anything."""
    if expected.unknown_rank:
        return True
    if len(expected.dim) != len(actual.dim):
        return False
    return all(e.size in (-1, a.size) for e, a in zip(expected.dim, actual.dim))


def format_shape(shape: tensor_shape_pb2.TensorShapeProto) -> str:
    """Format a TensorShapeProto as [-1, 150, 150, 3], or "unknown rank"."""
    if shape.unknown_rank:
        return "unknown rank"
    return "[" + ", ".join(str(d.size) for d in shape.dim) + "]"


def format_names(names) -> str:
    """Format names as a sorted {a, b} set, as in TensorFlow Serving's messages."""
    return "{" + ", ".join(sorted(names)) + "}"
