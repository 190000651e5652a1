"""The gateway path and the training path give the same scores for the same file."""

import io
import json
import subprocess
import sys

import pytest
import requests
from PIL import Image

from tests.conftest import MODEL_BASE_PATH, ROOT, SAMPLES


def latest_version_dir():
    versions = [p for p in MODEL_BASE_PATH.iterdir() if p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name))


@pytest.fixture(scope="module")
def parity_files(tmp_path_factory):
    """The samples plus re-encodings that exercise EXIF, palette, JPEG and transparency decoding."""
    folder = tmp_path_factory.mktemp("parity")
    files = [SAMPLES / name for name in ("rock1.png", "paper1.png", "scissors1.png")]

    paper = Image.open(SAMPLES / "paper1.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: rotate 90 degrees counter-clockwise to display.
    rotated = folder / "paper-exif.jpg"
    paper.convert("RGB").rotate(-90, expand=True).save(rotated, exif=exif, quality=90)

    palette = folder / "scissors-palette.gif"
    Image.open(SAMPLES / "scissors1.png").convert("RGB").convert("P").save(palette)

    large = folder / "rock-large.jpg"
    Image.open(SAMPLES / "rock1.png").convert("RGB").resize((2400, 2400)).save(large)

    # The samples are opaque, so this one exercises compositing onto white.
    transparent = folder / "scissors-transparent.png"
    scissors = Image.open(SAMPLES / "scissors1.png")
    alpha = Image.linear_gradient("L").resize(scissors.size)
    scissors.putalpha(alpha)
    scissors.save(transparent)
    return files + [rotated, palette, large, transparent]


def test_gateway_scores_match_training_path(gateway, parity_files):
    completed = subprocess.run(
        [sys.executable, "tests/training_path_scores.py", str(latest_version_dir()),
         *map(str, parity_files)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    training_scores = json.loads(completed.stdout)

    uploads = [("file", (p.name, p.read_bytes())) for p in parity_files]
    reply = requests.post(f"{gateway.url}/classify", files=uploads, timeout=60)
    assert reply.status_code == 200, reply.text

    for prediction in reply.json()["predictions"]:
        expected = training_scores[prediction["file"]]
        assert prediction["scores"].keys() == expected.keys()
        for name, score in expected.items():
            assert prediction["scores"][name] == pytest.approx(score, abs=1e-5), (
                prediction["file"], name)
