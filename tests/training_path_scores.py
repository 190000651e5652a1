"""Print the scores the training path gives for image files, as JSON.

Run in a subprocess by test_preprocess_parity.py, because TensorFlow must not
be imported into the pytest process. Usage:
    python tests/training_path_scores.py MODEL_DIR FILE...
"""

import json
import sys
from pathlib import Path

import numpy as np

from serving import dataset
from serving.export import CLASSES_OUTPUT, INPUT_NAME, SCORES_OUTPUT, load_signature


def main(model_dir: str, files: list[str]) -> None:
    """Load the files as training does, run the exported signature and print scores."""
    signature = load_signature(Path(model_dir))
    height, width = signature.structured_input_signature[1][INPUT_NAME].shape[1:3]

    paths = [Path(name) for name in files]
    labels = np.zeros(len(paths), dtype=np.int64)
    split = dataset.load_split(paths, labels, np.arange(len(paths)), (height, width))

    outputs = signature(**{INPUT_NAME: split.images})
    names = [name.decode() for name in outputs[CLASSES_OUTPUT][0].numpy()]
    scores = outputs[SCORES_OUTPUT].numpy()
    result = {
        path.name: dict(zip(names, map(float, row))) for path, row in zip(paths, scores)
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
