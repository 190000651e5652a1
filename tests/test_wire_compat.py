"""The gateway's .proto subset is wire-compatible with tensorflow-serving-api.

Each message is serialized by one side and parsed by the other, in both
directions, and every field and enum value the subset declares is compared
with the official descriptor. The official side runs in tests/wire_official.py
in a subprocess, because TensorFlow and the gateway's stubs register the same
protobuf names and cannot share a process.
"""

import base64
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from gateway import messages
from gateway.messages import ModelMetadata
from gateway.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    types_pb2,
)
from tests.conftest import ROOT
from tests.wire_official import describe_enum, describe_message, describe_service

# Seconds for the subprocess, which imports TensorFlow (measured at about 8 s).
OFFICIAL_TIMEOUT = 180

STUB_MODULES = [
    "types_pb2", "tensor_shape_pb2", "tensor_pb2", "meta_graph_pb2", "model_pb2",
    "predict_pb2", "get_model_metadata_pb2", "error_codes_pb2", "status_pb2",
    "get_model_status_pb2", "prediction_service_pb2", "model_service_pb2",
]

IMAGE = (np.arange(2 * 4 * 5 * 3) * 7 % 256).astype(np.uint8).reshape(2, 4, 5, 3)
# 0.1 and 0.7 are not exact in float32, which checks that no side rounds differently.
SCORES = np.array([[0.125, 0.75, 0.125], [0.1, 0.7, 0.2]], dtype=np.float32)
CLASSES = [["paper", "rock", "scissors"], ["paper", "rock", "scissors"]]

SAMPLES = {
    "model": {"name": "rps", "signature_name": "serving_default", "version": 7},
    "input_name": "image",
    "input_tensor": "serving_default_image:0",
    "input_size": [4, 5],
    "method_name": "tensorflow/serving/predict",
    "output_filter": ["scores", "classes"],
    "image": IMAGE.tolist(),
    "scores": SCORES.tolist(),
    "classes": CLASSES,
    "statuses": [
        {"version": 6, "state": "END", "error_code": 0, "error_message": ""},
        {"version": 7, "state": "AVAILABLE", "error_code": 0, "error_message": ""},
        {"version": 8, "state": "LOADING", "error_code": 5, "error_message": "loading"},
    ],
}


def _stub_descriptors() -> tuple[dict, dict, dict]:
    """Collect every message (nested ones too), enum and service the subset declares."""
    found_messages, found_enums, found_services = {}, {}, {}

    def visit(message) -> None:
        found_messages[message.full_name] = message
        for enum in message.enum_types:
            found_enums[enum.full_name] = enum
        for nested in message.nested_types:
            visit(nested)

    for name in STUB_MODULES:
        file = importlib.import_module(f"gateway.tfs.{name}").DESCRIPTOR
        for message in file.message_types_by_name.values():
            visit(message)
        for enum in file.enum_types_by_name.values():
            found_enums[enum.full_name] = enum
        for service in file.services_by_name.values():
            found_services[service.full_name] = service
    return found_messages, found_enums, found_services


def _encode(message) -> str:
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode()


def _decode(cls, text: str):
    message = cls()
    message.ParseFromString(base64.b64decode(text))
    return message


