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
HAND_OUTPUT = "hand_probability"
REASON_OUTPUT = "uncertain_reason"

# Values of the `uncertain_reason` output; an empty string means confident.
NO_HAND = "no_hand"
LOW_CONFIDENCE = "low_confidence"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def export_saved_model(
    model: keras.Model,
    class_names: list[str],
    directory: Path,
    temperature: float,
    thresholds: dict[str, float],
) -> None:
    """Write `model` to `directory` with a uint8 `serving_default` signature.

    `model` returns logits for the gestures in `class_names` and, last, for
    "no hand". The signature takes `image` (uint8, [batch, height, width, 3])
    and returns:
    - `scores` (float32, [batch, gestures]): the gesture probabilities given
      that the image shows a hand, summing to 1;
    - `classes` (string, [batch, gestures]): the name of each score column;
    - `hand_probability` (float32, [batch]): the probability that the image
      shows a hand gesture at all;
    - `uncertain_reason` (string, [batch]): "no_hand" when that probability is
      below `thresholds["hand"]`, else "low_confidence" when the top score is
      below `thresholds["confidence"]`, else "".

    Logits are divided by `temperature` first, so the probabilities are calibrated.
    """
    height, width = model.input_shape[1:3]
    names = tf.constant(class_names)
    gestures = len(class_names)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)
        ]
    )
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(tf.cast(image, tf.float32), training=False) / temperature
        hand = 1.0 - tf.nn.softmax(logits)[:, gestures]
        scores = tf.nn.softmax(logits[:, :gestures])

        reason = tf.where(
            hand < thresholds["hand"],
            NO_HAND,
            tf.where(tf.reduce_max(scores, axis=1) < thresholds["confidence"],
                     LOW_CONFIDENCE, ""),
        )
        batch = tf.shape(image)[0]
        classes = tf.tile(names[tf.newaxis, :], [batch, 1])
        return {
            SCORES_OUTPUT: scores,
            CLASSES_OUTPUT: classes,
            HAND_OUTPUT: hand,
            REASON_OUTPUT: reason,
        }

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
