"""A corpus of bad and unusual uploads against the real gateway under gunicorn.

Every input is generated here. Each case names the status and `error` code it
must get. Whatever the input, the reply is either the JSON error shape or a
valid classification, never a 500, and a good request right after it works.
"""

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import requests
from PIL import Image

from tests.conftest import SAMPLES, start_gateway, stop

# Seconds to wait for any single HTTP reply in these tests.
HTTP_TIMEOUT = 30

# Limits of the corpus gateway, small enough to exceed cheaply.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_FILES = 4
MAX_PIXELS = 20_000_000

CLASS_NAMES = {"paper", "rock", "scissors"}
ROCK_PNG = (SAMPLES / "rock1.png").read_bytes()
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ELLIPSIS = "\u2026"


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """Encode a Pillow image in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def rock(mode: str = "RGB", size: tuple[int, int] = (150, 150)) -> Image.Image:
    """Return the rock sample converted to `mode` and resized to `size` (width, height)."""
    return Image.open(io.BytesIO(ROCK_PNG)).convert("RGB").resize(size).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk: length, type, data and CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(width: int, height: int) -> bytes:
    """Return a 1-bit PNG that claims `width` x `height` pixels but contains one row."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\xff" * ((width + 7) // 8), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", row)
        + png_chunk(b"IEND", b"")
    )


def gif_bomb(width: int, height: int) -> bytes:
    """Return a GIF whose screen and image descriptor claim `width` x `height` pixels."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one short sub-block
    return screen + descriptor + data + b";"


def flip_bits(data: bytes, offsets: range) -> bytes:
    """Return `data` with every bit of the bytes at `offsets` inverted."""
    flipped = bytearray(data)
    for offset in offsets:
        flipped[offset] ^= 0xFF
    return bytes(flipped)


def animated_gif() -> bytes:
    """Return a two-frame GIF of the rock sample and a blank frame."""
    frames = [rock("P"), Image.new("P", (150, 150), 0)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff() -> bytes:
    """Return a three-page TIFF whose first page is the rock sample."""
    pages = [rock(), Image.new("RGB", (150, 150), "black"), Image.new("RGB", (150, 150), "white")]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def png_16bit() -> bytes:
    """Return the rock sample as a 16-bit grayscale PNG."""
    gray = rock("L")
    return encode(gray.point(lambda level: level * 257, mode="I").convert("I;16"), "PNG")


def palette_with_transparency() -> bytes:
    """Return the rock sample as a palette PNG whose palette entry 0 is transparent."""
    return encode(rock("P"), "PNG", transparency=0)


def exif_rotated_jpeg() -> bytes:
    """Return the rock sample stored turned 90 degrees, with EXIF orientation 6 to undo it."""
    stored = rock().rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def zip_of_rock() -> bytes:
    """Return a ZIP archive that contains the rock sample."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("rock1.png", ROCK_PNG)
    return buffer.getvalue()


PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="150" height="150">'
    b'<rect width="150" height="150" fill="red"/></svg>'
)
HTML = b"<!DOCTYPE html><html><body><img src='rock1.png'></body></html>"
# An ISO base media header with the HEIC brand: a box size, "ftyp", then "heic".
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64

JPEG_ROCK = encode(rock(), "JPEG", quality=90)


@dataclass
class Case:
    """One corpus input: how to send it and the status and `error` code it must get."""

    name: str
    status: int
    error: str | None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Text the error detail must contain.
    detail: str = ""
    # Extra checks on the reply, given the parsed JSON body.
    check: Callable[[dict], None] | None = None


def one_file(name: str, data: bytes, content_type: str = "application/octet-stream") -> list:
    """Return a multipart file list with one part named `file`."""
    return [("file", (name, data, content_type))]


def multipart_body(
    boundary: str, data: bytes, closing: bool, quoted_name: str = '"rock1.png"'
) -> bytes:
    """Return a hand-written multipart body with one `file` part named `quoted_name`.

    The closing boundary is left out unless `closing` is set.
    """
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename={quoted_name}\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + data + b"\r\n"
    if closing:
        body += f"--{boundary}--\r\n".encode()
    return body


def check_detail_mentions_supported_formats(body: dict) -> None:
    for image_format in SUPPORTED_FORMATS:
        assert image_format in body["detail"], body["detail"]


def check_file_name(expected: str) -> Callable[[dict], None]:
    def check(body: dict) -> None:
        assert body["predictions"][0]["file"] == expected

    return check


def check_label(expected: str) -> Callable[[dict], None]:
    def check(body: dict) -> None:
        assert body["predictions"][0]["label"] == expected

    return check


def check_detail_name_cut(body: dict) -> None:
    name, _, _ = body["detail"].partition(": ")
    assert len(name) == 100, body["detail"]
    assert name.endswith(ELLIPSIS)


def check_detail_escaped(body: dict) -> None:
    assert not any(ord(character) < 32 for character in body["detail"]), body["detail"]


