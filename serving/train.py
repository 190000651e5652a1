"""Train the rock-paper-scissors classifier and export it as a new model version.

Run as `python -m serving.train --data DIR`; `make train` passes the defaults.
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

from serving import dataset
from serving.model_card import (
    evaluate,
    machine_description,
    plot_history,
    write_card,
    write_metrics,
)

log = logging.getLogger("serving.train")

DEFAULT_MODELS = Path(__file__).resolve().parent / "models" / "rps"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with one sub-folder of images per class")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                        help="model base path holding the version folders "
                             "(default: %(default)s)")
    parser.add_argument("--version", type=int, default=None,
                        help="version number to write (default: one above the highest)")
    parser.add_argument("--model-name", default="rps",
                        help="model name used in the warm-up requests (default: %(default)s)")
    parser.add_argument("--size", type=int, default=150,
                        help="input height and width in pixels (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20,
                        help="number of epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of each class held out (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def next_version(models: Path) -> int:
    """Return one above the highest numeric version folder under `models`, or 1."""
    versions = [int(p.name) for p in models.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def main(argv: list[str] | None = None) -> int:
    """Train, export, evaluate and document one model version."""
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

    from serving.architecture import build_augmentation, build_classifier
    from serving.export import export_saved_model, write_warmup_requests

    keras.utils.set_random_seed(args.seed)
    size = (args.size, args.size)

    class_names, paths, labels = dataset.list_images(args.data)
    train_idx, val_idx = dataset.stratified_split(labels, args.validation_fraction, args.seed)
    log.info("%d images in classes %s: %d for training, %d held out",
             len(paths), class_names, len(train_idx), len(val_idx))
    train = dataset.load_split(paths, labels, train_idx, size)
    validation = dataset.load_split(paths, labels, val_idx, size)

    augmentation = build_augmentation(args.seed)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((train.images, train.labels))
        .shuffle(len(train.labels), seed=args.seed, reshuffle_each_iteration=True)
        .batch(args.batch_size)
        .map(lambda x, y: (augmentation(tf.cast(x, tf.float32), training=True), y),
             num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = (
        tf.data.Dataset.from_tensor_slices(
            (validation.images.astype(np.float32), validation.labels))
        .batch(64)
    )

    model = build_classifier(size, len(class_names))
    # Cosine decay to zero: at a constant rate the batch-norm statistics kept
    # validation accuracy swinging between 40% and 99% from epoch to epoch.
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=args.epochs * len(train_ds)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.monotonic()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=args.epochs,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    training_seconds = time.monotonic() - started

    # A model server polling the base path must never see a half-written
    # version, so the export goes to a hidden folder that is then renamed.
    staging = args.models / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    export_saved_model(model, class_names, staging)
    examples = [validation.images[np.flatnonzero(validation.labels == i)[0]]
                for i in range(len(class_names))]
    write_warmup_requests(staging, args.model_name, examples)
    staging.rename(target)
    log.info("exported version %d to %s", version, target)

    metrics = evaluate(target, validation.images, validation.labels, class_names)
    log.info("held-out accuracy %.4f on %d images", metrics["accuracy"], metrics["images"])

    cards = args.models / "cards"
    cards.mkdir(exist_ok=True)
    curve = cards / f"v{version}-training.png"
    plot_history(history.history, curve)
    summary: list[str] = []
    model.summary(print_fn=lambda line, **_: summary.append(line))
    facts = {
        "model_name": args.model_name,
        "version": version,
        "class_names": class_names,
        "height": args.size,
        "width": args.size,
        "data_images": len(paths),
        "train_images": len(train_idx),
        "validation_fraction": args.validation_fraction,
        "seed": args.seed,
        "validation": metrics,
        "architecture": "```\n" + "\n".join(summary) + "\n```",
        "parameters": int(model.count_params()),
        "saved_model_bytes": sum(f.stat().st_size for f in target.rglob("*") if f.is_file()),
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "training_seconds": training_seconds,
        "machine": machine_description(),
        "curve_file": curve.name,
        "command": "make train DATA=" + shlex.quote(os.path.relpath(args.data)),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    write_metrics(cards / f"v{version}-metrics.json", facts)
    write_card(cards / f"v{version}.md", facts)
    log.info("wrote the model card %s", cards / f"v{version}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
