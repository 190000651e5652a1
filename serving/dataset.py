"""Load a class-per-folder image set through the shared preprocessing and split it."""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.preprocess import SUPPORTED_FORMATS, preprocess

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# Pixels at least this bright in every channel count as the studio background
# of the rendered hands.
WHITE_LEVEL = 235

# Frames cropped from one video clip share the name before Roboflow's export
# suffix, as in `rock.0001_png.rf.5e00…_01894.jpg`.
_CLIP_SUFFIX = re.compile(r"_(jpe?g|png)\.rf\..*$", re.IGNORECASE)


@dataclass
class Split:
    """Images (uint8, [n, height, width, 3]) and integer labels of one split."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]


def list_images(
    root: Path, class_names: list[str] | None = None
) -> tuple[list[str], list[Path], np.ndarray]:
    """Return the class names, image paths and their labels.

    The classes are `class_names` if given, else every sub-folder, sorted.
    """
    if class_names is None:
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not class_names:
        raise FileNotFoundError(f"no class folders under {root}")

    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder {folder} not found")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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
    return (np.sort(np.array(train, dtype=np.int64)),
            np.sort(np.array(validation, dtype=np.int64)))


def clip_name(path: Path) -> str:
    """Return the source clip of an image file: the name before `_jpg.rf.` or `_png.rf.`."""
    return _CLIP_SUFFIX.sub("", path.stem)


def grouped_split(
    labels: np.ndarray, groups: list[str], validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return train and validation indices that keep each group on one side.

    Groups are drawn at random within each class until the class's validation
    share is reached, so near-duplicate frames never straddle the split.
    """
    rng = np.random.default_rng(seed)
    groups_array = np.array(groups)
    validation: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        target = len(members) * validation_fraction
        chosen_count = 0
        for group in rng.permutation(np.unique(groups_array[members])):
            if chosen_count >= target:
                break
            chosen = members[groups_array[members] == group]
            validation.extend(chosen)
            chosen_count += len(chosen)

    validation_array = np.sort(np.array(validation, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), validation_array)
    return train, validation_array


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


def background_masks(images: np.ndarray) -> np.ndarray:
    """Return uint8 masks ([n, h, w, 1], 1 = background) of white regions touching the border.

    Only white regions connected to the border count, so that highlights on
    the skin keep their colour when the background is replaced.
    """
    from scipy import ndimage

    masks = np.zeros(images.shape[:3] + (1,), dtype=np.uint8)
    for index, image in enumerate(images):
        white = image.min(axis=-1) >= WHITE_LEVEL
        regions, _ = ndimage.label(white)
        border = np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]])
        touching = np.setdiff1d(np.unique(border), [0])
        masks[index, ..., 0] = np.isin(regions, touching)
    return masks
