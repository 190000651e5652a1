"""Build and parse the TensorFlow Serving API messages the gateway exchanges.

These functions use protobuf only, no gRPC. The model contract they check is
the one serving/export.py writes: a `serving_default` signature that takes one
uint8 [batch, height, width, 3] input and returns `scores` (float32
[batch, classes]) and `classes` (string [batch, classes]).
"""

from dataclasses import dataclass

import numpy as np

from gateway.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    tensor_pb2,
    types_pb2,
)

SIGNATURE_NAME = "serving_default"
SCORES_OUTPUT = "scores"
CLASSES_OUTPUT = "classes"
METADATA_FIELD = "signature_def"


class UnexpectedReply(ValueError):
    """A model server reply that does not match the model contract."""


@dataclass(frozen=True)
class ModelMetadata:
    """The served signature's input and the model version it belongs to."""

    version: int | None
    input_name: str
    size: tuple[int, int]


@dataclass(frozen=True)
class Prediction:
    """Scores per image, keyed by the class names the model returned."""

    version: int | None
    scores: list[dict[str, float]]


def _version(model_spec) -> int | None:
    return model_spec.version.value if model_spec.HasField("version") else None


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def parse_metadata(
    response: get_model_metadata_pb2.GetModelMetadataResponse,
) -> ModelMetadata:
    """Extract the input name, (height, width) and version from a metadata reply.

    Raises UnexpectedReply when the signature does not take one uint8 image
    batch of a fixed size or lacks the scores and classes outputs.
    """
    if METADATA_FIELD not in response.metadata:
        raise UnexpectedReply(f"the metadata has no {METADATA_FIELD!r} entry")
    signatures = get_model_metadata_pb2.SignatureDefMap()
    packed = response.metadata[METADATA_FIELD]
    if not packed.Unpack(signatures):
        raise UnexpectedReply(
            f"{METADATA_FIELD!r} contains {packed.type_url}, not a SignatureDefMap"
        )
    if SIGNATURE_NAME not in signatures.signature_def:
        raise UnexpectedReply(
            f"no signature {SIGNATURE_NAME!r}; found {sorted(signatures.signature_def)}"
        )
    signature = signatures.signature_def[SIGNATURE_NAME]

    if len(signature.inputs) != 1:
        raise UnexpectedReply(f"expected one input, found {sorted(signature.inputs)}")
    input_name, info = next(iter(signature.inputs.items()))
    if info.dtype != types_pb2.DT_UINT8:
        raise UnexpectedReply(
            f"input {input_name!r} has dtype {_dtype_name(info.dtype)}, not DT_UINT8"
        )
    dims = [dim.size for dim in info.tensor_shape.dim]
    fixed_size = len(dims) == 4 and dims[1] > 0 and dims[2] > 0 and dims[3] in (3, -1)
    if info.tensor_shape.unknown_rank or not fixed_size:
        raise UnexpectedReply(
            f"input {input_name!r} has shape {dims}, not [batch, height, width, 3]"
        )

    missing = [
        name for name in (SCORES_OUTPUT, CLASSES_OUTPUT) if name not in signature.outputs
    ]
    if missing:
        raise UnexpectedReply(f"the signature lacks the outputs {missing}")

    return ModelMetadata(
        version=_version(response.model_spec), input_name=input_name, size=(dims[1], dims[2])
    )


def build_metadata_request(
    model_name: str,
) -> get_model_metadata_pb2.GetModelMetadataRequest:
    """Build a request for the signatures of the latest version of `model_name`."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.metadata_field.append(METADATA_FIELD)
    request.model_spec.name = model_name
    return request


def build_status_request(model_name: str) -> get_model_status_pb2.GetModelStatusRequest:
    """Build a request for the state of every version of `model_name`."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    return request


