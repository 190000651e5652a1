"""Load one version of a SavedModel, and read its warm-up requests, for the local model server."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf
from google.protobuf import message as protobuf_message
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

# The warm-up file TensorFlow Serving replays when it loads a version.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"

# TensorFlow Serving rejects a warm-up file with more records than this
# (WarmupConsts::kMaxNumRecords in saved_model_warmup_util.h).
MAX_WARMUP_RECORDS = 1000


class LoadError(Exception):
    """A version directory could not be loaded as a servable."""


@dataclass(frozen=True)
class Servable:
    """One loaded version: its signature definitions and the callable signatures."""

    version: int
    path: Path
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    functions: dict[str, Callable[..., dict[str, tf.Tensor]]]
    # The object from tf.saved_model.load, kept because the functions use its variables.
    loaded: Any = field(repr=False)


def load_servable(base_path: Path, version: int) -> Servable:
    """Load version `version` under `base_path`, raising LoadError if it is unusable."""
    path = base_path / str(version)
    meta_graph = read_serving_meta_graph(path)

    try:
        loaded = tf.saved_model.load(str(path), tags=[tf.saved_model.SERVING])
    except Exception as error:
        raise LoadError(f"tf.saved_model.load failed for {path}: {error}") from error

    signature_defs = dict(meta_graph.signature_def)
    functions = {
        name: function
        for name, function in loaded.signatures.items()
        if name in signature_defs
    }
    if not functions:
        raise LoadError(f"{path} has no callable signatures")

    return Servable(version, path, signature_defs, functions, loaded)


def read_serving_meta_graph(path: Path) -> meta_graph_pb2.MetaGraphDef:
    """Read the MetaGraphDef tagged "serve" from the SavedModel at `path`."""
    saved_model = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    text = path / "saved_model.pbtxt"

    try:
        if binary.is_file():
            saved_model.ParseFromString(binary.read_bytes())
        elif text.is_file():
            text_format.Parse(text.read_text(), saved_model)
        else:
            raise LoadError(f"{path} contains neither saved_model.pb nor saved_model.pbtxt")
    except (OSError, protobuf_message.Error) as error:
        raise LoadError(f"cannot read the SavedModel in {path}: {error}") from error

    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {tf.saved_model.SERVING}:
            return meta_graph
    raise LoadError(f'{path} has no meta graph tagged "{tf.saved_model.SERVING}"')


def read_warmup_requests(path: Path) -> list[predict_pb2.PredictRequest]:
    """Read the Predict requests in the warm-up file under `path`, if there is one."""
    warmup_path = path / WARMUP_FILE
    if not warmup_path.is_file():
        return []

    requests = []
    try:
        for index, record in enumerate(tf.data.TFRecordDataset(str(warmup_path))):
            if index >= MAX_WARMUP_RECORDS:
                raise LoadError(
                    f"{warmup_path} has more than {MAX_WARMUP_RECORDS} records, "
                    "the maximum TensorFlow Serving accepts"
                )
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            # NOTE: TensorFlow Serving also replays classify, regress and
            # multi-inference records; this server implements Predict only.
            if kind != "predict_log":
                raise LoadError(
                    f"{warmup_path}: record {index} has log type {kind or 'none'}, "
                    "but the local model server replays only predict_log records"
                )
            requests.append(log.predict_log.request)
    except tf.errors.OpError as error:
        raise LoadError(f"cannot read {warmup_path}: {error.message}") from error
    except protobuf_message.Error as error:
        raise LoadError(f"{warmup_path}: a record is not a PredictionLog: {error}") from error
    return requests
