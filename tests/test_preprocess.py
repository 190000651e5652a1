"""Tests of gateway.preprocess: formats, modes, orientation and rejected inputs."""

import io

import numpy as np
import pytest
from PIL import Image

from gateway.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from gateway.preprocess import decode, preprocess
from tests.conftest import SAMPLES

SIZE = (150, 150)
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def solid(mode: str, color, size=(40, 30)) -> Image.Image:
    return Image.new(mode, size, color)


@pytest.mark.parametrize(
    "image_format, mode",
    [
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("JPEG", "RGB"),
        ("WEBP", "RGB"),
        ("BMP", "RGB"),
        ("GIF", "P"),
        ("TIFF", "RGB"),
    ],
)
def test_preprocess_supported_formats(image_format, mode):
    image = solid("RGB", RED).convert(mode)

    array = preprocess(encode(image, image_format), SIZE)

    assert array.shape == (150, 150, 3)
    assert array.dtype == np.uint8
    # Lossy formats shift a solid colour by a few levels at most.
    assert np.abs(array.astype(int) - np.array(RED)).max() <= 8


def test_preprocess_sample_is_resized_rgb():
    array = preprocess((SAMPLES / "rock1.png").read_bytes(), (64, 96))

    assert array.shape == (64, 96, 3)
    assert array.dtype == np.uint8


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 10, 20))

    rgb = decode(encode(image, "PNG"))

    assert rgb.mode == "RGB"
    assert rgb.getpixel((15, 10)) == (255, 255, 255)
    assert rgb.getpixel((5, 10)) == RED


def test_half_transparent_pixels_blend_with_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 128))

    rgb = decode(encode(image, "PNG"))

    assert rgb.getpixel((0, 0)) == (127, 127, 127)


@pytest.mark.parametrize("name", ["rock1.png", "paper1.png", "scissors1.png"])
def test_opaque_rgba_sample_matches_rgb(name):
    image = Image.open(SAMPLES / name)
    assert image.mode == "RGBA"
    assert image.getchannel("A").getextrema() == (255, 255)
    rgb_png = encode(image.convert("RGB"), "PNG")

    from_rgba = preprocess((SAMPLES / name).read_bytes(), SIZE)
    from_rgb = preprocess(rgb_png, SIZE)

    assert np.array_equal(from_rgba, from_rgb)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_opaque_alpha_matches_image_without_alpha(mode):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, len(mode)), dtype=np.uint8)
    pixels[..., -1] = 255
    image = Image.fromarray(pixels, mode)
    without_alpha = image.convert(mode[:-1])

    with_alpha_array = np.asarray(decode(encode(image, "PNG")))
    without_alpha_array = np.asarray(decode(encode(without_alpha, "PNG")))

    assert np.array_equal(with_alpha_array, without_alpha_array)


def test_partly_transparent_sample_composites_onto_white():
    pixels = np.asarray(Image.open(SAMPLES / "rock1.png")).copy()
    pixels[:, :100, 3] = 0
    pixels[:, 100:200, 3] = 128
    pixels[0, 299, 3] = 254
    image = Image.fromarray(pixels, "RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, image).convert("RGB"))

    rgb = np.asarray(decode(encode(image, "PNG")))

    assert np.array_equal(rgb, expected)
    assert (rgb[:, :100] == 255).all()
    assert not np.array_equal(rgb[:, 100:200], pixels[:, 100:200, :3])
    assert np.array_equal(rgb[:, 200:299], pixels[:, 200:299, :3])


def test_palette_transparency_becomes_white():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))

    rgb = decode(encode(image, "PNG", transparency=0))

    assert rgb.getpixel((8, 5)) == (255, 255, 255)
    assert rgb.getpixel((2, 5)) == RED


def test_grayscale_with_alpha_becomes_rgb():
    image = Image.new("LA", (4, 4), (100, 255))

    rgb = decode(encode(image, "PNG"))

    assert rgb.getpixel((0, 0)) == (100, 100, 100)


