"""A realistic 12-megapixel phone-size JPEG made from a sample image."""

from pathlib import Path

import numpy as np
from PIL import Image

from gateway.preprocess import to_rgb

LARGE_SIZE = (4000, 3000)  # width, height: 12 megapixels


def write_large_jpeg(sample: Path, target: Path, seed: int = 7) -> dict:
    """Upscale `sample` to 4000x3000, add Gaussian noise and save it as JPEG quality 90.

    The noise (standard deviation 6 levels) keeps the file from compressing like
    a flat render, so its size is closer to a real photo's.
    """
    image = to_rgb(Image.open(sample)).resize(LARGE_SIZE, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, 6.0, pixels.shape).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=90)
    return {"path": str(target), "size": list(LARGE_SIZE), "bytes": target.stat().st_size}
