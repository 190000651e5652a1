"""The classroom server, rebuilt as a reference point: Flask's development server
and `keras.Model.predict` on every request.

    python -m bench.classroom --port 5099

The network is rebuilt with serving.architecture.build_classifier and its
weights are copied by name from the variables of the committed SavedModel,
so the baseline runs the same weights through the Keras path the classroom
server used. It checks at start that its scores match the SavedModel
signature's on the samples. Like the classroom server, it decodes with Pillow
and drops the alpha channel, with no EXIF orientation.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import tensorflow as tf
from flask import Flask, request
from PIL import Image

from serving.architecture import build_classifier
from serving.export import SIGNATURE_NAME

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "serving" / "models" / "rps" / "1"


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

    model = build_classifier((int(height), int(width)), len(class_names))
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
    print(f"classroom: weights loaded; max score difference from the signature "
          f"{difference:.2e}; classes {class_names}", flush=True)
    create_app(model, class_names).run(host="127.0.0.1", port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
