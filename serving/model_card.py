"""Write model cards and the table of versions from measured facts."""

import json
import platform
from pathlib import Path

import numpy as np


CGI_CREDIT = (
    "Rock Paper Scissors Dataset, Laurence Moroney, 2019, "
    "http://www.laurencemoroney.com/rock-paper-scissors-dataset/ "
    "(CC BY 2.0, https://creativecommons.org/licenses/by/2.0/)"
)


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


REAL_CREDIT = (
    "Rock Paper Scissors (SXSW) hand-gesture detection, Roboflow Universe "
    "(https://universe.roboflow.com/roboflow-58fyf/rock-paper-scissors-sxsw), "
    "cropped to one hand per image; CDLA-Sharing-1.0 (https://cdla.dev/sharing-1-0/). "
    "The licence, attribution and change notice travel with the images in "
    "`LICENSE-and-attribution/`"
)

NO_HAND_CREDIT = (
    "pictures that ship inside scikit-image 0.26.0 (`skimage/data/`; each picture's "
    "source and licence, mostly public domain or CC0, are in "
    "`skimage/data/_fetchers.py`) and Matplotlib 3.11.2 "
    "(`mpl-data/sample_data/`), cut into random crops, plus generated solid colours, "
    "gradients, noise, blobs, stripes and checks, shapes, text, and blank pages, "
    "drawings and charts on white"
)

SOURCE_TITLES = {
    "cgi": "rendered hands (CGI)",
    "real": "hand photographs",
    "no_hand": "no-hand pictures",
}
HAND_SOURCE_HEADINGS = {"cgi": "Rendered hands (CGI)", "real": "Hand photographs"}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _confusion_table(names: list[str], confusion: list[list[int]]) -> str:
    lines = ["| true \\ predicted | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| **{name}** | " + " | ".join(str(n) for n in row) + " |"
              for name, row in zip(names, confusion)]
    return "\n".join(lines)


def _results_table(measurements: dict) -> str:
    lines = ["| version | source | images | accuracy | accuracy turned 90° "
             "| flagged uncertain | wrong answers flagged |",
             "|---|---|---|---|---|---|---|"]
    for version, measured in sorted(measurements.items(), key=lambda item: int(item[0])):
        for source, result in measured["sources"].items():
            flagged = _percent(result["flagged"]) if result["judges_certainty"] \
                else "no signal"
            errors = result.get("errors")
            caught = "n/a" if not errors or not result["judges_certainty"] \
                else f"{result['errors_flagged']} of {errors}"
            lines.append(f"| {version} | {SOURCE_TITLES.get(source, source)} "
                         f"| {result['images']} | {_percent(result.get('accuracy'))} "
                         f"| {_percent(result.get('accuracy_turned'))} "
                         f"| {flagged} | {caught} |")
    return "\n".join(lines)


def _low_confidence_rule(thresholds: dict) -> str:
    if thresholds["confidence"] <= 0.0:
        return ("`low_confidence` never (the search chose a confidence threshold of 0, "
                "which switches that check off)")
    return f"`low_confidence` when the top score is below {thresholds['confidence']:.3f}"


def _augmentation_text(augmentation: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in augmentation.items()
                     if name != "preset")