def _gateway_scores_tensor(response, encoding: str) -> None:
    tensor = response.outputs["scores"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in SCORES.shape:
        tensor.tensor_shape.dim.add(size=size)
    if encoding == "tensor_content":
        tensor.tensor_content = SCORES.astype("<f4").tobytes()
    else:
        tensor.float_val.extend(SCORES.ravel().tolist())


def _gateway_messages() -> dict:
    """Serialize one of each message with the gateway's stubs and builders."""
    model = SAMPLES["model"]
    built = {}

    metadata = ModelMetadata(version=model["version"], input_name="image", size=(4, 5))
    built["predict_request"] = messages.build_predict_request(model["name"], metadata, IMAGE)
    built["metadata_request"] = messages.build_metadata_request(model["name"])
    built["status_request"] = messages.build_status_request(model["name"])

    for encoding in ("tensor_content", "float_val"):
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model["name"]
        response.model_spec.version.value = model["version"]
        _gateway_scores_tensor(response, encoding)
        classes = response.outputs["classes"]
        classes.dtype = types_pb2.DT_STRING
        classes.tensor_shape.dim.add(size=len(CLASSES))
        classes.tensor_shape.dim.add(size=len(CLASSES[0]))
        for row in CLASSES:
            classes.string_val.extend(name.encode() for name in row)
        built[f"predict_response_{encoding}"] = response

    signatures = get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def[model["signature_name"]]
    signature.method_name = SAMPLES["method_name"]
    image = signature.inputs["image"]
    image.name = SAMPLES["input_tensor"]
    image.dtype = types_pb2.DT_UINT8
    for size in (-1, 4, 5, 3):
        image.tensor_shape.dim.add(size=size)
    signature.outputs["scores"].dtype = types_pb2.DT_FLOAT
    signature.outputs["classes"].dtype = types_pb2.DT_STRING
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model["name"]
    response.model_spec.version.value = model["version"]
    response.metadata["signature_def"].Pack(signatures)
    built["metadata_response"] = response

    status = get_model_status_pb2.GetModelStatusResponse()
    for entry in SAMPLES["statuses"]:
        version_status = status.model_version_status.add(
            version=entry["version"],
            state=get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"]),
        )
        version_status.status.error_code = entry["error_code"]
        version_status.status.error_message = entry["error_message"]
    built["status_response"] = status

    return {name: _encode(message) for name, message in built.items()}


@pytest.fixture(scope="module")
def gateway_messages() -> dict:
    """Base64 bytes of each message as the gateway serializes it."""
    return _gateway_messages()


@pytest.fixture(scope="module")
def official(gateway_messages) -> dict:
    """The reply of tests/wire_official.py: official bytes, parses and descriptors."""
    found_messages, found_enums, found_services = _stub_descriptors()
    request = {
        "samples": SAMPLES,
        "gateway_messages": gateway_messages,
        "descriptors": {
            "messages": sorted(found_messages),
            "enums": sorted(found_enums),
            "services": sorted(found_services),
        },
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "wire_official.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=OFFICIAL_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def _official_parse(official: dict, name: str):
    parsed = official["parsed"][name]
    assert not (isinstance(parsed, dict) and "error" in parsed), parsed
    return parsed


# Official bytes, parsed by the gateway.


def test_official_predict_request_parses_in_gateway(official):
    request = _decode(predict_pb2.PredictRequest, official["official_messages"]["predict_request"])
    tensor = request.inputs["image"]

    assert request.model_spec.name == "rps"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 7
    assert list(request.output_filter) == ["scores", "classes"]
    assert tensor.dtype == types_pb2.DT_UINT8
    assert [dim.size for dim in tensor.tensor_shape.dim] == [2, 4, 5, 3]
    assert tensor.tensor_content == IMAGE.tobytes()


@pytest.mark.parametrize("encoding", ["tensor_content", "float_val"])
def test_official_predict_response_decodes_in_gateway(official, encoding):
    name = f"predict_response_{encoding}"
    response = _decode(predict_pb2.PredictResponse, official["official_messages"][name])
    prediction = messages.parse_prediction(response, batch_size=2)

    assert bool(response.outputs["scores"].tensor_content) == (encoding == "tensor_content")
    assert prediction.version == 7
    np.testing.assert_array_equal(messages.decode_scores(response.outputs["scores"]), SCORES)
    for row, scores in enumerate(prediction.scores):
        assert list(scores) == CLASSES[row]
        assert list(scores.values()) == SCORES[row].tolist()


def test_official_metadata_response_parses_in_gateway(official):
    response = _decode(
        get_model_metadata_pb2.GetModelMetadataResponse,
        official["official_messages"]["metadata_response"],
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()

    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == SAMPLES["method_name"]
    assert signature.inputs["image"].name == SAMPLES["input_tensor"]
    assert messages.parse_metadata(response) == ModelMetadata(
        version=7, input_name="image", size=(4, 5)
    )


def test_official_status_response_parses_in_gateway(official):
    response = _decode(
        get_model_status_pb2.GetModelStatusResponse,
        official["official_messages"]["status_response"],
    )
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    parsed = [
        {
            "version": entry.version,
            "state": state_name(entry.state),
            "error_code": entry.status.error_code,
            "error_message": entry.status.error_message,
        }
        for entry in response.model_version_status
    ]

    assert parsed == SAMPLES["statuses"]
    assert messages.highest_available_version(response) == 7


def test_official_bytes_reserialize_unchanged_in_gateway(official):
    classes = {
        "predict_request": predict_pb2.PredictRequest,
        "predict_response_tensor_content": predict_pb2.PredictResponse,
        "predict_response_float_val": predict_pb2.PredictResponse,
        "metadata_response": get_model_metadata_pb2.GetModelMetadataResponse,
        "status_response": get_model_status_pb2.GetModelStatusResponse,
    }
    for name, cls in classes.items():
        original = official["official_messages"][name]
        assert _encode(_decode(cls, original)) == original, name


# Gateway bytes, parsed by tensorflow-serving-api.


def test_gateway_predict_request_parses_in_official(official):
    parsed = _official_parse(official, "predict_request")
    image = parsed["inputs"]["image"]

    assert parsed["model_spec"] == {
        "name": "rps", "signature_name": "serving_default", "version": 7
    }
    assert list(parsed["inputs"]) == ["image"]
    assert image["dtype"] == "DT_UINT8"
    assert image["shape"] == [2, 4, 5, 3]
    assert image["values"] == IMAGE.tolist()
    assert parsed["output_filter"] == []


@pytest.mark.parametrize("encoding", ["tensor_content", "float_val"])
def test_gateway_predict_response_parses_in_official(official, encoding):
    parsed = _official_parse(official, f"predict_response_{encoding}")
    scores = parsed["outputs"]["scores"]
    classes = parsed["outputs"]["classes"]

    assert parsed["model_spec"]["version"] == 7
    assert parsed["scores_in_tensor_content"] == (encoding == "tensor_content")
    assert scores["dtype"] == "DT_FLOAT"
    assert scores["shape"] == [2, 3]
    np.testing.assert_array_equal(np.asarray(scores["values"], dtype=np.float32), SCORES)
    assert classes["dtype"] == "DT_STRING"
    assert classes["values"] == CLASSES


def test_gateway_metadata_response_parses_in_official(official):
    parsed = _official_parse(official, "metadata_response")
    signature = parsed["signatures"]["serving_default"]

    assert parsed["model_spec"]["version"] == 7
    assert parsed["type_url"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert parsed["unpacked"] is True
    assert signature["method_name"] == SAMPLES["method_name"]
    assert signature["inputs"] == {
        "image": {"name": SAMPLES["input_tensor"], "dtype": "DT_UINT8", "shape": [-1, 4, 5, 3]}
    }
    assert signature["outputs"] == {"scores": "DT_FLOAT", "classes": "DT_STRING"}


def test_gateway_requests_parse_in_official(official):
    assert _official_parse(official, "metadata_request") == {
        "model_spec": {"name": "rps", "signature_name": "", "version": None},
        "metadata_field": ["signature_def"],
    }
    assert _official_parse(official, "status_request") == {
        "model_spec": {"name": "rps", "signature_name": "", "version": None}
    }


def test_gateway_status_response_parses_in_official(official):
    assert _official_parse(official, "status_response") == SAMPLES["statuses"]


def test_gateway_bytes_reserialize_unchanged_in_official(official, gateway_messages):
    for name, original in gateway_messages.items():
        assert official["reencoded"][name] == original, name


# Descriptors.


def test_stub_messages_match_official_descriptors(official):
    found_messages, _, _ = _stub_descriptors()
    described = official["descriptors"]["messages"]

    for name, message in found_messages.items():
        assert described[name] is not None, f"{name} is not an official message"
        for field_name, field in describe_message(message).items():
            assert field_name in described[name], f"{name}.{field_name} is not an official field"
            assert field == described[name][field_name], f"{name}.{field_name}"


def test_stub_enums_match_official_descriptors(official):
    _, found_enums, _ = _stub_descriptors()
    described = official["descriptors"]["enums"]

    for name, enum in found_enums.items():
        assert described[name] is not None, f"{name} is not an official enum"
        for value_name, number in describe_enum(enum).items():
            assert described[name].get(value_name) == number, f"{name}.{value_name}"


def test_stub_services_match_official_descriptors(official):
    _, _, found_services = _stub_descriptors()
    described = official["descriptors"]["services"]

    assert sorted(found_services) == [
        "tensorflow.serving.ModelService",
        "tensorflow.serving.PredictionService",
    ]
    for name, service in found_services.items():
        assert described[name] is not None, f"{name} is not an official service"
        for method, types in describe_service(service).items():
            assert described[name].get(method) == types, f"{name}/{method}"
