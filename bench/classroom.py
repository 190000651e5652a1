"""The classroom server, rebuilt as a reference point: Flask's development server
and `keras.Model.predict` on every request.

    python -m bench.classroom --port 5099

The network of model version 1 is rebuilt here and its weights are copied by
name from the variables of that SavedModel, so the baseline runs the same
weights through the Keras path the classroom server used. It checks at start
that its scores match the SavedModel signature's on the samples. Like the
classroom server, it decodes with Pillow and drops the alpha channel, with no
EXIF orientation.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from flask import Flask, request
from keras import layers
from PIL import Image

from serving.export import SIGNATURE_NAME

ROOT = Path(__file__).resolve().parent.parent
MODEL_VERSION = 1
MODEL_DIR = ROOT / "serving" / "models" / "rps" / str(MODEL_VERSION)


def build_version1_classifier(size: tuple[int, int], class_count: int) -> keras.Model:
    """Build version 1's network, whose layer names match its SavedModel's variables.

    serving/architecture.py has changed since version 1 was trained, so the
    network from that commit (ad6feb7) is kept here: four Conv-BN-ReLU-MaxPool
    blocks and a softmax layer named "scores".
    """
    inputs = keras.Input(shape=(size[0], size[1], 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for block, filters in enumerate((32, 64, 128, 128)):
        stride = 2 if block == 0 else 1
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(class_count, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="rps_cnn")


def load_keras_model(directory: Path):
    """Rebuild the Keras classifier and copy the SavedModel's weights into it.

    Returns the model, its class names and the largest score difference from
    the SavedModel signature on the sample images.
    """
    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures[SIGNATURE_NAME]
    height, width = signature.structured_input_signature[1]["image"].shape[1:3]
    probe = signature(image=tf.zeros([1, height, width, 3], tf.uint8))
    class_names = [name.decode() for name in probe["classes"].numpy()[0]]

    model = build_version1_classifier((int(height), int(width)), len(class_names))
    saved = {variable.name.removesuffix(":0"): variable for variable in loaded.variables}
    for weight in model.weights:
        weight.assign(saved[weight.path].numpy())

    samples = sorted((ROOT / "client" / "samples").glob("*.png"))
    pixels = np.stack([
        np.asarray(Image.open(path).convert("RGB").resize((int(width), int(height))))
        for path in samples
    ])
    expected = signature(image=tf.constant(pixels))["scores"].numpy()
    actual = model.predict(pixels.astype(np.float32), verbose=0)
    return model, class_names, float(np.max(np.abs(expected - actual)))


def create_app(model, class_names: list[str]) -> Flask:
    """Create the classroom-style app with its one `/send_file` route."""
    app = Flask(__name__)
    height, width = model.input_shape[1:3]

    @app.post("/send_file")
    def send_file():
        image = Image.open(request.files["file"].stream).convert("RGB")
        pixels = np.asarray(image.resize((width, height)), dtype=np.float32)
        scores = model.predict(pixels[np.newaxis], verbose=0)[0]
        label = class_names[int(np.argmax(scores))]
        server_time = datetime.now().strftime("%Y-%B-%d %H:%M:%S")
        return f"The model predicts {label}; server time {server_time}"

    return app


def main(argv: list[str] | None = None) -> int:
    """Load the model and serve it with Flask's development server on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m bench.classroom")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    model, class_names, difference = load_keras_model(MODEL_DIR)
    print(f"classroom: weights of version {MODEL_VERSION} loaded; "
          f"max score difference from the signature "
          f"{difference:.2e}; classes {class_names}", flush=True)
    create_app(model, class_names).run(host="127.0.0.1", port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
