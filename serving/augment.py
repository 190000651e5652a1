"""Random transforms for training batches, aimed at what phone photos and webcam frames vary in.

Batches are float32 pixels in [0, 255]. Each transform is drawn per image
(the blur's sigma per batch). The geometric transforms are one affine warp
and the colour transforms one 3x3 matrix per image, because separate Keras
preprocessing layers cost as much CPU as the training step itself:
- new backgrounds behind the rendered hands, whose white studio background
  would otherwise teach the model that "white around skin" means a hand;
- position, scale, rotation, quarter turns and mirror images, since hands
  enter from any side;
- lighting, colour cast, saturation and grey images, for rooms and cameras;
- blur, sensor noise and JPEG artifacts, for webcams and messaging apps.
"""

from dataclasses import asdict, dataclass

import math

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Strength:
    """Probabilities and ranges of the random transforms.

    Rotation is a fraction of a full turn, and quarter_turn the share of
    images also turned by 90 degrees; zoom, shift, brightness and
    contrast are fractions of the image size or value range. Saturation is
    the largest change of a colour's distance from grey, and hue a fraction
    of the colour wheel. The other fields are shares of the images changed.
    """

    background_swap: float
    rotation: float
    quarter_turn: float
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
    "strong": Strength(background_swap=0.7, rotation=0.2, quarter_turn=0.5, zoom=0.3,
                       shift=0.15, brightness=0.3, contrast=0.3, saturation=0.2, hue=0.06,
                       grey=0.1, blur=0.3, noise=0.3, jpeg=0.4),
    "light": Strength(background_swap=0.5, rotation=0.1, quarter_turn=0.5, zoom=0.2,
                      shift=0.1, brightness=0.2, contrast=0.2, saturation=0.1, hue=0.04,
                      grey=0.05, blur=0.2, noise=0.2, jpeg=0.25),
}