def write_card(path: Path, facts: dict, parameters: dict[int, int]) -> None:
    """Write the Markdown model card of one exported version from `facts`.

    `parameters` maps each measured version to its parameter count, where known.
    """
    names = facts["class_names"]
    version = str(facts["version"])
    measured = facts["measurements"][version]
    sources = measured["sources"]
    thresholds = facts["thresholds"]
    reliability = facts["held_out_reliability"]
    counts = facts["images"]

    count_rows = "\n".join(
        f"| {SOURCE_TITLES.get(source, source)} | {parts['train']} | "
        f"{parts['calibration']} | {parts['held_out']} |"
        for source, parts in counts.items()
    )
    confusions = "\n\n".join(
        f"{HAND_SOURCE_HEADINGS.get(source, source)}:\n\n"
        + _confusion_table(names, result["confusion"])
        for source, result in sources.items() if "confusion" in result
    )
    no_hand = sources.get("no_hand", {})
    no_hand_rows = "\n".join(
        f"| {kind} | {share:.1%} |"
        for kind, share in no_hand.get("flagged_by_source", {}).items()
    )

    text = f"""# Model card: {facts['model_name']} version {version}

Classifies a photo of a hand as one of {', '.join(names)}, and says when the
picture does not look like a hand gesture or the answer is not certain.

## Interface

- SavedModel signature `serving_default`.
- Input `image`: uint8 RGB pixels, shape `[batch, {facts['height']}, {facts['width']}, 3]`.
  The model scales them itself. Callers resize with `gateway/preprocess.py`, the
  same code that prepared the training images.
- Outputs:
  - `scores`: float32 `[batch, {len(names)}]`, the gesture probabilities given that
    the image shows a hand (they sum to 1);
  - `classes`: the class name of each score column, `[batch, {len(names)}]`;
  - `hand_probability`: float32 `[batch]`, the probability that the image shows a
    hand gesture at all;
  - `uncertain_reason`: string `[batch]`: `no_hand` when `hand_probability` is below
    {thresholds['hand']:.3f}; {_low_confidence_rule(thresholds)}; empty otherwise.
- The network has one more output unit than there are gestures, for "no hand".
  Its logits are divided by the temperature {facts['temperature']:.3f} before the softmax.
- Warm-up requests for TF Serving in `assets.extra/tf_serving_warmup_requests`.

## Data

- Rendered hands: {CGI_CREDIT}. The held-out part is the same stratified 20%
  (seed {facts['seed']}) that version 1 was measured on.
- Hand photographs: {REAL_CREDIT}. Frames of one clip (the file name before
  `_jpg.rf.` or `_png.rf.`) stay in one part.
- No-hand pictures: {NO_HAND_CREDIT}. Each source picture sits in one part only.

| source | training | calibration | held out |
|---|---|---|---|
{count_rows}

The calibration part fits the temperature and the two thresholds and nothing
else; the held-out part is used only for the figures below. Each photograph is
shown {facts['real_repeats']} times per epoch in training.

## Results on the held-out parts

Measured through each version's exported signature in the same run. "No
signal" marks versions without the `uncertain_reason` output. "Accuracy turned
90°" is the accuracy on the same images turned a quarter turn clockwise and
anticlockwise, for hands that enter the picture from the side; "n/a" marks
no-hand pictures and measurements made before it was added.

{_results_table(facts['measurements'])}

Version {version}, confusion matrices (all answers, flagged or not):

{confusions}

Version {version}, share of held-out no-hand pictures flagged, by source:

| source | flagged |
|---|---|
{no_hand_rows}

## Calibration and thresholds

- Temperature scaling: one temperature, fitted on the calibration part by
  minimising cross-entropy, divides the logits: T = {facts['temperature']:.3f}.
- Expected calibration error of the top-class probability (10 equal-width bins)
  on all held-out images, over the {len(names) + 1} outputs including "no hand":
  **{reliability['before']['ece']:.4f} before** and **{reliability['after']['ece']:.4f} after**
  temperature scaling.
- Thresholds: a grid search on the calibration part picked the pair that
  flags the most no-hand pictures and wrong answers while flagging at most 1% of
  the hand images of each source: `hand_probability` < {thresholds['hand']:.3f} gives
  `no_hand`; {_low_confidence_rule(thresholds)}. The budget applies to the
  calibration part, which is small (see the counts above), so the held-out
  shares can exceed it.

![reliability diagram]({facts['reliability_file']})

## Size and speed

{_speed_table(facts['measurements'], parameters)}

Batch-1 latency is the median of {300} calls of the signature on one image,
in one process, on {facts['machine']}, measured by `serving/evaluate.py`.

## Architecture and training

{facts['architecture']}

- Parameters: {facts['parameters']:,}; filters per block {', '.join(map(str, facts['filters']))}{_dropout_text(facts)}.
- Adam, learning rate {facts['learning_rate']} with cosine decay to zero, batch
  {facts['batch_size']}, {facts['epochs']} epochs; the weights after the last epoch are
  exported.
- Augmentation on the training batches (`serving/augment.py`): a no-hand picture
  behind rendered hands in place of their white background; flips, rotation,
  zoom and shift; brightness, contrast, saturation, hue, per-channel colour cast and
  some grey images; blur, sensor noise and JPEG re-encoding. Preset
  `{facts['augmentation']['preset']}`: {_augmentation_text(facts['augmentation'])}.

![training curve]({facts['curve_file']})

Training took {facts['training_seconds'] / 60:.1f} minutes on {facts['machine']}.

## Reproduce

```
{facts['command']}
```

This trains with the same settings and seed and writes the next free version
directory. TensorFlow's multi-threaded CPU kernels are not bit-for-bit
deterministic, so expect close, not identical, weights and figures.

## Limits

- The held-out photographs come from the same collection as the training
  photographs, though from other clips. Other cameras, people and backgrounds
  will score lower.
- The no-hand pictures are few and mostly from two packages' sample images, so
  the flagged share on everyday scenes (rooms, pets, faces) is an estimate from
  a small sample. The by-source table above shows which pictures are missed.
- The rendered hands sit on white, so white or near-white pictures without a
  hand (a blank page, drawings and charts on white) are the hardest to flag.
  The pages, drawings and charts among the no-hand pictures are generated, so
  real drawings, documents and screenshots may be flagged less often than the
  table above shows.
- Latency figures come from the run that wrote this card; cards written in
  other runs show the same versions with run-to-run noise.
"""
    path.write_text(text)


