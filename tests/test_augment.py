"""The training-batch transforms of serving/augment.py, on small real and synthetic batches."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from serving.augment import STRENGTHS, Augmenter, _apply_to_some  # noqa: E402

OFF = dataclasses.replace(
    STRENGTHS["light"], background_swap=0.0, rotation=0.0, zoom=0.0, shift=0.0,
    brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grey=0.0, blur=0.0,
    noise=0.0, jpeg=0.0,
)


def _batch(count: int = 8, side: int = 32, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (count, side, side, 3)).astype(np.float32))


def _backgrounds(value: int, count: int = 4, side: int = 32) -> np.ndarray:
    return np.full((count, side, side, 3), value, np.uint8)


@pytest.mark.parametrize("preset", sorted(STRENGTHS))
def test_presets_keep_shape_and_range(preset):
    tf.random.set_seed(1)
    images = _batch()
    masks = tf.zeros([8, 32, 32, 1], tf.uint8)

    out = Augmenter(_backgrounds(0), STRENGTHS[preset])(images, masks)

    assert out.shape == images.shape
    assert out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0
    assert float(tf.reduce_max(out)) <= 255.0


def test_geometry_without_rotation_zoom_or_shift_only_mirrors():
    images = _batch()

    out = Augmenter(_backgrounds(0), OFF).geometry(images).numpy()

    for original, warped in zip(images.numpy(), out):
        mirrors = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        assert any(np.allclose(warped, mirror, atol=1e-3) for mirror in mirrors)


def test_geometry_turns_an_image():
    strength = dataclasses.replace(OFF, rotation=0.25)
    images = _batch()

    out = Augmenter(_backgrounds(0), strength).geometry(images).numpy()

    assert not np.allclose(out, images.numpy(), atol=1.0)


def test_colour_keeps_grey_pixels_nearly_grey():
    # Hue turns colours about the grey axis and saturation scales the distance
    # from it, so only the white balance (0.8 to 1.2 per channel) tints grey.
    strength = dataclasses.replace(OFF, hue=0.1, saturation=0.3)
    grey = tf.fill([16, 8, 8, 3], 100.0)

    out = Augmenter(_backgrounds(0), strength).colour(grey).numpy()

    ratio = out.max(axis=-1) / out.min(axis=-1)
    assert ratio.max() <= 1.2 / 0.8 + 1e-3


def test_grey_share_one_makes_every_image_grey_before_white_balance():
    strength = dataclasses.replace(OFF, grey=1.0)
    images = _batch()

    out = Augmenter(_backgrounds(0), strength).colour(images).numpy()

    # After the grey matrix each pixel is (g, g, g) times the image's channel gains,
    # so the channel ratios are the same at every pixel of one image.
    ratios = out[..., 0] / np.maximum(out[..., 1], 1e-3)
    spread = ratios.reshape(len(out), -1).std(axis=1)
    assert spread.max() < 1e-3


def test_background_swap_replaces_only_the_masked_pixels():
    strength = dataclasses.replace(OFF, background_swap=1.0)
    images = tf.fill([2, 16, 16, 3], 200.0)
    mask = np.zeros((2, 16, 16, 1), np.uint8)
    mask[0, :, :8] = 1  # the left half of the first image is studio white

    out = Augmenter(_backgrounds(0, side=16), strength).swap_backgrounds(
        images, tf.constant(mask)
    ).numpy()

    assert np.all(out[0, :, :7] == 0.0)
    assert np.all(out[0, :, 9:] == 200.0)
    assert np.all(out[1] == 200.0)


def test_apply_to_some_changes_only_chosen_images():
    images = tf.zeros([200, 2, 2, 3])

    none = _apply_to_some(images, 0.0, lambda chosen: chosen + 1.0)
    every = _apply_to_some(images, 1.0, lambda chosen: chosen + 1.0)
    some = _apply_to_some(images, 0.3, lambda chosen: chosen + 1.0).numpy()
    eligible = tf.constant([True, False] * 100)
    limited = _apply_to_some(images, 1.0, lambda chosen: chosen + 1.0, eligible=eligible)

    assert float(tf.reduce_max(none)) == 0.0
    assert float(tf.reduce_min(every)) == 1.0
    assert 30 <= int(some[:, 0, 0, 0].sum()) <= 90
    assert limited.numpy()[:, 0, 0, 0].tolist() == [1.0, 0.0] * 100


def test_blur_smooths_noise():
    strength = dataclasses.replace(OFF, blur=1.0)
    images = _batch()

    out = Augmenter(_backgrounds(0), strength).blur(images).numpy()

    assert out.std() < 0.8 * images.numpy().std()
    assert abs(out.mean() - images.numpy().mean()) < 2.0