@pytest.mark.parametrize("mode, value", [("L", 77), ("1", 1)])
def test_grayscale_and_bilevel_become_rgb(mode, value):
    rgb = decode(encode(solid(mode, value), "PNG"))

    expected = 77 if mode == "L" else 255
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (expected,) * 3


def test_16bit_grayscale_scales_to_8bit():
    array = np.full((8, 8), 65535, dtype=np.uint16)
    array[:, :4] = 32896
    image = Image.fromarray(array)

    rgb = decode(encode(image, "PNG"))

    assert rgb.getpixel((6, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) == (128, 128, 128)


def test_cmyk_jpeg_becomes_rgb():
    image = solid("RGB", RED).convert("CMYK")

    rgb = decode(encode(image, "JPEG", quality=95))

    assert rgb.mode == "RGB"
    red, green, blue = rgb.getpixel((5, 5))
    assert red > 200
    assert green < 60
    assert blue < 60


def test_gif_uses_first_frame():
    frames = [solid("RGB", RED).convert("P"), solid("RGB", BLUE).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])

    rgb = decode(data)

    assert rgb.getpixel((0, 0)) == RED


def test_tiff_uses_first_page():
    pages = [solid("RGB", RED), solid("RGB", BLUE)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])

    rgb = decode(data)

    assert rgb.getpixel((0, 0)) == RED


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.

    rgb = decode(encode(image, "JPEG", exif=exif, quality=95))

    assert rgb.size == (20, 40)
    top_red, _, _ = rgb.getpixel((10, 5))
    bottom_red, _, bottom_blue = rgb.getpixel((10, 35))
    assert top_red > 200
    assert bottom_blue > 200
    assert bottom_red < 60


def test_large_jpeg_decodes_at_reduced_scale():
    data = encode(Image.new("RGB", (4000, 3000), RED), "JPEG")

    array = preprocess(data, SIZE)

    assert array.shape == (150, 150, 3)
    assert np.abs(array.astype(int) - np.array(RED)).max() <= 8


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", InvalidImage),
        (b"hello, this is text", InvalidImage),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", UnsupportedMediaType),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", UnsupportedMediaType),
        (b'\xef\xbb\xbf <svg xmlns="http://www.w3.org/2000/svg"/>', UnsupportedMediaType),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
         UnsupportedMediaType),
        (b'<!-- drawn by hand -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
         UnsupportedMediaType),
        (b"\n\n%PDF-1.7\n", UnsupportedMediaType),
        (b'<?xml version="1.0"?>\n<note>not a drawing</note>', InvalidImage),
    ],
    ids=["empty", "text", "pdf", "heic", "svg", "svg-with-prologue", "svg-after-comment",
         "pdf-after-blank-lines", "other-xml"],
)
def test_non_images_are_rejected(data, error):
    with pytest.raises(error):
        preprocess(data, SIZE)


def test_truncated_png_is_invalid():
    data = (SAMPLES / "rock1.png").read_bytes()

    with pytest.raises(InvalidImage) as raised:
        preprocess(data[: len(data) // 2], SIZE)

    assert "truncated or corrupt" in raised.value.detail


def test_unsupported_format_lists_supported():
    data = encode(solid("RGB", RED, (16, 16)), "ICO")

    with pytest.raises(UnsupportedMediaType) as raised:
        preprocess(data, SIZE)

    assert raised.value.status == 415
    assert "ICO" in raised.value.detail
    assert "PNG, JPEG, WEBP, BMP, GIF, TIFF" in raised.value.detail


def test_pixel_limit_is_enforced_before_decoding():
    data = encode(Image.new("1", (5000, 5000)), "PNG")

    with pytest.raises(PayloadTooLarge) as raised:
        preprocess(data, SIZE, max_pixels=1_000_000)

    assert raised.value.status == 413
    assert "5000x5000" in raised.value.detail
