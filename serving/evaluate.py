"""Measure every exported version on each held-out source and write the new version's card.

`serving.train` calls `document_version` after the export. Run
`python -m serving.evaluate --version N --data DIR --real DIR` to measure
and document an exported version again with the settings it was trained with.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from serving import training_data
from serving.export import (
    CLASSES_OUTPUT,
    HAND_OUTPUT,
    INPUT_NAME,
    REASON_OUTPUT,
    SCORES_OUTPUT,
    load_signature,
)
from serving.model_card import plot_history, write_card, write_index

log = logging.getLogger(__name__)

LATENCY_CALLS = 300
LATENCY_WARMUP_CALLS = 30


def version_folders(models: Path) -> list[int]:
    """Return the numeric version folders under `models`, in ascending order."""
    return sorted(int(p.name) for p in models.iterdir() if p.is_dir() and p.name.isdigit())


def run_signature(signature, images: np.ndarray, class_names: list[str]) -> dict:
    """Return the signature's outputs for `images`, with score columns in `class_names` order.

    `hand` and `reason` are None for versions that do not export them.
    """
    scores, hand, reason = [], [], []
    for start in range(0, len(images), 64):
        outputs = signature(**{INPUT_NAME: images[start:start + 64]})
        exported = [name.decode() for name in outputs[CLASSES_OUTPUT][0].numpy()]
        order = [exported.index(name) for name in class_names]
        scores.append(outputs[SCORES_OUTPUT].numpy()[:, order])
        if HAND_OUTPUT in outputs:
            hand.append(outputs[HAND_OUTPUT].numpy())
            reason.extend(value.decode() for value in outputs[REASON_OUTPUT].numpy())

    return {
        "scores": np.concatenate(scores),
        "hand": np.concatenate(hand) if hand else None,
        "reason": np.array(reason) if hand else None,
    }


def summarize(outputs: dict, labels: np.ndarray, files: list[str], none_label: int,
              class_count: int) -> dict:
    """Return accuracy, flagged shares and the confusion matrix of one source's outputs."""
    predicted = outputs["scores"].argmax(axis=1)
    reason = outputs["reason"]
    flagged = reason != "" if reason is not None else np.zeros(len(labels), bool)
    reasons = {name: int(np.sum(reason == name)) for name in sorted(set(reason) - {""})} \
        if reason is not None else {}
    result = {
        "images": int(len(labels)),
        "judges_certainty": reason is not None,
        "flagged": float(flagged.mean()) if len(labels) else 0.0,
        "flagged_by_reason": reasons,
    }

    if len(labels) and labels[0] == none_label:
        kinds = sorted(set(files))
        result["flagged_by_source"] = {
            kind: float(flagged[[f == kind for f in files]].mean()) for kind in kinds
        }
        result["labels_given"] = np.bincount(predicted, minlength=class_count).tolist()
        return result

    correct = predicted == labels
    confusion = np.zeros((class_count, class_count), dtype=int)
    for true, guess in zip(labels, predicted):
        confusion[true, guess] += 1
    result.update({
        "accuracy": float(correct.mean()),
        "errors": int((~correct).sum()),
        "accuracy_when_not_flagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
        "errors_flagged": int((~correct & flagged).sum()),
        "confusion": confusion.tolist(),
    })
    return result


def turned_accuracy(signature, images: np.ndarray, labels: np.ndarray,
                    class_names: list[str]) -> float:
    """Return the accuracy on `images` turned by a quarter turn each way.

    Hands enter a photo from any side, so this measures how much the
    predictions depend on the orientation of the picture.
    """
    turned = np.concatenate([np.rot90(images, turns, axes=(1, 2)) for turns in (1, 3)])
    outputs = run_signature(signature, turned, class_names)
    return float(np.mean(outputs["scores"].argmax(axis=1) == np.tile(labels, 2)))


