"""Fuzzing of gateway.preprocess with hypothesis: random and mutated image bytes.

Whatever the bytes, preprocess must return a uint8 array of the requested
shape or raise a GatewayError subclass with status 400, 413 or 415. Any other
exception would reach the client as a 500.

The runs are derandomized, so every run tries the same examples and a failure
reproduces. Set FUZZ_RANDOM=1 to draw new examples on each run and
FUZZ_EXAMPLES to change the number of examples per test (default 1000: the
file took 6 s on the project's 2-core development machine).
"""

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gateway.errors import GatewayError
from gateway.preprocess import preprocess
from tests.conftest import SAMPLES

SIZE = (32, 32)
# A low pixel limit keeps a mutated header that claims a huge image from
# allocating hundreds of megabytes; such inputs must get 413.
MAX_PIXELS = 1_000_000
CLIENT_ERROR_STATUSES = {400, 413, 415}

# Pillow warns about corrupt EXIF and TIFF tags while it still decodes the image.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow],
)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """Encode a Pillow image in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    rock = Image.open(SAMPLES / "rock1.png").convert("RGB").resize((48, 40))
    frames = [rock.convert("P"), Image.new("P", (48, 40), 3)]
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "png": encode(rock, "PNG"),
        "png_rgba": encode(rock.convert("RGBA"), "PNG"),
        "png_palette_transparency": encode(rock.convert("P"), "PNG", transparency=0),
        "jpeg": encode(rock, "JPEG", quality=80),
        "jpeg_progressive_exif": encode(rock, "JPEG", progressive=True, exif=exif.tobytes()),
        "gif_animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiff": encode(rock, "TIFF"),
        "tiff_deflate_pages": encode(
            rock, "TIFF", compression="tiff_adobe_deflate", save_all=True, append_images=[rock]
        ),
        "webp": encode(rock, "WEBP", quality=80),
        "webp_lossless_alpha": encode(rock.convert("RGBA"), "WEBP", lossless=True),
        "bmp": encode(rock, "BMP"),
    }


SEEDS = _seeds()
SEED_NAMES = sorted(SEEDS)


def assert_preprocess_contract(data: bytes) -> None:
    """Check that preprocess returns a SIZE uint8 RGB array or raises a client error."""
    try:
        array = preprocess(data, SIZE, max_pixels=MAX_PIXELS)
    except GatewayError as error:
        assert error.status in CLIENT_ERROR_STATUSES, (error.status, error.detail)
        assert error.detail
        return

    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (*SIZE, 3)


@st.composite
def mutated_image(draw) -> bytes:
    """Draw a seed image and apply one to four bit flips, truncations, splices or overwrites."""
    data = bytearray(SEEDS[draw(st.sampled_from(SEED_NAMES))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        operation = draw(st.sampled_from(("flip", "truncate", "splice", "overwrite")))
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))

        if operation == "flip" and data:
            data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "splice":
            # Insert a slice of another seed, which moves chunks and markers of
            # one format into another or duplicates them.
            donor = SEEDS[draw(st.sampled_from(SEED_NAMES))]
            start = draw(st.integers(min_value=0, max_value=len(donor) - 1))
            length = draw(st.integers(min_value=1, max_value=256))
            data[position:position] = donor[start : start + length]
        elif operation == "overwrite":
            noise = draw(st.binary(min_size=1, max_size=16))
            data[position : position + len(noise)] = noise
    return bytes(data)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_preprocess_seed_is_valid_image(name):
    array = preprocess(SEEDS[name], SIZE, max_pixels=MAX_PIXELS)

    assert array.shape == (*SIZE, 3)
    assert array.dtype == np.uint8


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_preprocess_random_bytes_contract(data):
    assert_preprocess_contract(data)


@FUZZ_SETTINGS
@given(
    st.sampled_from([SEEDS[name][:16] for name in SEED_NAMES]),
    st.binary(max_size=2048),
)
def test_preprocess_magic_then_random_contract(header, rest):
    assert_preprocess_contract(header + rest)


@FUZZ_SETTINGS
@given(mutated_image())
def test_preprocess_mutated_image_contract(data):
    assert_preprocess_contract(data)
