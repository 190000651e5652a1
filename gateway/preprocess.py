"""Turn uploaded image bytes into the uint8 RGB array the model takes.

This is the only preprocessing implementation: training, evaluation, warm-up
records and the gateway all call `preprocess`, so that the model receives at
serving time the same input it was trained on. It depends on Pillow and NumPy only.
"""

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gateway.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

# Pillow format names accepted. Other formats that Pillow can read get a 415,
# and so do the formats that `_unreadable_kind` recognises.
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

# 40 megapixels admits phone photos (12 to 24 MP) while capping the decoded
# RGB buffer at about 120 MB.
DEFAULT_MAX_PIXELS = 40_000_000

# The training images are rendered hands on white, so transparency becomes white.
BACKGROUND = (255, 255, 255)

# Exceptions Pillow raises on corrupt or truncated data while decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

# ISO base media files (HEIC, AVIF) start with a size and then "ftyp".
_ISO_MEDIA_MARKER = b"ftyp"

# How far into a file to look for the PDF header, or for an SVG root element
# after an XML declaration, comment or DOCTYPE.
_HEADER_SEARCH_BYTES = 1024


def preprocess(
    data: bytes, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes and resize them to `size` (height, width) as uint8 RGB."""
    image = decode(data, max_pixels=max_pixels, target_size=size)
    return to_array(image, size)


def decode(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode image bytes into an upright 8-bit RGB image with transparency on white.

    `target_size` (height, width) lets JPEG decode at a reduced scale that is
    still at least that large, which makes large photos much cheaper.
    Raises InvalidImage, UnsupportedMediaType or PayloadTooLarge.
    """
    if not data:
        raise InvalidImage("the file is empty")

    image = _open(data, max_pixels)
    _check_format(image)
    _check_pixels(image, max_pixels)

    if target_size is not None and image.format == "JPEG":
        height, width = target_size
        image.draft(None, (width, height))

    try:
        # NOTE: Pillow loads a PNG whose compressed data ends cleanly before the
        # last row and leaves the missing rows black, so that file gets a reply, not 400.
        image.load()
        # In place, because the default returns a full copy even when there is
        # no orientation to apply.
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except Image.DecompressionBombError as error:
        raise _beyond_pillow_limit(max_pixels) from error
    except _DECODE_ERRORS as error:
        raise InvalidImage(
            f"the {image.format} data is truncated or corrupt"
        ) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto white.

    Returns `image` itself when it is already RGB without a transparent colour.
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _to_8bit_gray(image)

    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        "transparency" in image.info
    )
    if not has_alpha:
        return image if image.mode == "RGB" else image.convert("RGB")

    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    # Many PNGs carry an alpha channel that is 255 everywhere. Compositing a
    # pixel of alpha 255 onto white leaves its RGB unchanged (checked for all
    # 2**24 colours with Pillow 13.0), so those images skip the composite.
    min_alpha, _ = rgba.getchannel("A").getextrema()
    if min_alpha == 255:
        return rgba.convert("RGB")

    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to `size` (height, width) and return it as a uint8 array."""
    height, width = size
    if image.size != (width, height):
        image = image.resize(
            (width, height), Image.Resampling.BILINEAR, reducing_gap=3.0
        )
    return np.asarray(image, dtype=np.uint8)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # The pixel limit below is the check; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _beyond_pillow_limit(max_pixels) from error
    except UnidentifiedImageError as error:
        kind = _unreadable_kind(data)
        if kind is not None:
            raise UnsupportedMediaType(
                f"{kind} are not supported; supported formats: {supported_formats_text()}"
            ) from error
        raise InvalidImage("the file is not a recognised image") from error
    except _DECODE_ERRORS as error:
        raise InvalidImage("the image header is corrupt") from error


def _unreadable_kind(data: bytes) -> str | None:
    """Return the name of a non-raster format that people send as pictures, or None."""
    if data[4:8] == _ISO_MEDIA_MARKER:
        return "HEIC and AVIF images"
    head = data[:_HEADER_SEARCH_BYTES]
    if b"%PDF-" in head:
        return "PDF documents"
    markup = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if markup.startswith(b"<svg") or (markup.startswith((b"<?xml", b"<!")) and b"<svg" in markup):
        return "SVG drawings"
    return None


def _check_format(image: Image.Image) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(
            f"{image.format} images are not supported; "
            f"supported formats: {supported_formats_text()}"
        )


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels"
        )


def _beyond_pillow_limit(max_pixels: int) -> PayloadTooLarge:
    """Return the 413 for an image that Pillow's own check rejects before its size is known."""
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
    return PayloadTooLarge(
        f"the image has more than {pillow_limit} pixels; the limit is {max_pixels} pixels"
    )


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float grayscale to 8-bit "L"."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0
    elif image.mode != "F":
        # 16-bit data is 0..65535; Pillow opens 16-bit PNGs as "I" or "I;16".
        values = values / 257.0
    values = np.nan_to_num(values, nan=0.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def supported_formats_text() -> str:
    """Return the supported formats as a comma-separated list for error details."""
    return ", ".join(SUPPORTED_FORMATS)
