"""`python -m serving.train` on a tiny data set: export, warm-up records and model card."""

import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import ROOT, SAMPLE_LABELS, SAMPLES, start_model_server, stop


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Four rotated copies of each sample image, one folder per class."""
    root = tmp_path_factory.mktemp("tiny_data")
    for name, label in SAMPLE_LABELS.items():
        folder = root / label
        folder.mkdir()
        image = Image.open(SAMPLES / name)
        for angle in (0, 90, 180, 270):
            image.rotate(angle).save(folder / f"{label}-{angle}.png")
    return root


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory):
    """Two "clips" of two frames per class, named as the photograph set names them."""
    root = tmp_path_factory.mktemp("tiny_photos")
    (root / "LICENSE-and-attribution").mkdir()
    for name, label in SAMPLE_LABELS.items():
        folder = root / label
        folder.mkdir()
        image = Image.open(SAMPLES / name).convert("RGB")
        for clip in range(2):
            for frame in range(2):
                image.rotate(45 * clip + 10 * frame).save(
                    folder / f"{label}.{clip:04d}_png.rf.{clip}{frame}_000{frame}.jpg")
    return root


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_photos, tmp_path_factory):
    """A model base path holding version 1 trained for one epoch on the tiny sets."""
    models = tmp_path_factory.mktemp("models")
    completed = subprocess.run(
        [sys.executable, "-m", "serving.train", "--data", str(tiny_data),
         "--real", str(tiny_photos), "--models", str(models), "--epochs", "1",
         "--size", "64", "--batch-size", "8", "--held-out-fraction", "0.25"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return models


def test_train_exports_version_with_warmup(trained):
    version = trained / "1"

    assert (version / "saved_model.pb").is_file()
    assert (version / "variables").is_dir()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    assert not list(trained.glob(".staging-*"))


def test_train_writes_model_card(trained):
    card = (trained / "cards" / "v1.md").read_text()

    assert "# Model card: rps version 1" in card
    assert "Laurence Moroney" in card
    assert "CDLA-Sharing-1.0" in card
    assert "| **rock** |" in card
    for source in ("rendered hands (CGI)", "hand photographs"):
        [row] = [line for line in card.splitlines() if line.startswith(f"| 1 | {source} |")]
        # Columns: version, source, images, accuracy, accuracy turned 90°.
        assert row.split("|")[5].strip().endswith("%"), row
    # 25% of 4 images per class held out; 10% of the whole is 0 images a class.
    assert "| rendered hands (CGI) | 9 | 0 | 3 |" in card
    # Whole clips of 2 frames: one clip a class held out, one for calibration.
    assert "| hand photographs | 0 | 6 | 6 |" in card
    assert "`uncertain_reason`" in card
    assert "Expected calibration error" in card
    for name in ("v1-training.png", "v1-reliability.png", "v1-metrics.json"):
        assert (trained / "cards" / name).stat().st_size > 0


def test_train_writes_version_table(trained):
    table = (trained / "cards" / "README.md").read_text()

    assert "| [1](v1.md) |" in table
    assert "batch-1 latency" in table


def test_model_server_loads_trained_version(trained, tmp_path):
    server = start_model_server(tmp_path / "server.log", trained)
    stop(server.process)

    log = server.log.read_text()
    assert "version 1" in log
    assert "warm-up" in log or "warmup" in log


def test_train_rejects_existing_version(trained, tiny_data):
    completed = subprocess.run(
        [sys.executable, "-m", "serving.train", "--data", str(tiny_data),
         "--models", str(trained), "--version", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 2
    assert "already exists" in completed.stderr
