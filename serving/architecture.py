"""The classifier network and its training-time augmentation."""

import keras
from keras import layers


def build_classifier(size: tuple[int, int], class_count: int) -> keras.Model:
    """Build a small convolutional classifier that takes float pixels in [0, 255]."""
    inputs = keras.Input(shape=(size[0], size[1], 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0)(inputs)

    # A stride-2 first convolution and four pooling steps take 150 pixels down
    # to 4, at a third of the compute of a stride-1 stem. Global average
    # pooling keeps the dense head, and so the file, small.
    for block, filters in enumerate((32, 64, 128, 128)):
        stride = 2 if block == 0 else 1
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        # Momentum 0.9 instead of Keras' 0.99: with about 60 steps an epoch, the
        # slower moving averages left validation at chance for several epochs.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(class_count, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="rps_cnn")


def build_augmentation(seed: int) -> keras.Sequential:
    """Build random transforms for training batches of float pixels in [0, 255].

    Hands in the data come from every side, so flips and rotations are free.
    Zoom, shift, brightness, contrast and hue cover hand models and skin
    tones that the training renders lack.
    """
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.15, fill_mode="nearest", seed=seed),
            layers.RandomZoom((-0.2, 0.2), fill_mode="nearest", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed),
            layers.RandomContrast(0.2, value_range=(0, 255), seed=seed),
            layers.RandomHue(0.05, value_range=(0, 255), seed=seed),
        ],
        name="augmentation",
    )
