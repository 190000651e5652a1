"""Call a model server with tensorflow-serving-api's own client stubs and print JSON.

The pytest process must not import TensorFlow or `tensorflow_serving` (see
tests/conftest.py), so the model server tests run this script in a subprocess:

    python tests/tfs_probe.py 127.0.0.1:8500 metadata unknown_model ...

It runs each named case against the server. Then it prints one JSON object on
the last line of stdout, which maps each case to its result: the gRPC status
code name, the status details and what the case read from the reply.
"""

import json
import sys
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from gateway.preprocess import preprocess

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "client" / "samples"
MODEL_NAME = "rps"
INPUT_NAME = "image"

# Seconds per RPC, generous because the first Predict on a cold CPU is slow.
RPC_TIMEOUT = 30


class Probe:
    """Stubs for one server address and helpers that turn replies into JSON values."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def call(self, method, request) -> tuple[object, dict]:
        """Call `method` and return the reply (None on error) and its status as a dict."""
        try:
            reply = method(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as error:
            return None, {"code": error.code().name, "details": error.details()}
        return reply, {"code": "OK", "details": ""}

    def predict_request(
        self,
        images: np.ndarray,
        name: str = MODEL_NAME,
        version: int | None = None,
        version_label: str = "",
        signature_name: str = "",
    ) -> predict_pb2.PredictRequest:
        """Build a Predict request for `images` with the given model_spec fields."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if version_label:
            request.model_spec.version_label = version_label
        request.model_spec.signature_name = signature_name
        request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(images))
        return request

    def input_size(self) -> tuple[int, int]:
        """Read the model's input height and width from GetModelMetadata, as the gateway does."""
        request = metadata_request()
        reply, status = self.call(self.prediction.GetModelMetadata, request)
        assert reply is not None, f"GetModelMetadata failed: {status}"
        signatures = get_model_metadata_pb2.SignatureDefMap()
        reply.metadata["signature_def"].Unpack(signatures)
        dims = signatures.signature_def["serving_default"].inputs[INPUT_NAME].tensor_shape.dim
        return dims[1].size, dims[2].size

    def samples(self) -> dict[str, np.ndarray]:
        """Preprocess client/samples/*.png to the model's input size."""
        size = self.input_size()
        return {
            path.name: preprocess(path.read_bytes(), size)
            for path in sorted(SAMPLES.glob("*.png"))
        }

    def predict(self, request: predict_pb2.PredictRequest) -> dict:
        """Send a Predict request and describe the reply."""
        reply, result = self.call(self.prediction.Predict, request)
        if reply is None:
            return result

        result["version"] = reply.model_spec.version.value
        result["model_name"] = reply.model_spec.name
        result["signature_name"] = reply.model_spec.signature_name
        result["outputs"] = sorted(reply.outputs)
        if "scores" in reply.outputs and "classes" in reply.outputs:
            scores = tf.make_ndarray(reply.outputs["scores"])
            classes = tf.make_ndarray(reply.outputs["classes"])
            best = np.argmax(scores, axis=1)
            result["labels"] = [classes[row, best[row]].decode() for row in range(len(best))]
            result["scores_shape"] = list(scores.shape)
            # TensorFlow Serving sends float outputs in float_val, not tensor_content.
            result["scores_in_float_val"] = len(reply.outputs["scores"].float_val) == scores.size
        return result


def metadata_request(*fields: str) -> get_model_metadata_pb2.GetModelMetadataRequest:
    """Build a GetModelMetadata request for `fields`, by default signature_def only."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    request.metadata_field.extend(fields or ["signature_def"])
    return request


def status_request(name: str = MODEL_NAME, version: int | None = None):
    """Build a GetModelStatus request."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def status_entries(reply: get_model_status_pb2.GetModelStatusResponse) -> list[dict]:
    """Describe each model_version_status entry of a GetModelStatus reply."""
    return [
        {
            "version": entry.version,
            "state": get_model_status_pb2.ModelVersionStatus.State.Name(entry.state),
            "error_code": entry.status.error_code,
            "error_message": entry.status.error_message,
        }
        for entry in reply.model_version_status
    ]


