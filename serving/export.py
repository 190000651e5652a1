"""Export a trained classifier as a TF Serving SavedModel with warm-up records."""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "image"
SCORES_OUTPUT = "scores"
CLASSES_OUTPUT = "classes"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def export_saved_model(
    model: keras.Model, class_names: list[str], directory: Path
) -> None:
    """Write `model` to `directory` with a uint8 `serving_default` signature.

    The signature takes `image` (uint8, [batch, height, width, 3]) and returns
    `scores` (float32 softmax, [batch, classes]) and `classes` (the class
    names, [batch, classes]) so that clients need not know the label order.
    """
    height, width = model.input_shape[1:3]
    names = tf.constant(class_names)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)
        ]
    )
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = model(tf.cast(image, tf.float32), training=False)
        batch = tf.shape(image)[0]
        classes = tf.tile(names[tf.newaxis, :], [batch, 1])
        return {SCORES_OUTPUT: scores, CLASSES_OUTPUT: classes}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve)
    archive.write_out(str(directory), verbose=False)


def write_warmup_requests(
    directory: Path, model_name: str, images: list[np.ndarray]
) -> None:
    """Write one Predict request per image (batch 1) and one with all of them."""
    path = directory / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)

    batches = [image[np.newaxis] for image in images] + [np.stack(images)]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(
                    name=model_name, signature_name=SIGNATURE_NAME
                )
            )
            request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def load_signature(directory: Path):
    """Load the exported `serving_default` signature as a callable."""
    return tf.saved_model.load(str(directory)).signatures[SIGNATURE_NAME]
