"""The training, calibration and held-out images of every source, split once per seed.

Sources:
- `cgi`: rendered hands on white. The held-out split is the stratified 20%
  that version 1 was measured on, so versions compare on the same images.
- `real`: photographs of hands, split by source clip so that frames of one
  clip never sit on both sides.
- `no_hand`: pictures without a hand (see serving/no_hand.py), labelled with
  the extra class after the gestures.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving import dataset, no_hand

log = logging.getLogger(__name__)

PARTS = ("train", "calibration", "held_out")


@dataclass
class Part:
    """Images, labels and file names of one source in one part (train, calibration, held out)."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]


@dataclass
class Sources:
    """Every source's parts, keyed by source name and then part name."""

    class_names: list[str]
    parts: dict[str, dict[str, Part]]

    @property
    def none_label(self) -> int:
        """The label of "no hand": one past the last gesture."""
        return len(self.class_names)


def load(
    cgi_root: Path,
    real_root: Path | None,
    size: tuple[int, int],
    held_out_fraction: float,
    calibration_fraction: float,
    seed: int,
) -> Sources:
    """Load and split every source at `size`; the fractions are shares of each whole source."""
    class_names, paths, labels = dataset.list_images(cgi_root)
    train, held_out = dataset.stratified_split(labels, held_out_fraction, seed)
    rest_share = calibration_fraction / (1.0 - held_out_fraction)
    fit, calibration = dataset.stratified_split(labels[train], rest_share, seed)
    parts = {"cgi": _load_parts(
        paths, labels, {"train": train[fit], "calibration": train[calibration],
                        "held_out": held_out}, size)}

    if real_root is not None:
        _, real_paths, real_labels = dataset.list_images(real_root, class_names)
        groups = [dataset.clip_name(path) for path in real_paths]
        train, held_out = dataset.grouped_split(real_labels, groups, held_out_fraction, seed)
        fit, calibration = dataset.grouped_split(
            real_labels[train], [groups[i] for i in train], rest_share, seed
        )
        parts["real"] = _load_parts(
            real_paths, real_labels,
            {"train": train[fit], "calibration": train[calibration], "held_out": held_out},
            size,
        )

    none_label = len(class_names)
    parts["no_hand"] = {}
    for part in PARTS:
        pictures = no_hand.build(part, size, seed)
        parts["no_hand"][part] = Part(
            images=pictures.images,
            labels=np.full(len(pictures.images), none_label, dtype=np.int64),
            files=pictures.sources,
        )

    for source, by_part in parts.items():
        log.info("%s: %s", source, ", ".join(
            f"{len(by_part[part].labels)} {part}" for part in PARTS))
    return Sources(class_names=class_names, parts=parts)


def _load_parts(
    paths: list[Path], labels: np.ndarray, indices: dict[str, np.ndarray],
    size: tuple[int, int],
) -> dict[str, Part]:
    parts = {}
    for part, chosen in indices.items():
        split = dataset.load_split(paths, labels, chosen, size)
        parts[part] = Part(images=split.images, labels=split.labels, files=split.files)
    return parts


def reload_at(sources: Sources, source: str, part: str, size: tuple[int, int],
              seed: int) -> np.ndarray:
    """Return one source's part decoded again at another `size`, for older model versions."""
    if source == "no_hand":
        return no_hand.build(part, size, seed).images
    files = [Path(name) for name in sources.parts[source][part].files]
    labels = sources.parts[source][part].labels
    return dataset.load_split(files, labels, np.arange(len(files)), size).images