class Augmenter:
    """Apply the random transforms to (images, masks) batches inside a tf.data pipeline."""

    def __init__(self, backgrounds: np.ndarray, strength: Strength):
        """Keep the no-hand pictures to paste behind rendered hands, and the strengths.

        The random draws follow TensorFlow's global seed, which the caller sets.
        """
        self.backgrounds = tf.constant(backgrounds, dtype=tf.uint8)
        self.strength = strength

    def __call__(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """Return an augmented copy of a float32 batch; masks mark swappable background."""
        images = self.swap_backgrounds(images, masks)
        images = self.geometry(images)
        images = self.colour(images)
        images = self.blur(images)
        images = self.sensor_noise(images)
        images = self.jpeg_artifacts(images)
        return tf.clip_by_value(images, 0.0, 255.0)

    def swap_backgrounds(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """Put a random no-hand picture behind some images that have a white background."""
        def swap(chosen: tf.Tensor, chosen_masks: tf.Tensor) -> tf.Tensor:
            picks = tf.random.uniform(
                [tf.shape(chosen)[0]], 0, tf.shape(self.backgrounds)[0], tf.int32
            )
            backgrounds = tf.cast(tf.gather(self.backgrounds, picks), tf.float32)
            # A 3x3 average softens the cut-out edge, as a camera's optics would.
            mask = tf.nn.avg_pool2d(tf.cast(chosen_masks, tf.float32), 3, 1, "SAME")
            return chosen * (1.0 - mask) + backgrounds * mask

        # Photographs and no-hand pictures have empty masks: nothing to swap.
        has_background = tf.reduce_any(masks > 0, axis=[1, 2, 3])
        return _apply_to_some(images, self.strength.background_swap, swap, masks,
                              eligible=has_background)

    def geometry(self, images: tf.Tensor) -> tf.Tensor:
        """Mirror, rotate, zoom and shift each image in one warp, reflecting at the edges."""
        batch = tf.shape(images)[0]
        height = tf.cast(tf.shape(images)[1], tf.float32)
        width = tf.cast(tf.shape(images)[2], tf.float32)

        def uniform(low, high):
            return tf.random.uniform([batch], low, high)

        flip_x = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
        flip_y = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
        turn = self.strength.rotation * 2.0 * math.pi
        # With both mirrors at even odds, a quarter-turn share of 0.5 makes all
        # eight right-angle orientations equally likely, because photographed
        # hands point every way.
        quarter = tf.where(uniform(0.0, 1.0) < self.strength.quarter_turn, math.pi / 2, 0.0)
        angle = uniform(-turn, turn) + quarter
        # Above 1 the warp samples a larger area, so the hand looks smaller.
        scale = uniform(1.0 - self.strength.zoom, 1.0 + self.strength.zoom)
        shift_x = uniform(-self.strength.shift, self.strength.shift) * width
        shift_y = uniform(-self.strength.shift, self.strength.shift) * height

        # Each output pixel p reads input pixel scale * R(angle) * flip * (p - centre)
        # + centre + shift.
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        a0, a1 = cos * flip_x, -sin * flip_y
        b0, b1 = sin * flip_x, cos * flip_y
        centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a2 = centre_x + shift_x - a0 * centre_x - a1 * centre_y
        b2 = centre_y + shift_y - b0 * centre_x - b1 * centre_y
        zeros = tf.zeros([batch])
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT",
        )
        # The op cannot tell that the size is unchanged, so restore the static shape.
        warped.set_shape(images.shape)
        return warped

    def colour(self, images: tf.Tensor) -> tf.Tensor:
        """Change brightness, contrast, saturation, hue and white balance; make some grey.

        All of it is linear in the pixel values, so each image gets one 3x3
        matrix and one offset.
        """
        batch = tf.shape(images)[0]
        strength = self.strength

        def uniform(low, high, shape=()):
            return tf.random.uniform([batch, *shape], low, high)

        luma = tf.constant([0.299, 0.587, 0.114])
        to_grey = tf.tile(luma[:, tf.newaxis], [1, 3])
        identity = tf.eye(3)

        # Hue turns colours about the grey axis; saturation scales their distance from it.
        angle = uniform(-strength.hue, strength.hue) * 2.0 * math.pi
        hue = _grey_axis_rotation(angle)
        saturation = uniform(1.0 - strength.saturation, 1.0 + strength.saturation)[:, None, None]
        chroma = (identity - to_grey)[tf.newaxis] * saturation
        matrix = tf.matmul(to_grey[tf.newaxis] + chroma, hue)

        grey = uniform(0.0, 1.0)[:, None, None] < strength.grey
        matrix = tf.where(grey, tf.matmul(matrix, to_grey[tf.newaxis]), matrix)
        # Per-channel gains of 0.8 to 1.2: the camera's white balance.
        matrix *= uniform(0.8, 1.2, (1, 3))
        contrast = uniform(1.0 - strength.contrast, 1.0 + strength.contrast)[:, None, None]
        matrix *= contrast

        mean = tf.reduce_mean(images, axis=[1, 2])
        offset = (tf.einsum("bc,bcd->bd", mean, matrix / contrast) * (1.0 - contrast[:, 0])
                  + uniform(-strength.brightness, strength.brightness, (1,)) * 255.0)
        coloured = tf.einsum("bhwc,bcd->bhwd", images, matrix)
        return coloured + offset[:, tf.newaxis, tf.newaxis, :]

    def blur(self, images: tf.Tensor) -> tf.Tensor:
        """Blur some images with one Gaussian kernel per batch, sigma 0.5 to 1.5 pixels."""
        sigma = tf.random.uniform([], 0.5, 1.5)
        offsets = tf.range(-3.0, 4.0)
        kernel = tf.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
        kernel /= tf.reduce_sum(kernel)

        # The Gaussian is separable: a column pass then a row pass costs 14
        # products a pixel instead of 49.
        column = tf.tile(tf.reshape(kernel, [7, 1, 1, 1]), [1, 1, 3, 1])
        row = tf.tile(tf.reshape(kernel, [1, 7, 1, 1]), [1, 1, 3, 1])

        def blur(chosen: tf.Tensor) -> tf.Tensor:
            padded = tf.pad(chosen, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="SYMMETRIC")
            blurred = tf.nn.depthwise_conv2d(padded, column, [1, 1, 1, 1], "VALID")
            return tf.nn.depthwise_conv2d(blurred, row, [1, 1, 1, 1], "VALID")

        return _apply_to_some(images, self.strength.blur, blur)

    def sensor_noise(self, images: tf.Tensor) -> tf.Tensor:
        """Add Gaussian noise of standard deviation up to 10 levels to some images."""
        def noise(chosen: tf.Tensor) -> tf.Tensor:
            spread = tf.random.uniform([tf.shape(chosen)[0], 1, 1, 1], 0.0, 10.0)
            return chosen + tf.random.normal(tf.shape(chosen)) * spread

        return _apply_to_some(images, self.strength.noise, noise)

    def jpeg_artifacts(self, images: tf.Tensor) -> tf.Tensor:
        """Re-encode some images as JPEG at quality 25 to 90."""
        def one(image: tf.Tensor) -> tf.Tensor:
            pixels = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
            return tf.cast(tf.image.random_jpeg_quality(pixels, 25, 90), tf.float32)

        def compress(chosen: tf.Tensor) -> tf.Tensor:
            return tf.map_fn(one, chosen, fn_output_signature=tf.float32)

        return _apply_to_some(images, self.strength.jpeg, compress)


def _apply_to_some(images: tf.Tensor, share: float, transform, *extras: tf.Tensor,
                   eligible: tf.Tensor | None = None) -> tf.Tensor:
    """Apply `transform` to a random `share` of the images and return the whole batch.

    Only the chosen images are computed, which is what makes a transform that
    touches a fifth of the batch cost a fifth as much. `extras` are per-image
    tensors passed along with the chosen images; `eligible` limits the choice.
    """
    chosen = tf.random.uniform([tf.shape(images)[0]]) < share
    if eligible is not None:
        chosen &= eligible
    indices = tf.where(chosen)

    def update() -> tf.Tensor:
        picked = tf.gather_nd(images, indices)
        changed = transform(picked, *(tf.gather_nd(extra, indices) for extra in extras))
        return tf.tensor_scatter_nd_update(images, indices, changed)

    # tf.map_fn cannot stack an empty result whose image size is unknown, and
    # a batch may choose no image at all, so skip the transform then.
    return tf.cond(tf.size(indices) > 0, update, lambda: images)


def _grey_axis_rotation(angle: tf.Tensor) -> tf.Tensor:
    """Return [batch, 3, 3] matrices turning RGB colours by `angle` about the grey axis.

    It applies Rodrigues' formula about the unit vector (1, 1, 1) / sqrt(3), so grey stays grey.
    """
    unit = 1.0 / math.sqrt(3.0)
    outer = tf.fill([3, 3], unit * unit)
    cross = tf.constant([[0.0, -unit, unit], [unit, 0.0, -unit], [-unit, unit, 0.0]])
    cos = tf.cos(angle)[:, None, None]
    sin = tf.sin(angle)[:, None, None]
    rotation = cos * tf.eye(3) + sin * cross + (1.0 - cos) * outer
    # Row vectors are multiplied on the left, so use the transpose.
    return tf.transpose(rotation, [0, 2, 1])