def batch1_latency(signature, size: tuple[int, int]) -> dict:
    """Return the median and p99 milliseconds of one-image signature calls."""
    import tensorflow as tf

    image = tf.constant(np.full((1, size[0], size[1], 3), 128, dtype=np.uint8))
    for _ in range(LATENCY_WARMUP_CALLS):
        signature(**{INPUT_NAME: image})
    timings = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        signature(**{INPUT_NAME: image})[SCORES_OUTPUT].numpy()
        timings.append((time.perf_counter() - started) * 1000.0)
    return {"median_ms": float(np.median(timings)), "p99_ms": float(np.percentile(timings, 99))}


def measure_version(directory: Path, sources: training_data.Sources, seed: int) -> dict:
    """Measure one exported version on every source's held-out part."""
    signature = load_signature(directory)
    size = tuple(signature.structured_input_signature[1][INPUT_NAME].shape[1:3])
    trained_size = sources.parts["cgi"]["held_out"].images.shape[1:3]

    results = {}
    for source, by_part in sources.parts.items():
        part = by_part["held_out"]
        images = part.images if size == trained_size else \
            training_data.reload_at(sources, source, "held_out", size, seed)
        outputs = run_signature(signature, images, sources.class_names)
        results[source] = summarize(outputs, part.labels, part.files, sources.none_label,
                                    len(sources.class_names))
        if source != "no_hand":
            results[source]["accuracy_turned"] = turned_accuracy(
                signature, images, part.labels, sources.class_names
            )

    return {
        "input_size": list(size),
        "saved_model_bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
        "batch1_latency": batch1_latency(signature, size),
        "sources": results,
    }


def document_version(models: Path, version: int, sources: training_data.Sources,
                     facts: dict) -> None:
    """Measure every version on the held-out parts, then write `version`'s card and the index."""
    measurements = {}
    for number in version_folders(models):
        log.info("measuring version %d on the held-out images", number)
        measurements[number] = measure_version(models / str(number), sources, facts["seed"])

    cards = models / "cards"
    cards.mkdir(exist_ok=True)
    facts = dict(facts, measurements={str(k): v for k, v in measurements.items()},
                 curve_file=f"v{version}-training.png",
                 reliability_file=f"v{version}-reliability.png")
    (cards / f"v{version}-metrics.json").write_text(json.dumps(facts, indent=2) + "\n")

    from serving.calibration import plot_reliability

    plot_history(facts["history"], cards / facts["curve_file"])
    plot_reliability(facts["held_out_reliability"]["before"],
                     facts["held_out_reliability"]["after"],
                     cards / facts["reliability_file"])
    parameters = _parameters_by_version(cards)
    write_card(cards / f"v{version}.md", facts, parameters)
    write_index(cards / "README.md", facts, parameters)
    log.info("wrote the model card %s", cards / f"v{version}.md")


def _parameters_by_version(cards: Path) -> dict[int, int]:
    parameters = {}
    for path in cards.glob("v*-metrics.json"):
        number = path.name[1:].split("-")[0]
        if number.isdigit():
            parameters[int(number)] = json.loads(path.read_text()).get("parameters")
    return parameters


def main(argv: list[str] | None = None) -> int:
    """Measure an exported version again and rewrite its card from its metrics file."""
    parser = argparse.ArgumentParser(prog="python -m serving.evaluate",
                                     description=main.__doc__)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True,
                        help="folder of rendered hands the version was trained on")
    parser.add_argument("--real", type=Path, default=None,
                        help="folder of hand photographs the version was trained on")
    parser.add_argument("--models", type=Path,
                        default=Path(__file__).resolve().parent / "models" / "rps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    metrics = args.models / "cards" / f"v{args.version}-metrics.json"
    if not metrics.is_file():
        print(f"evaluate: error: {metrics} not found; train the version first",
              file=sys.stderr)
        return 2
    facts = json.loads(metrics.read_text())
    sources = training_data.load(
        args.data, args.real, (facts["height"], facts["width"]),
        facts["held_out_fraction"], facts["calibration_fraction"], facts["seed"],
    )
    document_version(args.models, args.version, sources, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
