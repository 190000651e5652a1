"""Measure an exported model on held-out images and write its model card."""

import json
import platform
from pathlib import Path

import numpy as np

from serving.export import CLASSES_OUTPUT, INPUT_NAME, SCORES_OUTPUT, load_signature

CGI_CREDIT = (
    "Rock Paper Scissors Dataset, Laurence Moroney, 2019, "
    "http://www.laurencemoroney.com/rock-paper-scissors-dataset/ "
    "(CC BY 2.0, https://creativecommons.org/licenses/by/2.0/)"
)


def evaluate(
    directory: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict:
    """Run the exported signature on `images` and return accuracy and confusion matrix."""
    signature = load_signature(directory)
    predicted = []
    for start in range(0, len(images), 64):
        outputs = signature(**{INPUT_NAME: images[start : start + 64]})
        exported_names = [n.decode() for n in outputs[CLASSES_OUTPUT][0].numpy()]
        # Map the exported order back to the training label indices.
        order = [class_names.index(name) for name in exported_names]
        best = np.argmax(outputs[SCORES_OUTPUT].numpy(), axis=1)
        predicted.extend(order[i] for i in best)

    predicted = np.array(predicted)
    confusion = np.zeros((len(class_names), len(class_names)), dtype=int)
    for true, guess in zip(labels, predicted):
        confusion[true, guess] += 1
    return {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "confusion": confusion.tolist(),
    }


def plot_history(history: dict, path: Path) -> None:
    """Save training and validation accuracy and loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    accuracy_axis.plot(epochs, history["accuracy"], label="training")
    accuracy_axis.plot(epochs, history["val_accuracy"], label="validation")
    accuracy_axis.set(title="Accuracy", xlabel="epoch")
    loss_axis.plot(epochs, history["loss"], label="training")
    loss_axis.plot(epochs, history["val_loss"], label="validation")
    loss_axis.set(title="Loss (cross-entropy)", xlabel="epoch")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_card(path: Path, facts: dict) -> None:
    """Write the Markdown model card for one exported version from `facts`."""
    names = facts["class_names"]
    validation = facts["validation"]
    header = "| true \\ predicted | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    rows = [
        f"| **{name}** | " + " | ".join(str(n) for n in row) + " |"
        for name, row in zip(names, validation["confusion"])
    ]
    errors = validation["images"] - sum(
        validation["confusion"][i][i] for i in range(len(names))
    )

    text = f"""# Model card: {facts['model_name']} version {facts['version']}

Classifies a photo of a hand as one of {', '.join(names)}.

## Interface

- SavedModel signature `serving_default`.
- Input `image`: uint8 RGB pixels, shape `[batch, {facts['height']}, {facts['width']}, 3]`.
  The model scales them itself. Callers resize with `gateway/preprocess.py`, the
  same code that prepared the training images.
- Outputs `scores`: float32 softmax, `[batch, {len(names)}]`; `classes`: the class
  name of each score column, `[batch, {len(names)}]`.
- Warm-up requests for TF Serving in `assets.extra/tf_serving_warmup_requests`.

## Data

- Training data: {CGI_CREDIT}.
  Computer-generated hands on a white background, {facts['data_images']} images at 300x300.
- Held-out validation split: {validation['images']} images, {facts['validation_fraction']:.0%} of
  each class, drawn with seed {facts['seed']}; the remaining {facts['train_images']} images trained the model.
- Not measured here: photographs of real hands. Expect lower accuracy on them.

## Architecture

{facts['architecture']}

- Parameters: {facts['parameters']:,}; SavedModel size {facts['saved_model_bytes'] / 1e6:.1f} MB.
- Training: Adam, learning rate {facts['learning_rate']} with cosine decay to zero,
  batch {facts['batch_size']}, {facts['epochs']} epochs; the weights after the last epoch
  are exported (the held-out split chose nothing). Random flips, rotation, zoom,
  shift, brightness, contrast and hue on the training batches only.

## Results on the held-out split

Measured through the exported signature: accuracy **{validation['accuracy']:.2%}**
({errors} of {validation['images']} wrong).

{header}
{rule}
{chr(10).join(rows)}

![training curve]({facts['curve_file']})

Training took {facts['training_seconds'] / 60:.1f} minutes on {facts['machine']}.

## Reproduce

```
{facts['command']}
```

This trains with the same settings and seed and writes the next free version
directory. TensorFlow's multi-threaded CPU kernels are not bit-for-bit
deterministic, so expect close, not identical, weights and accuracy.
"""
    path.write_text(text)


def machine_description() -> str:
    """Describe the CPU the training ran on, as far as Python can tell."""
    import os

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU"


def write_metrics(path: Path, facts: dict) -> None:
    """Write the card's facts as JSON for tools and later comparisons."""
    path.write_text(json.dumps(facts, indent=2) + "\n")