LONG_NAME = "r" * 10_000 + ".png"
BOUNDARY = "corpus-boundary-5f2c"
TINY_PNG = encode(Image.new("RGB", (8, 8), "white"), "PNG")

CASES = [
    # The request itself.
    Case("empty body", 400, "invalid_request", data=b"", detail="the request body is empty"),
    Case("empty multipart body", 400, "invalid_request", data=b"",
         detail="the request body is empty",
         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    Case("no file field", 400, "invalid_request", detail="no file part named 'file'",
         files=[("image", ("rock1.png", ROCK_PNG, "image/png"))]),
    Case("zero-byte file", 400, "invalid_request", files=one_file("empty.png", b""),
         detail="empty.png: the upload is empty"),
    Case("multipart without closing boundary", 400, "invalid_request",
         detail="the multipart body is malformed",
         data=multipart_body(BOUNDARY, ROCK_PNG, closing=False),
         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    Case("multipart without boundary parameter", 400, "invalid_request",
         detail="has no boundary parameter",
         data=multipart_body(BOUNDARY, ROCK_PNG, closing=True),
         headers={"Content-Type": "multipart/form-data"}),
    Case("multipart with another boundary", 400, "invalid_request",
         detail="the multipart body is malformed",
         data=multipart_body(BOUNDARY, ROCK_PNG, closing=True),
         headers={"Content-Type": "multipart/form-data; boundary=other-boundary"}),
    Case("wrong content type", 415, "unsupported_media_type", data=ROCK_PNG,
         headers={"Content-Type": "text/plain"}),
    Case("json content type", 415, "unsupported_media_type", data=b'{"file": "rock1.png"}',
         headers={"Content-Type": "application/json"}),
    Case("upload over size limit", 413, "payload_too_large", detail=str(MAX_UPLOAD_BYTES),
         files=one_file("big.png", b"\x00" * (MAX_UPLOAD_BYTES + 1))),
    Case("more files than allowed", 413, "payload_too_large",
         detail=f"the limit is {MAX_FILES} per request",
         files=[("file", (f"tiny{index}.png", TINY_PNG, "image/png"))
                for index in range(MAX_FILES + 1)]),
    # Bytes that are not an image, or not a supported one.
    Case("text file", 400, "invalid_image", files=one_file("notes.txt", b"rock paper scissors\n")),
    Case("html file", 400, "invalid_image", files=one_file("page.html", HTML, "text/html")),
    Case("pdf file", 415, "unsupported_media_type",
         files=one_file("doc.pdf", PDF, "application/pdf"),
         check=check_detail_mentions_supported_formats),
    Case("svg file", 415, "unsupported_media_type",
         files=one_file("rock.svg", SVG, "image/svg+xml"),
         check=check_detail_mentions_supported_formats),
    Case("raw svg body", 415, "unsupported_media_type", data=SVG,
         headers={"Content-Type": "image/svg+xml"}),
    Case("zip named png", 400, "invalid_image", files=one_file("rock.png", zip_of_rock())),
    Case("heic magic bytes", 415, "unsupported_media_type", files=one_file("rock.heic", HEIC),
         check=check_detail_mentions_supported_formats),
    Case("raw heic body", 415, "unsupported_media_type", data=HEIC,
         headers={"Content-Type": "image/heic"}, check=check_detail_mentions_supported_formats),
    # Damaged images.
    Case("truncated png", 400, "invalid_image",
         files=one_file("cut.png", ROCK_PNG[: len(ROCK_PNG) // 2])),
    Case("png cut inside header", 400, "invalid_image", files=one_file("cut.png", ROCK_PNG[:20])),
    Case("bit-flipped png header", 400, "invalid_image",
         files=one_file("flipped.png", flip_bits(ROCK_PNG, range(16, 24)))),
    Case("bit-flipped png data", 400, "invalid_image",
         files=one_file("flipped.png", flip_bits(ROCK_PNG, range(200, 400)))),
    Case("truncated jpeg", 400, "invalid_image",
         files=one_file("cut.jpg", JPEG_ROCK[: len(JPEG_ROCK) // 2])),
    Case("bit-flipped jpeg header", 400, "invalid_image",
         files=one_file("flipped.jpg", flip_bits(JPEG_ROCK, range(2, 40)))),
    Case("bit-flipped jpeg data", 400, "invalid_image",
         files=one_file("flipped.jpg", flip_bits(JPEG_ROCK, range(len(JPEG_ROCK) - 400,
                                                                   len(JPEG_ROCK) - 300)))),
    # Sizes.
    # Above about 179 megapixels Pillow rejects the file before its size is
    # known. The reply still states the gateway's limit.
    Case("png decompression bomb", 413, "payload_too_large",
         detail=f"bomb.png: the image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels; "
                f"the limit is {MAX_PIXELS} pixels",
         files=one_file("bomb.png", png_bomb(50_000, 50_000))),
    Case("png bomb under pillow limit", 413, "payload_too_large",
         detail=f"bomb.png: the image is 10000x8000 pixels; "
                f"the limit is {MAX_PIXELS} pixels",
         files=one_file("bomb.png", png_bomb(10_000, 8_000))),
    Case("gif decompression bomb", 413, "payload_too_large",
         detail=f"the limit is {MAX_PIXELS} pixels",
         files=one_file("bomb.gif", gif_bomb(65_535, 65_535))),
    Case("1x5000 image", 200, None,
         files=one_file("thin.png", encode(Image.new("RGB", (1, 5000), "white"), "PNG"))),
    Case("1x1 image", 200, None,
         files=one_file("dot.png", encode(Image.new("RGB", (1, 1), "white"), "PNG"))),
    # Unusual but valid images.
    Case("animated gif", 200, None, files=one_file("rock.gif", animated_gif())),
    Case("multi-page tiff", 200, None, files=one_file("rock.tiff", multipage_tiff())),
    Case("16-bit png", 200, None, files=one_file("rock16.png", png_16bit())),
    Case("palette png with transparency", 200, None,
         files=one_file("rockp.png", palette_with_transparency())),
    Case("grayscale png", 200, None, files=one_file("rockl.png", encode(rock("L"), "PNG"))),
    Case("cmyk jpeg", 200, None, files=one_file("rock-cmyk.jpg", encode(rock("CMYK"), "JPEG"))),
    Case("exif-rotated jpeg", 200, None, files=one_file("rotated.jpg", exif_rotated_jpeg()),
         check=check_label("rock")),
    # File names.
    Case("name with path separators", 200, None,
         files=one_file("../../etc/passwd.png", ROCK_PNG),
         check=check_file_name("../../etc/passwd.png")),
    # A quoted-string (RFC 9110, section 5.6.4) escapes a backslash as two
    # backslashes. requests sends it unescaped, and Werkzeug then drops it.
    Case("name with backslashes", 200, None,
         data=multipart_body(BOUNDARY, ROCK_PNG, closing=True,
                             quoted_name='"C:\\\\Users\\\\me\\\\rock.png"'),
         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
         check=check_file_name("C:\\Users\\me\\rock.png")),
    Case("non-ascii name", 200, None, files=one_file("石頭 ✊.png", ROCK_PNG),
         check=check_file_name("石頭 ✊.png")),
    Case("10000-character name", 200, None, files=one_file(LONG_NAME, ROCK_PNG),
         check=check_file_name(LONG_NAME)),
    Case("10000-character name in error", 400, "invalid_image",
         files=one_file(LONG_NAME, b"not an image"), check=check_detail_name_cut),
    Case("control characters in name", 400, "invalid_image",
         files=one_file("rock\x00\x1b[31m\x07.png", b"not an image"), check=check_detail_escaped),
]


@pytest.fixture(scope="module")
def corpus_gateway(tmp_path_factory, model_server):
    """A gateway with small upload and file-count limits."""
    log = tmp_path_factory.mktemp("corpus_gateway") / "gateway.log"
    server = start_gateway(
        log, model_server.address,
        RPS_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES), RPS_MAX_FILES=str(MAX_FILES),
        RPS_MAX_PIXELS=str(MAX_PIXELS),
    )
    yield server
    stop(server.process)


def send(gateway, case: Case) -> requests.Response:
    """POST one case to /classify."""
    return requests.post(
        f"{gateway.url}/classify", files=case.files, data=case.data, headers=case.headers,
        timeout=HTTP_TIMEOUT,
    )


def assert_valid_classification(body: dict) -> None:
    """Check the shape of a 200 reply with one prediction."""
    [entry] = body["predictions"]
    assert entry["label"] in CLASS_NAMES
    assert set(entry["scores"]) == CLASS_NAMES
    assert 0.0 <= entry["confidence"] <= 1.0


def test_corpus_has_expected_size():
    assert len(CASES) == 44
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_input_gets_expected_reply(corpus_gateway, case):
    response = send(corpus_gateway, case)

    assert response.status_code != 500, response.text
    assert response.status_code == case.status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    if case.error is None:
        assert_valid_classification(body)
    else:
        assert set(body) == {"error", "detail"}, body
        assert body["error"] == case.error
        assert body["detail"]
        assert case.detail in body["detail"]
    if case.check is not None:
        case.check(body)

    after = requests.post(
        f"{corpus_gateway.url}/classify", files=one_file("rock1.png", ROCK_PNG, "image/png"),
        timeout=HTTP_TIMEOUT,
    )
    assert after.status_code == 200, after.text
    assert after.json()["predictions"][0]["label"] == "rock"


def test_corpus_leaves_no_unhandled_error_in_log(corpus_gateway):
    log = corpus_gateway.log.read_text()

    assert "unhandled error" not in log
    assert "Traceback" not in log
