"""Print measurements of the training-batch transforms on small fixed batches, as JSON.

Run in a subprocess by test_augment.py, because TensorFlow must not be imported
into the pytest process (its protobuf types clash with the gateway's). Usage:
    python tests/augment_outputs.py
"""

import dataclasses
import json

import numpy as np
import tensorflow as tf

from serving.augment import STRENGTHS, Augmenter, _apply_to_some

OFF = dataclasses.replace(
    STRENGTHS["light"], background_swap=0.0, rotation=0.0, quarter_turn=0.0, zoom=0.0,
    shift=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grey=0.0, blur=0.0,
    noise=0.0, jpeg=0.0,
)


def random_batch(count: int = 8, side: int = 32) -> tf.Tensor:
    """Return a batch of uniform random pixels."""
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(0, 255, (count, side, side, 3)).astype(np.float32))


def augmenter(strength, value: int = 0, side: int = 32) -> Augmenter:
    """Return an Augmenter whose backgrounds are all `value`."""
    return Augmenter(np.full((4, side, side, 3), value, np.uint8), strength)


def presets() -> dict:
    """Shape, type and value range of each preset's output."""
    images = random_batch()
    masks = tf.zeros([8, 32, 32, 1], tf.uint8)
    result = {}
    for name, strength in STRENGTHS.items():
        out = augmenter(strength)(images, masks)
        result[name] = {"shape": out.shape.as_list(), "dtype": out.dtype.name,
                        "min": float(tf.reduce_min(out)), "max": float(tf.reduce_max(out))}
    return result


def geometry() -> dict:
    """Whether each warped image is a mirror of its input or of its quarter turn."""
    images = random_batch()
    originals = images.numpy()

    def mirrors(image: np.ndarray) -> tuple[np.ndarray, ...]:
        return image, image[:, ::-1], image[::-1], image[::-1, ::-1]

    def matches(out: np.ndarray, turned: bool) -> list[bool]:
        return [
            any(np.allclose(warped, mirror, atol=1e-3) for mirror in
                mirrors(original.transpose(1, 0, 2) if turned else original))
            for original, warped in zip(originals, out)
        ]

    rotated = augmenter(dataclasses.replace(OFF, rotation=0.25)).geometry(images).numpy()
    quarter = augmenter(dataclasses.replace(OFF, quarter_turn=1.0)).geometry(images).numpy()
    return {"mirrors_only": matches(augmenter(OFF).geometry(images).numpy(), turned=False),
            "turned": matches(rotated, turned=False),
            "quarter_turned": matches(quarter, turned=True)}


def colour() -> dict:
    """Channel ratios of grey input after hue and saturation, and after the grey transform."""
    grey = tf.fill([16, 8, 8, 3], 100.0)
    tinted = augmenter(dataclasses.replace(OFF, hue=0.1, saturation=0.3)).colour(grey).numpy()

    made_grey = augmenter(dataclasses.replace(OFF, grey=1.0)).colour(random_batch()).numpy()
    # A grey image times the channel gains has the same red/green ratio at every pixel.
    ratios = made_grey[..., 0] / np.maximum(made_grey[..., 1], 1e-3)
    return {"grey_input_max_ratio": float((tinted.max(axis=-1) / tinted.min(axis=-1)).max()),
            "grey_share_one_ratio_spread": float(ratios.reshape(len(made_grey), -1).std(axis=1).max())}


def background_swap() -> dict:
    """Pixel values after swapping in black behind the left half of the first image."""
    images = tf.fill([2, 16, 16, 3], 200.0)
    mask = np.zeros((2, 16, 16, 1), np.uint8)
    mask[0, :, :8] = 1
    strength = dataclasses.replace(OFF, background_swap=1.0)
    out = augmenter(strength, side=16).swap_backgrounds(images, tf.constant(mask)).numpy()
    return {"masked_max": float(out[0, :, :7].max()),
            "unmasked": sorted({float(v) for v in np.unique(out[0, :, 9:])}),
            "maskless_image": sorted({float(v) for v in np.unique(out[1])})}


def apply_to_some() -> dict:
    """How many of 200 images a transform reaches at shares 0, 0.3 and 1, and when limited."""
    images = tf.zeros([200, 2, 2, 3])

    def add_one(chosen: tf.Tensor) -> tf.Tensor:
        return chosen + 1.0

    def changed(out: tf.Tensor) -> list[float]:
        return out.numpy()[:, 0, 0, 0].tolist()

    eligible = tf.constant([True, False] * 100)
    return {"none": changed(_apply_to_some(images, 0.0, add_one)),
            "every": changed(_apply_to_some(images, 1.0, add_one)),
            "some": changed(_apply_to_some(images, 0.3, add_one)),
            "limited": changed(_apply_to_some(images, 1.0, add_one, eligible=eligible))}


def nothing_chosen() -> dict:
    """Largest change when a batch of unknown image size chooses no image to re-encode."""
    images = random_batch()
    jpeg = tf.function(
        augmenter(OFF).jpeg_artifacts,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    return {"jpeg_max_change": float(tf.reduce_max(tf.abs(jpeg(images) - images)))}


def blur() -> dict:
    """Standard deviation and mean of random pixels before and after the blur."""
    images = random_batch()
    out = augmenter(dataclasses.replace(OFF, blur=1.0)).blur(images).numpy()
    return {"std_before": float(images.numpy().std()), "std_after": float(out.std()),
            "mean_before": float(images.numpy().mean()), "mean_after": float(out.mean())}


def main() -> None:
    """Seed TensorFlow, run every measurement and print them as one JSON object."""
    tf.random.set_seed(1)
    measurements = {function.__name__: function() for function in
                    (presets, geometry, colour, background_swap, apply_to_some,
                     nothing_chosen, blur)}
    print(json.dumps(measurements))


if __name__ == "__main__":
    main()
