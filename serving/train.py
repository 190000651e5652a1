"""Train the rock-paper-scissors classifier and export it as a new model version.

Run as `python -m serving.train --data DIR --real DIR`; `make train` passes the defaults.
"""

import argparse
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from serving import calibration, dataset, training_data
from serving.model_card import machine_description

DROPOUT = 0.3

# Filters of each convolution block. The first block's convolution has
# stride 2, so five blocks take 112 pixels down to 1.
DEFAULT_FILTERS = (32, 64, 96, 128, 192)

# The presets of serving/augment.py, named here so that `--help` needs no TensorFlow.
STRENGTH_NAMES = ("light", "strong")

# "light" trained version 3 and "strong" version 2, otherwise identical. On
# the calibration part (not the held-out one), light reached 91.5% accuracy over
# all sources against 89.9% for strong, whose augmented batches the network
# could not fit (80% training accuracy at the last epoch against 91%).
AUGMENTATION_DEFAULT = "light"

log = logging.getLogger("serving.train")

DEFAULT_MODELS = Path(__file__).resolve().parent / "models" / "rps"

# Each real photograph is seen this many times an epoch: there are fewer of
# them than rendered hands, and they are what users send.
REAL_REPEATS = 4

# Version 4 trained for 18 epochs in 35 minutes on 2 cores, which leaves room
# in the hour that `make train` may take on a slower or busier machine.
EPOCHS = 18


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True,
                        help="folder of rendered hands, one sub-folder of images per class")
    parser.add_argument("--real", type=Path, default=None,
                        help="folder of hand photographs with the same class folders, "
                             "named <clip>_jpg.rf.<id>.jpg (default: train without them)")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help="model base path holding the version folders "
                             "(default: %(default)s)")
    parser.add_argument("--version", type=int, default=None,
                        help="version number to write (default: one above the highest)")
    parser.add_argument("--model-name", default="rps",
                        help="model name used in the warm-up requests (default: %(default)s)")
    parser.add_argument("--size", type=int, default=112,
                        help="input height and width in pixels (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="number of epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--held-out-fraction", type=float, default=0.2,
                        help="share of each source held out for the model card "
                             "(default: %(default)s)")
    parser.add_argument("--calibration-fraction", type=float, default=0.1,
                        help="share of each source that fits the temperature and the "
                             "uncertainty thresholds (default: %(default)s)")
    parser.add_argument("--augmentation", choices=sorted(STRENGTH_NAMES),
                        default=AUGMENTATION_DEFAULT,
                        help="preset of random transforms in serving/augment.py "
                             "(default: %(default)s)")
    parser.add_argument("--filters", type=_filters, default=DEFAULT_FILTERS,
                        help="filters of each convolution block, comma-separated "
                             f"(default: {','.join(map(str, DEFAULT_FILTERS))})")
    parser.add_argument("--real-repeats", type=int, default=REAL_REPEATS,
                        help="times each photograph is shown per epoch (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=DROPOUT,
                        help="share of pooled features dropped before the last layer "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    minimum = 2 ** (len(args.filters) + 1)
    if args.size < minimum:
        parser.error(f"--size must be at least {minimum} pixels for {len(args.filters)} blocks")
    return args


def _filters(text: str) -> tuple[int, ...]:
    try:
        filters = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid filter list {text!r}; expected e.g. 32,64,128")
    if not filters or min(filters) < 1:
        raise argparse.ArgumentTypeError(f"invalid filter list {text!r}; expected e.g. 32,64,128")
    return filters


def next_version(models: Path) -> int:
    """Return one above the highest numeric version folder under `models`, or 1."""
    versions = [int(p.name) for p in models.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def main(argv: list[str] | None = None) -> int:
    """Train, calibrate, export, evaluate and document one model version."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    version = args.version or next_version(args.models)
    target = args.models / str(version)
    if target.exists():
        print(f"train: error: {target} already exists; pick another --version",
              file=sys.stderr)
        return 2

    # Imported here so that `--help` and argument errors do not wait for TensorFlow.
    import keras
    import tensorflow as tf

    from serving import evaluate
    from serving.architecture import build_classifier
    from serving.augment import STRENGTHS, Augmenter
    from serving.export import export_saved_model, write_warmup_requests

    keras.utils.set_random_seed(args.seed)
    size = (args.size, args.size)
    sources = training_data.load(
        args.data, args.real, size, args.held_out_fraction, args.calibration_fraction,
        args.seed,
    )
    parts = sources.parts

    train_sets = [parts["cgi"]["train"], parts["no_hand"]["train"]]
    train_sets += [parts["real"]["train"]] * args.real_repeats if "real" in parts else []
    images = np.concatenate([part.images for part in train_sets])
    labels = np.concatenate([part.labels for part in train_sets])
    # Only the rendered hands have a plain background to replace.
    masks = np.concatenate(
        [dataset.background_masks(parts["cgi"]["train"].images)]
        + [np.zeros(part.images.shape[:3] + (1,), np.uint8) for part in train_sets[1:]]
    )
    calibration_sets = [by_part["calibration"] for by_part in parts.values()]
    calibration_images = np.concatenate([part.images for part in calibration_sets])
    calibration_labels = np.concatenate([part.labels for part in calibration_sets])

    strength = STRENGTHS[args.augmentation]
    augmenter = Augmenter(parts["no_hand"]["train"].images, strength)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((images, masks, labels))
        .shuffle(len(labels), seed=args.seed, reshuffle_each_iteration=True)
        .batch(args.batch_size)
        .map(lambda x, m, y: (augmenter(tf.cast(x, tf.float32), m), y),
             num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation_ds = tf.data.Dataset.from_tensor_slices(
        (calibration_images.astype(np.float32), calibration_labels)
    ).batch(64)

    model = build_classifier(size, sources.none_label + 1, args.filters, args.dropout)
    # Cosine decay to zero: at a constant rate the batch-norm statistics kept
    # validation accuracy swinging between 40% and 99% from epoch to epoch.
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=args.epochs * len(train_ds)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.monotonic()
    history = model.fit(
        train_ds, validation_data=validation_ds, epochs=args.epochs,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    training_seconds = time.monotonic() - started

    logits = model.predict(calibration_images.astype(np.float32), batch_size=64, verbose=0)
    temperature = calibration.fit_temperature(logits, calibration_labels)
    thresholds = calibration.choose_thresholds(
        *_threshold_inputs(sources, logits / temperature, calibration_sets)
    )
    log.info("temperature %.3f, thresholds %s", temperature, thresholds)
    calibration_accuracy = _accuracy_by_source(sources, logits, calibration_sets)
    log.info("calibration-part accuracy by source: %s", calibration_accuracy)

    # A model server polling the base path must never see a half-written
    # version, so the export goes to a hidden folder that is then renamed.
    staging = args.models / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    export_saved_model(model, sources.class_names, staging, temperature, thresholds)
    held_out = parts["cgi"]["held_out"]
    examples = [held_out.images[np.flatnonzero(held_out.labels == i)[0]]
                for i in range(len(sources.class_names))]
    write_warmup_requests(staging, args.model_name, examples)
    staging.rename(target)
    log.info("exported version %d to %s", version, target)

    facts = {
        "model_name": args.model_name,
        "version": version,
        "class_names": sources.class_names,
        "height": args.size,
        "width": args.size,
        "seed": args.seed,
        "held_out_fraction": args.held_out_fraction,
        "calibration_fraction": args.calibration_fraction,
        "images": {
            source: {part: len(by_part[part].labels) for part in training_data.PARTS}
            for source, by_part in parts.items()
        },
        "real_repeats": args.real_repeats,
        "calibration_accuracy": calibration_accuracy,
        "temperature": temperature,
        "thresholds": thresholds,
        "parameters": int(model.count_params()),
        "filters": list(args.filters),
        "dropout": args.dropout,
        "augmentation": {"preset": args.augmentation, **strength.as_dict()},
        "architecture": _summary(model),
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "training_seconds": training_seconds,
        "machine": machine_description(),
        "command": _command(args),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "held_out_reliability": _held_out_reliability(model, sources, temperature),
    }
    evaluate.document_version(args.models, version, sources, facts)
    return 0


def _threshold_inputs(sources, scaled_logits: np.ndarray, calibration_sets: list) -> tuple:
    """Split calibration outputs into per-source hand results and the no-hand results."""
    probabilities = calibration.softmax(scaled_logits)
    gestures = sources.none_label
    hand = 1.0 - probabilities[:, gestures]
    gesture_scores = calibration.softmax(scaled_logits[:, :gestures])
    top = gesture_scores.max(axis=1)
    guess = gesture_scores.argmax(axis=1)

    hands, no_hand, start = [], None, 0
    for source, part in zip(sources.parts, calibration_sets):
        stop = start + len(part.labels)
        outputs = {"hand": hand[start:stop], "top": top[start:stop],
                   "correct": guess[start:stop] == part.labels}
        if source == "no_hand":
            no_hand = outputs
        else:
            hands.append(outputs)
        start = stop
    return hands, no_hand


def _accuracy_by_source(sources, logits: np.ndarray, calibration_sets: list) -> dict:
    """Return the share of each source's calibration images whose top output is right."""
    predicted = logits.argmax(axis=1)
    accuracy, start = {}, 0
    for source, part in zip(sources.parts, calibration_sets):
        stop = start + len(part.labels)
        accuracy[source] = float(np.mean(predicted[start:stop] == part.labels)) \
            if len(part.labels) else None
        start = stop
    return accuracy


def _held_out_reliability(model, sources, temperature: float) -> dict:
    """Return the reliability of the 4-way softmax on all held-out images, before and after T."""
    held_out = [by_part["held_out"] for by_part in sources.parts.values()]
    images = np.concatenate([part.images for part in held_out]).astype(np.float32)
    labels = np.concatenate([part.labels for part in held_out])
    logits = model.predict(images, batch_size=64, verbose=0)
    return {
        "before": calibration.reliability(calibration.softmax(logits), labels),
        "after": calibration.reliability(calibration.softmax(logits / temperature), labels),
    }


def _summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "```\n" + "\n".join(lines) + "\n```"


def _command(args: argparse.Namespace) -> str:
    command = "make train DATA=" + shlex.quote(os.path.relpath(args.data))
    if args.real is not None:
        command += " REAL=" + shlex.quote(os.path.relpath(args.real))
    options = []
    if args.augmentation != AUGMENTATION_DEFAULT:
        options.append(f"--augmentation {args.augmentation}")
    if args.filters != DEFAULT_FILTERS:
        options.append("--filters " + ",".join(map(str, args.filters)))
    if args.epochs != EPOCHS:
        options.append(f"--epochs {args.epochs}")
    if args.dropout != DROPOUT:
        options.append(f"--dropout {args.dropout}")
    if args.real_repeats != REAL_REPEATS:
        options.append(f"--real-repeats {args.real_repeats}")
    if options:
        command += " TRAIN_ARGS=" + shlex.quote(" ".join(options))
    return command


if __name__ == "__main__":
    sys.exit(main())