def blank_batch(probe: Probe, dtype=np.uint8, batch: int = 1) -> np.ndarray:
    """Return a zero image batch at the model's input size."""
    height, width = probe.input_size()
    return np.zeros((batch, height, width, 3), dtype=dtype)


def case_samples(probe: Probe) -> dict:
    return {
        name: probe.predict(probe.predict_request(image[np.newaxis]))
        for name, image in probe.samples().items()
    }


def case_batch(probe: Probe) -> dict:
    samples = probe.samples()
    result = probe.predict(probe.predict_request(np.stack(list(samples.values()))))
    result["files"] = list(samples)
    return result


def case_metadata(probe: Probe) -> dict:
    reply, result = probe.call(probe.prediction.GetModelMetadata, metadata_request())
    if reply is None:
        return result

    signatures = get_model_metadata_pb2.SignatureDefMap()
    result["type_url"] = reply.metadata["signature_def"].type_url
    reply.metadata["signature_def"].Unpack(signatures)
    result["model_name"] = reply.model_spec.name
    result["version"] = reply.model_spec.version.value
    result["signatures"] = sorted(signatures.signature_def)
    serving = signatures.signature_def["serving_default"]
    result["method_name"] = serving.method_name
    result["inputs"] = {
        alias: {
            "dtype": types_pb2.DataType.Name(info.dtype),
            "shape": [dim.size for dim in info.tensor_shape.dim],
        }
        for alias, info in serving.inputs.items()
    }
    result["outputs"] = sorted(serving.outputs)
    return result


def case_metadata_without_field(probe: Probe) -> dict:
    request = metadata_request()
    del request.metadata_field[:]
    return probe.call(probe.prediction.GetModelMetadata, request)[1]


def case_metadata_unknown_model(probe: Probe) -> dict:
    request = metadata_request()
    request.model_spec.name = "nope"
    return probe.call(probe.prediction.GetModelMetadata, request)[1]


def case_status(probe: Probe) -> dict:
    reply, result = probe.call(probe.model.GetModelStatus, status_request())
    if reply is not None:
        result["versions"] = status_entries(reply)
    return result


def case_status_unknown_model(probe: Probe) -> dict:
    return probe.call(probe.model.GetModelStatus, status_request(name="nope"))[1]


def case_status_unknown_version(probe: Probe) -> dict:
    return probe.call(probe.model.GetModelStatus, status_request(version=7))[1]


def case_unknown_model(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe), name="nope"))


def case_unknown_version(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe), version=7))


def case_unknown_version_label(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe), version_label="canary"))


def case_unknown_signature(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe), signature_name="nope"))


def case_wrong_dtype(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe, dtype=np.float32)))


def case_wrong_shape(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(np.zeros((1, 100, 100, 3), np.uint8)))


def case_wrong_rank(probe: Probe) -> dict:
    return probe.predict(probe.predict_request(blank_batch(probe)[0]))


def case_missing_input(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    del request.inputs[INPUT_NAME]
    return probe.predict(request)


def case_extra_input(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    request.inputs["mask"].CopyFrom(tf.make_tensor_proto(blank_batch(probe)))
    return probe.predict(request)


def case_malformed_tensor(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    # The shape declares 1 x height x width x 3 bytes, but the content has 10.
    request.inputs[INPUT_NAME].tensor_content = b"0123456789"
    return probe.predict(request)


def case_missing_model_spec(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    request.ClearField("model_spec")
    return probe.predict(request)


def case_output_filter(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    request.output_filter.append("scores")
    return probe.predict(request)


def case_unknown_output_filter(probe: Probe) -> dict:
    request = probe.predict_request(blank_batch(probe))
    request.output_filter.append("nope")
    return probe.predict(request)


def case_classify(probe: Probe) -> dict:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    return probe.call(probe.prediction.Classify, request)[1]


CASES = {
    name[len("case_"):]: function
    for name, function in globals().items()
    if name.startswith("case_")
}


def main(argv: list[str]) -> int:
    """Run the cases named in argv[1:] against the server at argv[0]."""
    if len(argv) < 2:
        print(f"usage: tfs_probe.py ADDRESS CASE...; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    probe = Probe(argv[0])
    results = {name: CASES[name](probe) for name in argv[1:]}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
