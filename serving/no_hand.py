"""Pictures without a hand: the "no hand" class in training and the test of the uncertainty flag.

Two kinds of picture, both built from what is installed, since no data set
can be downloaded here:
- photographs and drawings that ship inside scikit-image (`skimage/data/`)
  and Matplotlib (`mpl-data/sample_data/`), cut into random crops at random
  scales, plus scikit-image's 200 small patches from Labeled Faces in the Wild
  (100 faces and 100 other patches);
- generated images: solid colours, gradients, noise, stripes and checks,
  shapes and rendered text, and white or off-white pictures (blank or ruled
  pages, drawings, charts). The rendered hands sit on white, so without the
  white pictures a blank page or a red disc on white reads as a hand.

Each source picture belongs to one split only, so the held-out measure counts
pictures the model never saw in any crop.
"""

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from gateway.preprocess import decode, to_array

log = logging.getLogger(__name__)

SPLITS = ("train", "calibration", "held_out")

# Share of source pictures in each split, in the order of SPLITS.
SPLIT_SHARES = (0.55, 0.15, 0.30)

# Random crops per source picture and generated images per kind, by split.
CROPS_PER_PICTURE = {"train": 40, "calibration": 24, "held_out": 24}
GENERATED_PER_KIND = {"train": 100, "calibration": 30, "held_out": 40}

# New kinds go at the end, because each kind draws from the split's random
# stream in this order, and appending keeps the earlier kinds' images unchanged.
GENERATED_KINDS = (
    "solid", "gradient", "noise", "blobs", "stripes", "shapes", "text",
    "page", "sketch", "chart",
)

_PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg"}

_WORDS = (
    "invoice total due", "hello world", "ROCK PAPER", "meeting at 10:30", "lorem ipsum",
    "EXIT", "open 24 hours", "x = y + 1", "THE QUICK BROWN FOX", "page 12 of 40",
)


@dataclass
class NoHandSet:
    """No-hand images (uint8, [n, height, width, 3]) and the source of each."""

    images: np.ndarray
    sources: list[str]


def picture_files() -> list[Path]:
    """List the photographs and drawings that scikit-image and Matplotlib ship."""
    folders = []
    for package, relative in (("skimage", "data"), ("matplotlib", "mpl-data/sample_data")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"{package} is not installed; run `make train`, which installs "
                "requirements/train.txt"
            )
        folders.append(Path(spec.submodule_search_locations[0]) / relative)
    return sorted(
        path for folder in folders for path in folder.iterdir()
        if path.suffix.lower() in _PICTURE_SUFFIXES
    )


def _lfw_patches() -> np.ndarray:
    """Return scikit-image's 200 LFW patches (25x25 grayscale, 0..1) as uint8 RGB."""
    spec = importlib.util.find_spec("skimage")
    faces = np.load(Path(spec.submodule_search_locations[0]) / "data" / "lfw_subset.npy")
    gray = np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def assign_splits(count: int, seed: int) -> list[str]:
    """Assign `count` sources to SPLITS at SPLIT_SHARES, at random but reproducibly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    bounds = np.cumsum(np.array(SPLIT_SHARES) * count).round().astype(int)
    assignment = [""] * count
    for rank, index in enumerate(order):
        assignment[index] = SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
    return assignment


def build(split: str, size: tuple[int, int], seed: int) -> NoHandSet:
    """Build the no-hand images of one split at `size` (height, width)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    images: list[np.ndarray] = []
    sources: list[str] = []

    files = picture_files()
    for path, assigned in zip(files, assign_splits(len(files), seed)):
        if assigned != split:
            continue
        picture = decode(path.read_bytes())
        for _ in range(CROPS_PER_PICTURE[split]):
            images.append(to_array(random_crop(picture, rng), size))
            sources.append(f"photo:{path.stem}")

    patches = _lfw_patches()
    for patch, assigned in zip(patches, assign_splits(len(patches), seed + 1)):
        if assigned == split:
            images.append(to_array(Image.fromarray(patch), size))
            sources.append("photo:lfw_subset")

    for kind in GENERATED_KINDS:
        for _ in range(GENERATED_PER_KIND[split]):
            images.append(to_array(generate(kind, rng), size))
            sources.append(f"generated:{kind}")

    log.info("no-hand %s split: %d images", split, len(images))
    return NoHandSet(images=np.stack(images), sources=sources)