def build_predict_request(
    model_name: str, metadata: ModelMetadata, batch: np.ndarray
) -> predict_pb2.PredictRequest:
    """Build a Predict request for a uint8 [batch, height, width, 3] array."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE_NAME
    if metadata.version is not None:
        request.model_spec.version.value = metadata.version

    tensor = request.inputs[metadata.input_name]
    tensor.dtype = types_pb2.DT_UINT8
    for size in batch.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(batch, dtype=np.uint8).tobytes()
    return request


def _dims(tensor: tensor_pb2.TensorProto) -> list[int]:
    return [dim.size for dim in tensor.tensor_shape.dim]


def _fill(values: list, count: int, name: str) -> list:
    # TensorFlow repeats the last value when a *_val field is shorter than the
    # shape (checked with tf.make_ndarray and tf.io.parse_tensor in TensorFlow 2.21).
    if len(values) == count:
        return values
    if 0 < len(values) < count:
        return values + [values[-1]] * (count - len(values))
    raise UnexpectedReply(f"output {name!r} has {len(values)} values for {count} elements")


def decode_scores(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode the float32 [batch, classes] scores from tensor_content or float_val."""
    if tensor.dtype != types_pb2.DT_FLOAT:
        raise UnexpectedReply(
            f"output {SCORES_OUTPUT!r} has dtype {_dtype_name(tensor.dtype)}, not DT_FLOAT"
        )
    dims = _dims(tensor)
    if len(dims) != 2 or min(dims) < 1:
        raise UnexpectedReply(
            f"output {SCORES_OUTPUT!r} has shape {dims}, not [batch, classes]"
        )
    count = dims[0] * dims[1]

    if tensor.tensor_content:
        size = len(tensor.tensor_content)
        if size != count * 4:
            raise UnexpectedReply(
                f"output {SCORES_OUTPUT!r} has {size} bytes for {count} float32 values"
            )
        values = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        filled = _fill(list(tensor.float_val), count, SCORES_OUTPUT)
        values = np.asarray(filled, dtype=np.float32)
    return values.reshape(dims)


def decode_classes(
    tensor: tensor_pb2.TensorProto, batch_size: int, class_count: int
) -> list[list[str]]:
    """Decode the class names per image from a string [batch, classes] or [classes] tensor."""
    if tensor.dtype != types_pb2.DT_STRING:
        raise UnexpectedReply(
            f"output {CLASSES_OUTPUT!r} has dtype {_dtype_name(tensor.dtype)}, not DT_STRING"
        )
    dims = _dims(tensor)
    if dims == [class_count]:
        rows = 1
    elif dims == [batch_size, class_count]:
        rows = batch_size
    else:
        raise UnexpectedReply(
            f"output {CLASSES_OUTPUT!r} has shape {dims}; expected [{batch_size}, {class_count}]"
        )

    try:
        names = [value.decode("utf-8") for value in tensor.string_val]
    except UnicodeDecodeError as error:
        raise UnexpectedReply(f"output {CLASSES_OUTPUT!r} is not UTF-8: {error}") from None
    names = _fill(names, rows * class_count, CLASSES_OUTPUT)
    table = [names[row * class_count:(row + 1) * class_count] for row in range(rows)]
    return table * batch_size if rows == 1 else table


def parse_prediction(response: predict_pb2.PredictResponse, batch_size: int) -> Prediction:
    """Pair each image's scores with the class names from the same reply."""
    for name in (SCORES_OUTPUT, CLASSES_OUTPUT):
        if name not in response.outputs:
            raise UnexpectedReply(
                f"the reply has no output {name!r}; found {sorted(response.outputs)}"
            )
    scores = decode_scores(response.outputs[SCORES_OUTPUT])
    if scores.shape[0] != batch_size:
        raise UnexpectedReply(
            f"the reply has {scores.shape[0]} score rows for {batch_size} images"
        )
    classes = decode_classes(response.outputs[CLASSES_OUTPUT], batch_size, scores.shape[1])

    rows = []
    for names, values in zip(classes, scores):
        if len(set(names)) != len(names):
            raise UnexpectedReply(f"output {CLASSES_OUTPUT!r} repeats a class name: {names}")
        rows.append({name: float(value) for name, value in zip(names, values)})

    return Prediction(version=_version(response.model_spec), scores=rows)


def highest_available_version(
    response: get_model_status_pb2.GetModelStatusResponse,
) -> int | None:
    """Return the highest version whose state is AVAILABLE, or None."""
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    versions = [
        status.version
        for status in response.model_version_status
        if status.state == available
    ]
    return max(versions, default=None)
