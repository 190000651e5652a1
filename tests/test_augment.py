"""The training-batch transforms of serving/augment.py, measured in a TensorFlow subprocess."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def measured() -> dict:
    completed = subprocess.run(
        [sys.executable, "tests/augment_outputs.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_presets_keep_shape_and_range(measured, preset):
    out = measured["presets"][preset]

    assert out["shape"] == [8, 32, 32, 3]
    assert out["dtype"] == "float32"
    assert out["min"] >= 0.0
    assert out["max"] <= 255.0


def test_geometry_without_rotation_only_mirrors(measured):
    assert all(measured["geometry"]["mirrors_only"])


def test_geometry_rotation_turns_images(measured):
    assert not any(measured["geometry"]["turned"])


def test_quarter_turn_transposes_images(measured):
    # A quarter turn is a transpose followed by a mirror, so every image
    # matches one of the four mirrors of its transpose.
    assert all(measured["geometry"]["quarter_turned"])


def test_colour_keeps_grey_nearly_grey(measured):
    # Hue turns colours about the grey axis and saturation scales the distance
    # from it, so only the white balance (0.8 to 1.2 per channel) tints grey.
    assert measured["colour"]["grey_input_max_ratio"] <= 1.2 / 0.8 + 1e-3


def test_grey_transform_removes_colour(measured):
    assert measured["colour"]["grey_share_one_ratio_spread"] < 1e-3


def test_background_swap_replaces_masked_pixels(measured):
    swap = measured["background_swap"]

    assert swap["masked_max"] == 0.0
    assert swap["unmasked"] == [200.0]
    assert swap["maskless_image"] == [200.0]


def test_apply_to_some_changes_chosen_images(measured):
    reached = measured["apply_to_some"]

    assert sum(reached["none"]) == 0
    assert sum(reached["every"]) == 200
    assert 30 <= sum(reached["some"]) <= 90
    assert reached["limited"] == [1.0, 0.0] * 100


def test_blur_smooths_noise(measured):
    blur = measured["blur"]

    assert blur["std_after"] < 0.8 * blur["std_before"]
    assert abs(blur["mean_after"] - blur["mean_before"]) < 2.0


def test_batch_with_nothing_chosen_passes_unchanged(measured):
    # A batch in which no image draws a transform must not stop training.
    assert measured["nothing_chosen"]["jpeg_max_change"] == 0.0
