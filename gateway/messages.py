"""Build and parse the TensorFlow Serving API messages the gateway exchanges.

These functions use protobuf only, no gRPC. The model contract they check is
the one serving/export.py writes: a `serving_default` signature that takes one
uint8 [batch, height, width, 3] input and returns `scores` (float32
[batch, classes]) and `classes` (string [batch, classes]). Model versions from
version 2 on also return `hand_probability` (float32 [batch]) and
`uncertain_reason` (string [batch]). A reply without them comes from a model
that does not judge its own certainty, which is not an error.
"""

import math
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
HAND_PROBABILITY_OUTPUT = "hand_probability"
UNCERTAIN_REASON_OUTPUT = "uncertain_reason"
METADATA_FIELD = "signature_def"

# The `uncertain_reason` values that serving/export.py writes. An empty string
# means confident. Any other non-empty value, which a later model version may
# add, is passed on unchanged.
NO_HAND = "no_hand"
LOW_CONFIDENCE = "low_confidence"


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
    """The model's outputs per image, in batch order.

    `scores` are keyed by the class names the model returned. A hand
    probability is None when the model has no `hand_probability` output, and an
    uncertain reason is None when the model is confident or has no
    `uncertain_reason` output.
    """

    version: int | None
    scores: list[dict[str, float]]
    hand_probabilities: list[float | None]
    uncertain_reasons: list[str | None]


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
    """Build a Predict request for a uint8 [batch, height, width, 3] array.

    The request sets no output_filter, so the reply carries every output of the
    signature, the optional `hand_probability` and `uncertain_reason` included.
    """
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
    return _float_values(tensor, dims[0] * dims[1], SCORES_OUTPUT).reshape(dims)


def _float_values(tensor: tensor_pb2.TensorProto, count: int, name: str) -> np.ndarray:
    """Return the `count` float32 values of a DT_FLOAT tensor from tensor_content or float_val."""
    if tensor.tensor_content:
        size = len(tensor.tensor_content)
        if size != count * 4:
            raise UnexpectedReply(
                f"output {name!r} has {size} bytes for {count} float32 values"
            )
        return np.frombuffer(tensor.tensor_content, dtype="<f4")
    filled = _fill(list(tensor.float_val), count, name)
    return np.asarray(filled, dtype=np.float32)


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

    names = _fill(_utf8_strings(tensor, CLASSES_OUTPUT), rows * class_count, CLASSES_OUTPUT)
    table = [names[row * class_count:(row + 1) * class_count] for row in range(rows)]
    return table * batch_size if rows == 1 else table


def _utf8_strings(tensor: tensor_pb2.TensorProto, name: str) -> list[str]:
    try:
        return [value.decode("utf-8") for value in tensor.string_val]
    except UnicodeDecodeError as error:
        raise UnexpectedReply(f"output {name!r} is not UTF-8: {error}") from None


def _check_batch_vector(
    tensor: tensor_pb2.TensorProto, name: str, dtype: int, batch_size: int
) -> None:
    if tensor.dtype != dtype:
        raise UnexpectedReply(
            f"output {name!r} has dtype {_dtype_name(tensor.dtype)}, not {_dtype_name(dtype)}"
        )
    dims = _dims(tensor)
    if dims != [batch_size]:
        raise UnexpectedReply(f"output {name!r} has shape {dims}; expected [{batch_size}]")


def decode_hand_probabilities(tensor: tensor_pb2.TensorProto, batch_size: int) -> list[float]:
    """Decode the float32 [batch] probabilities that each image shows a hand gesture.

    Raises UnexpectedReply for another dtype or shape, or for a value that is
    not a number from 0 to 1.
    """
    _check_batch_vector(tensor, HAND_PROBABILITY_OUTPUT, types_pb2.DT_FLOAT, batch_size)
    values = _float_values(tensor, batch_size, HAND_PROBABILITY_OUTPUT).tolist()

    invalid = [value for value in values if not (math.isfinite(value) and 0.0 <= value <= 1.0)]
    if invalid:
        raise UnexpectedReply(
            f"output {HAND_PROBABILITY_OUTPUT!r} has {invalid[0]}, not a probability from 0 to 1"
        )
    return values


def decode_uncertain_reasons(
    tensor: tensor_pb2.TensorProto, batch_size: int
) -> list[str | None]:
    """Decode the string [batch] reasons for uncertainty, with None for a confident image."""
    _check_batch_vector(tensor, UNCERTAIN_REASON_OUTPUT, types_pb2.DT_STRING, batch_size)
    reasons = _fill(
        _utf8_strings(tensor, UNCERTAIN_REASON_OUTPUT), batch_size, UNCERTAIN_REASON_OUTPUT
    )
    return [reason or None for reason in reasons]


def parse_prediction(response: predict_pb2.PredictResponse, batch_size: int) -> Prediction:
    """Pair each image's scores with the class names and certainty from the same reply."""
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

    # The two outputs are optional and decoded independently, so a model that
    # returns only one of them still gets that one reported.
    hand_probabilities: list[float | None] = [None] * batch_size
    if HAND_PROBABILITY_OUTPUT in response.outputs:
        hand_probabilities = decode_hand_probabilities(
            response.outputs[HAND_PROBABILITY_OUTPUT], batch_size
        )
    uncertain_reasons: list[str | None] = [None] * batch_size
    if UNCERTAIN_REASON_OUTPUT in response.outputs:
        uncertain_reasons = decode_uncertain_reasons(
            response.outputs[UNCERTAIN_REASON_OUTPUT], batch_size
        )

    return Prediction(
        version=_version(response.model_spec),
        scores=rows,
        hand_probabilities=hand_probabilities,
        uncertain_reasons=uncertain_reasons,
    )


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
