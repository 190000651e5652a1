"""Run the tensorflow-serving-api side of tests/test_wire_compat.py in its own process.

Usage: python tests/wire_official.py < request.json > reply.json

TensorFlow's messages and the gateway's stubs register the same protobuf names,
so they cannot share a process. This script reads one JSON request on stdin:

- "samples": the values to build official messages from (see test_wire_compat),
- "gateway_messages": message name -> base64 bytes the gateway's stubs wrote,
- "descriptors": {"messages": [...], "enums": [...], "services": [...]} full
  names to describe from the official descriptor pool,

and writes one JSON reply on stdout with "official_messages" (base64 bytes
built here), "parsed" (what the official classes read from the gateway's bytes)
and "descriptors" (described with describe_* below, or null when missing).

Only the functions that describe descriptors are imported by the test; they
use the protobuf API alone, so importing this module loads no TensorFlow.
"""

import base64
import json
import sys


def describe_field(field) -> dict:
    """Describe a field's wire-relevant properties as plain JSON values."""
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    else:
        type_name = None
    return {
        "number": field.number,
        "type": field.type,
        "repeated": field.is_repeated,
        "packed": field.is_packed,
        "type_name": type_name,
        "oneof": field.containing_oneof.name if field.containing_oneof else None,
        "json_name": field.json_name,
    }


def describe_message(message) -> dict:
    """Describe a message's fields by name."""
    return {field.name: describe_field(field) for field in message.fields}


def describe_enum(enum) -> dict:
    """Describe an enum as value name -> number."""
    return {value.name: value.number for value in enum.values}


def describe_service(service) -> dict:
    """Describe a service as method name -> [input type, output type]."""
    return {
        method.name: [method.input_type.full_name, method.output_type.full_name]
        for method in service.methods
    }


def _encode(message) -> str:
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode()


def _decode(cls, text: str):
    message = cls()
    message.ParseFromString(base64.b64decode(text))
    return message


def _describe_all(names: dict) -> dict:
    from google.protobuf import descriptor_pool

    # Importing the service modules adds the services to the default pool.
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    lookups = {
        "messages": (pool.FindMessageTypeByName, describe_message),
        "enums": (pool.FindEnumTypeByName, describe_enum),
        "services": (pool.FindServiceByName, describe_service),
    }
    described = {}
    for kind, (find, describe) in lookups.items():
        described[kind] = {}
        for name in names.get(kind, []):
            try:
                described[kind][name] = describe(find(name))
            except KeyError:
                described[kind][name] = None
    return described


def _build_official(samples: dict) -> dict:
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        predict_pb2,
    )

    model = samples["model"]
    image = np.asarray(samples["image"], dtype=np.uint8)
    scores = np.asarray(samples["scores"], dtype=np.float32)
    classes = np.asarray([[name.encode() for name in row] for row in samples["classes"]])
    messages = {}

    request = predict_pb2.PredictRequest(output_filter=samples["output_filter"])
    request.model_spec.name = model["name"]
    request.model_spec.signature_name = model["signature_name"]
    request.model_spec.version.value = model["version"]
    request.inputs[samples["input_name"]].CopyFrom(tf.make_tensor_proto(image))
    messages["predict_request"] = request

    # tf.make_tensor_proto writes float arrays to tensor_content and strings to string_val.
    content = predict_pb2.PredictResponse()
    content.model_spec.name = model["name"]
    content.model_spec.version.value = model["version"]
    content.outputs["scores"].CopyFrom(tf.make_tensor_proto(scores))
    content.outputs["classes"].CopyFrom(tf.make_tensor_proto(classes))
    if not content.outputs["scores"].tensor_content:
        raise SystemExit("tf.make_tensor_proto did not use tensor_content for scores")
    messages["predict_response_tensor_content"] = content

    float_val = predict_pb2.PredictResponse()
    float_val.CopyFrom(content)
    float_val.outputs["scores"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tf.TensorShape(scores.shape).as_proto(),
            float_val=scores.ravel().tolist(),
        )
    )
    messages["predict_response_float_val"] = float_val

    signatures = get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def[model["signature_name"]]
    signature.method_name = samples["method_name"]
    signature.inputs[samples["input_name"]].CopyFrom(
        meta_graph_pb2.TensorInfo(
            name=samples["input_tensor"],
            dtype=types_pb2.DT_UINT8,
            tensor_shape=tf.TensorShape([None, *samples["input_size"], 3]).as_proto(),
        )
    )
    signature.outputs["scores"].dtype = types_pb2.DT_FLOAT
    signature.outputs["classes"].dtype = types_pb2.DT_STRING
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.model_spec.name = model["name"]
    metadata.model_spec.version.value = model["version"]
    metadata.metadata["signature_def"].Pack(signatures)
    messages["metadata_response"] = metadata

    status = get_model_status_pb2.GetModelStatusResponse()
    for entry in samples["statuses"]:
        version_status = status.model_version_status.add(
            version=entry["version"],
            state=get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"]),
        )
        version_status.status.error_code = entry["error_code"]
        version_status.status.error_message = entry["error_message"]
    messages["status_response"] = status

    return {name: _encode(message) for name, message in messages.items()}