def random_crop(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Cut a crop of 25% to 100% of the shorter side, at a random aspect and place."""
    width, height = picture.size
    side = min(width, height) * rng.uniform(0.25, 1.0)
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    crop_width = int(min(width, max(8, side * np.sqrt(aspect))))
    crop_height = int(min(height, max(8, side / np.sqrt(aspect))))
    left = int(rng.integers(0, width - crop_width + 1))
    top = int(rng.integers(0, height - crop_height + 1))
    return picture.crop((left, top, left + crop_width, top + crop_height))


def generate(kind: str, rng: np.random.Generator, side: int = 256) -> Image.Image:
    """Draw one synthetic no-hand image of `kind` (one of GENERATED_KINDS)."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    other = tuple(int(c) for c in rng.integers(0, 256, 3))

    if kind == "solid":
        return Image.new("RGB", (side, side), colour)

    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:side, 0:side] / side
        t = np.clip((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5, 0, 1)
        pixels = (1 - t)[..., None] * np.array(colour) + t[..., None] * np.array(other)
        return Image.fromarray(pixels.astype(np.uint8))

    if kind == "noise":
        spread = rng.uniform(10, 128)
        pixels = np.array(colour) + rng.normal(0, spread, (side, side, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    if kind == "blobs":
        coarse = rng.integers(0, 256, (int(rng.integers(3, 12)),) * 2 + (3,), dtype=np.uint8)
        return Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)

    if kind == "stripes":
        period = int(rng.integers(4, 64))
        y, x = np.mgrid[0:side, 0:side]
        checks = rng.random() < 0.5
        on = ((x // period) + (y // period if checks else 0)) % 2 == 0
        pixels = np.where(on[..., None], np.array(colour), np.array(other))
        return Image.fromarray(pixels.astype(np.uint8)).rotate(
            float(rng.uniform(0, 180)), fillcolor=colour
        )

    image = Image.new("RGB", (side, side), colour)
    draw = ImageDraw.Draw(image)
    if kind == "shapes":
        for _ in range(int(rng.integers(1, 8))):
            box = sorted(rng.integers(0, side, 2)), sorted(rng.integers(0, side, 2))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((box[0][0], box[1][0], box[0][1], box[1][1]), fill=fill)
        return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))

    if kind == "text":
        for _ in range(int(rng.integers(1, 6))):
            font = ImageFont.load_default(size=float(rng.integers(14, 60)))
            position = tuple(int(v) for v in rng.integers(-20, side - 20, 2))
            draw.text(position, str(rng.choice(_WORDS)), fill=other, font=font)
        return image

    if kind in _ON_WHITE:
        return _ON_WHITE[kind](rng, side)

    raise ValueError(f"unknown generated kind {kind!r}; expected one of {GENERATED_KINDS}")


def _paper(rng: np.random.Generator, side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """Return a white or off-white sheet and a pen to draw on it."""
    tint = (255, 255, 255) if rng.random() < 0.25 else tuple(
        int(c) for c in rng.integers(228, 256, 3))
    sheet = Image.new("RGB", (side, side), tint)
    return sheet, ImageDraw.Draw(sheet)


def _photographed(sheet: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Light a sheet unevenly and add sensor noise, as a phone photo of it would.

    A third of the sheets stay as drawn, like a blank or drawn digital image.
    """
    if rng.random() < 1 / 3:
        return sheet
    side = sheet.size[0]
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:side, 0:side] / side
    ramp = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5
    light = 1.0 - rng.uniform(0.0, 0.3) * np.clip(ramp, 0, 1)
    pixels = np.asarray(sheet, np.float32) * light[..., None]
    pixels += rng.normal(0, rng.uniform(0.5, 6.0), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _page(rng: np.random.Generator, side: int) -> Image.Image:
    """Draw a blank, ruled or squared sheet of paper, sometimes lying on a darker desk."""
    sheet, draw = _paper(rng, side)
    ruling = rng.choice(["blank", "lines", "squares"])
    spacing = int(rng.integers(10, 32))
    ink = (int(rng.integers(120, 200)), int(rng.integers(150, 220)), int(rng.integers(200, 256)))
    for offset in range(spacing, side, spacing) if ruling != "blank" else ():
        draw.line((0, offset, side, offset), fill=ink)
        if ruling == "squares":
            draw.line((offset, 0, offset, side), fill=ink)

    if rng.random() < 0.3:
        edge = int(rng.integers(side // 10, side // 3))
        draw.rectangle((side - edge, 0, side, side), fill=_random_colour(rng))
        sheet = sheet.rotate(float(rng.uniform(0, 360)), fillcolor=_random_colour(rng))
    return _photographed(sheet, rng)


def _sketch(rng: np.random.Generator, side: int) -> Image.Image:
    """Draw outlines, filled shapes and pen strokes on white, like a sketch or clip art."""
    sheet, draw = _paper(rng, side)
    for _ in range(int(rng.integers(1, 7))):
        box = sorted(rng.integers(0, side, 2)), sorted(rng.integers(0, side, 2))
        corners = (box[0][0], box[1][0], box[0][1], box[1][1])
        colour = _random_colour(rng)
        width = int(rng.integers(1, 8))
        choice = rng.integers(0, 4)
        if choice == 0:
            draw.ellipse(corners, fill=colour if rng.random() < 0.5 else None,
                         outline=colour, width=width)
        elif choice == 1:
            draw.rectangle(corners, fill=colour if rng.random() < 0.5 else None,
                           outline=colour, width=width)
        elif choice == 2:
            points = [tuple(int(v) for v in rng.integers(0, side, 2))
                      for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=colour if rng.random() < 0.5 else None, outline=colour)
        else:
            steps = rng.normal(0, side / 12, (int(rng.integers(4, 20)), 2))
            points = np.cumsum(steps, axis=0) + rng.integers(0, side, 2)
            draw.line([tuple(point) for point in points.tolist()], fill=colour, width=width)
    return _photographed(sheet, rng)


def _chart(rng: np.random.Generator, side: int) -> Image.Image:
    """Draw a line or bar chart with axes and a grid on white."""
    sheet, draw = _paper(rng, side)
    left, bottom = int(side * rng.uniform(0.08, 0.2)), int(side * rng.uniform(0.8, 0.92))
    right, top = int(side * rng.uniform(0.85, 0.97)), int(side * rng.uniform(0.05, 0.2))
    if rng.random() < 0.5:
        for y in np.linspace(top, bottom, int(rng.integers(3, 8))):
            draw.line((left, int(y), right, int(y)), fill=(220, 220, 220))
    draw.line((left, top, left, bottom, right, bottom), fill=(0, 0, 0), width=2)

    count = int(rng.integers(4, 16))
    xs = np.linspace(left + 6, right - 6, count)
    for _ in range(int(rng.integers(1, 4))):
        ys = bottom - (bottom - top) * np.clip(
            np.cumsum(rng.normal(0, 0.15, count)) + rng.uniform(0.2, 0.8), 0.02, 1.0
        )
        colour = _random_colour(rng)
        if rng.random() < 0.5:
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=int(rng.integers(1, 4)))
        else:
            half = max(1, int((right - left) / count / 3))
            for x, y in zip(xs, ys):
                draw.rectangle((int(x) - half, int(y), int(x) + half, bottom), fill=colour)
    return _photographed(sheet, rng)


_ON_WHITE = {"page": _page, "sketch": _sketch, "chart": _chart}
