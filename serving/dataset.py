"""Load a class-per-folder image set through the shared preprocessing and split it."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.preprocess import SUPPORTED_FORMATS, preprocess

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Split:
    """Images (uint8, [n, height, width, 3]) and integer labels of one split."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]


def list_images(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Return the class names (sorted folder names), image paths and their labels."""
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not class_names:
        raise FileNotFoundError(f"no class folders under {root}")

    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        files = sorted(
            p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(
                f"no images ({', '.join(SUPPORTED_FORMATS)}) in {root / name}"
            )
        paths.extend(files)
        labels.extend([index] * len(files))
    return class_names, paths, np.array(labels, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return train and validation indices with the same class shares in each."""
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(members) * validation_fraction))
        validation.extend(members[:count])
        train.extend(members[count:])
    return np.sort(np.array(train)), np.sort(np.array(validation))


def load_split(
    paths: list[Path], labels: np.ndarray, indices: np.ndarray, size: tuple[int, int]
) -> Split:
    """Decode and resize the images at `indices` with the gateway's preprocessing."""
    images = np.empty((len(indices), size[0], size[1], 3), dtype=np.uint8)
    for position, index in enumerate(indices):
        images[position] = preprocess(paths[index].read_bytes(), size)
        if (position + 1) % 500 == 0:
            log.info("decoded %d of %d images", position + 1, len(indices))
    files = [str(paths[index]) for index in indices]
    return Split(images=images, labels=labels[indices], files=files)