def _tensor_json(tensor) -> dict:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    values = tf.make_ndarray(tensor)
    if values.dtype.kind in "SO":
        rows = values.reshape(-1, values.shape[-1])
        listed = [[item.decode() for item in row] for row in rows]
    else:
        listed = values.tolist()
    return {
        "dtype": types_pb2.DataType.Name(tensor.dtype),
        "shape": [dim.size for dim in tensor.tensor_shape.dim],
        "values": listed,
    }


def _model_spec_json(spec) -> dict:
    return {
        "name": spec.name,
        "signature_name": spec.signature_name,
        "version": spec.version.value if spec.HasField("version") else None,
    }


def _read_predict_request(message) -> dict:
    return {
        "model_spec": _model_spec_json(message.model_spec),
        "inputs": {name: _tensor_json(tensor) for name, tensor in message.inputs.items()},
        "output_filter": list(message.output_filter),
    }


def _read_predict_response(message) -> dict:
    return {
        "model_spec": _model_spec_json(message.model_spec),
        "outputs": {name: _tensor_json(tensor) for name, tensor in message.outputs.items()},
        "scores_in_tensor_content": bool(message.outputs["scores"].tensor_content),
    }


def _read_tensor_info(info) -> dict:
    from tensorflow.core.framework import types_pb2

    return {
        "name": info.name,
        "dtype": types_pb2.DataType.Name(info.dtype),
        "shape": [dim.size for dim in info.tensor_shape.dim],
    }


def _read_metadata_response(message) -> dict:
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    packed = message.metadata["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    unpacked = packed.Unpack(signatures)
    return {
        "model_spec": _model_spec_json(message.model_spec),
        "type_url": packed.type_url,
        "unpacked": unpacked,
        "signatures": {
            key: {
                "method_name": signature.method_name,
                "inputs": {
                    name: _read_tensor_info(info) for name, info in signature.inputs.items()
                },
                "outputs": {
                    name: types_pb2.DataType.Name(info.dtype)
                    for name, info in signature.outputs.items()
                },
            }
            for key, signature in signatures.signature_def.items()
        },
    }


def _read_metadata_request(message) -> dict:
    return {
        "model_spec": _model_spec_json(message.model_spec),
        "metadata_field": list(message.metadata_field),
    }


def _read_status_response(message) -> list:
    from tensorflow_serving.apis import get_model_status_pb2

    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [
        {
            "version": entry.version,
            "state": state_name(entry.state),
            "error_code": entry.status.error_code,
            "error_message": entry.status.error_message,
        }
        for entry in message.model_version_status
    ]


def _read_status_request(message) -> dict:
    return {"model_spec": _model_spec_json(message.model_spec)}


def _parse_gateway(messages: dict) -> tuple[dict, dict]:
    """Parse each gateway message with the official class; report errors per message."""
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        predict_pb2,
    )

    readers = {
        "predict_request": (predict_pb2.PredictRequest, _read_predict_request),
        "predict_response_tensor_content": (predict_pb2.PredictResponse, _read_predict_response),
        "predict_response_float_val": (predict_pb2.PredictResponse, _read_predict_response),
        "metadata_response": (
            get_model_metadata_pb2.GetModelMetadataResponse, _read_metadata_response
        ),
        "metadata_request": (
            get_model_metadata_pb2.GetModelMetadataRequest, _read_metadata_request
        ),
        "status_response": (get_model_status_pb2.GetModelStatusResponse, _read_status_response),
        "status_request": (get_model_status_pb2.GetModelStatusRequest, _read_status_request),
    }
    parsed = {}
    reencoded = {}
    for name, (cls, read) in readers.items():
        try:
            message = _decode(cls, messages[name])
            parsed[name] = read(message)
            # Serializing again gives the same bytes only if nothing was
            # dropped or kept as an unknown field.
            reencoded[name] = _encode(message)
        except Exception as error:  # noqa: BLE001 - the test shows it for this message
            parsed[name] = {"error": f"{type(error).__name__}: {error}"}
            reencoded[name] = None
    return parsed, reencoded


def main() -> int:
    """Read the request from stdin, write the reply to stdout and return 0."""
    request = json.load(sys.stdin)
    parsed, reencoded = _parse_gateway(request["gateway_messages"])
    reply = {
        "official_messages": _build_official(request["samples"]),
        "parsed": parsed,
        "reencoded": reencoded,
        "descriptors": _describe_all(request["descriptors"]),
    }
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
