"""Random transforms for training batches, aimed at what phone photos and webcam frames vary in.

Batches are float32 pixels in [0, 255]. Each transform is drawn per image
(the blur's sigma per batch):
- new backgrounds behind the rendered hands, whose white studio background
  would otherwise teach the model that "white around skin" means a hand;
- position, scale, rotation and mirror images, since hands enter from any side;
- lighting, colour cast, saturation and grey images, for rooms and cameras;
- blur, sensor noise and JPEG artifacts, for webcams and messaging apps.
"""

from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf
from keras import layers


@dataclass(frozen=True)
class Strength:
    """Probabilities and ranges of the random transforms.

    Rotation is a fraction of a full turn; zoom, shift, brightness and
    contrast are fractions of the image size or value range.
    """

    background_swap: float
    rotation: float
    zoom: float
    shift: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grey: float
    blur: float
    noise: float
    jpeg: float

    def as_dict(self) -> dict:
        """Return the settings as a plain dict, for the model card."""
        return asdict(self)


STRENGTHS = {
    "strong": Strength(background_swap=0.7, rotation=0.2, zoom=0.3, shift=0.15,
                       brightness=0.3, contrast=0.3, saturation=0.2, hue=0.06,
                       grey=0.1, blur=0.3, noise=0.3, jpeg=0.4),
    "light": Strength(background_swap=0.5, rotation=0.1, zoom=0.2, shift=0.1,
                      brightness=0.2, contrast=0.2, saturation=0.1, hue=0.04,
                      grey=0.05, blur=0.2, noise=0.2, jpeg=0.25),
}


class Augmenter:
    """Apply the random transforms to (images, masks) batches inside a tf.data pipeline."""

    def __init__(self, backgrounds: np.ndarray, strength: Strength, seed: int):
        self.backgrounds = tf.constant(backgrounds, dtype=tf.uint8)
        self.strength = strength
        self.geometry_layers = [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(strength.rotation, fill_mode="reflect", seed=seed),
            layers.RandomZoom((-strength.zoom, strength.zoom), fill_mode="reflect", seed=seed),
            layers.RandomTranslation(strength.shift, strength.shift, fill_mode="reflect",
                                     seed=seed),
        ]
        # Keras' saturation factor 0.5 leaves saturation unchanged.
        saturation = (0.5 - strength.saturation, 0.5 + strength.saturation)
        self.colour_layers = [
            layers.RandomBrightness(strength.brightness, value_range=(0, 255), seed=seed),
            layers.RandomContrast(strength.contrast, value_range=(0, 255), seed=seed),
            layers.RandomSaturation(saturation, value_range=(0, 255), seed=seed),
            layers.RandomHue(strength.hue, value_range=(0, 255), seed=seed),
        ]

    def __call__(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """Return an augmented copy of a float32 batch; masks mark swappable background."""
        images = self.swap_backgrounds(images, masks)

        for layer in self.geometry_layers + self.colour_layers:
            images = layer(images, training=True)

        images = self.colour_cast(images)
        images = self.blur(images)
        images = self.sensor_noise(images)
        images = self.jpeg_artifacts(images)
        return tf.clip_by_value(images, 0.0, 255.0)

    def swap_backgrounds(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """Put a random no-hand picture behind images that have a white background."""
        batch = tf.shape(images)[0]
        picks = tf.random.uniform([batch], 0, tf.shape(self.backgrounds)[0], tf.int32)
        backgrounds = tf.cast(tf.gather(self.backgrounds, picks), tf.float32)
        backgrounds = tf.image.random_flip_left_right(backgrounds)

        # A 3x3 average softens the cut-out edge, as a camera's optics would.
        mask = tf.nn.avg_pool2d(tf.cast(masks, tf.float32), 3, 1, "SAME")
        swap = tf.cast(
            tf.random.uniform([batch, 1, 1, 1]) < self.strength.background_swap, tf.float32
        )
        mask *= swap
        return images * (1.0 - mask) + backgrounds * mask

    def colour_cast(self, images: tf.Tensor) -> tf.Tensor:
        """Scale each channel by 0.8 to 1.2 (white balance) and turn some images grey."""
        batch = tf.shape(images)[0]
        gains = tf.random.uniform([batch, 1, 1, 3], 0.8, 1.2)
        images = images * gains

        grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))
        choose = tf.random.uniform([batch, 1, 1, 1]) < self.strength.grey
        return tf.where(choose, grey, images)

    def blur(self, images: tf.Tensor) -> tf.Tensor:
        """Blur some images with one Gaussian kernel per batch, sigma 0.5 to 1.5 pixels."""
        sigma = tf.random.uniform([], 0.5, 1.5)
        offsets = tf.range(-3.0, 4.0)
        kernel = tf.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
        kernel /= tf.reduce_sum(kernel)
        kernel_2d = kernel[:, tf.newaxis] * kernel[tf.newaxis, :]
        depthwise = tf.tile(kernel_2d[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
        blurred = tf.nn.depthwise_conv2d(
            tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="SYMMETRIC"),
            depthwise, [1, 1, 1, 1], "VALID",
        )
        choose = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < self.strength.blur
        return tf.where(choose, blurred, images)

    def sensor_noise(self, images: tf.Tensor) -> tf.Tensor:
        """Add Gaussian noise of standard deviation up to 10 levels to some images."""
        batch = tf.shape(images)[0]
        spread = tf.random.uniform([batch, 1, 1, 1], 0.0, 10.0)
        choose = tf.cast(tf.random.uniform([batch, 1, 1, 1]) < self.strength.noise, tf.float32)
        return images + tf.random.normal(tf.shape(images)) * spread * choose

    def jpeg_artifacts(self, images: tf.Tensor) -> tf.Tensor:
        """Re-encode some images as JPEG at quality 25 to 90."""
        def one(image: tf.Tensor) -> tf.Tensor:
            pixels = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
            compressed = tf.image.random_jpeg_quality(pixels, 25, 90)
            compressed = tf.cast(compressed, tf.float32)
            return tf.cond(
                tf.random.uniform([]) < self.strength.jpeg, lambda: compressed, lambda: image
            )

        return tf.map_fn(one, images, fn_output_signature=tf.float32)