def _speed_table(measurements: dict, parameters: dict[int, int]) -> str:
    lines = ["| version | input | parameters | SavedModel | batch-1 latency (median / p99) |",
             "|---|---|---|---|---|"]
    for version, measured in sorted(measurements.items(), key=lambda item: int(item[0])):
        latency = measured["batch1_latency"]
        count = parameters.get(int(version))
        height, width = measured["input_size"]
        lines.append(
            f"| {version} | {height}x{width} | {f'{count:,}' if count else 'n/a'} "
            f"| {measured['saved_model_bytes'] / 1e6:.1f} MB "
            f"| {latency['median_ms']:.2f} / {latency['p99_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def _dropout_text(facts: dict) -> str:
    # Metrics written before the dropout rate was recorded lack the key.
    if "dropout" not in facts:
        return ""
    return f"; dropout {facts['dropout']} before the last layer"


def write_index(path: Path, facts: dict, parameters: dict[int, int]) -> None:
    """Write the table of all versions: accuracy per source, size and speed."""
    measurements = facts["measurements"]
    rows = []
    for version, measured in sorted(measurements.items(), key=lambda item: int(item[0])):
        sources = measured["sources"]
        def cell(source: str, key: str) -> str:
            result = sources.get(source)
            if result is None or (key == "flagged" and not result["judges_certainty"]):
                return "n/a"
            return _percent(result.get(key))
        rows.append(f"| [{version}](v{version}.md) | {cell('cgi', 'accuracy')} "
                    f"| {cell('real', 'accuracy')} | {cell('real', 'accuracy_turned')} "
                    f"| {cell('no_hand', 'flagged')} "
                    f"| {cell('cgi', 'flagged')} / {cell('real', 'flagged')} |")

    text = f"""# Model versions

Every version under `serving/models/rps/`, measured in one run of
`serving/evaluate.py` on the held-out parts that version {facts['version']} defines
(see its card). TensorFlow Serving and the local model server serve the highest
version.

| version | rendered hands, accuracy | photographs, accuracy | photographs turned 90°, accuracy | no-hand pictures flagged | hand pictures flagged (rendered / photo) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

{_speed_table(measurements, parameters)}

Latency: median and 99th percentile of {300} one-image calls of the exported
signature in one process on {facts['machine']}.
"""
    path.write_text(text)


def machine_description() -> str:
    """Describe the CPU the training ran on, as far as Python can tell."""
    import os

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU"


def write_metrics(path: Path, facts: dict) -> None:
    """Write the card's facts as JSON for tools and later comparisons."""
    path.write_text(json.dumps(facts, indent=2) + "\n")
