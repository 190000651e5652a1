"""The classifier network."""

import keras
from keras import layers


def build_classifier(
    size: tuple[int, int], class_count: int, filters: tuple[int, ...], dropout: float = 0.3
) -> keras.Model:
    """Build a small convolutional classifier from float pixels in [0, 255] to logits.

    Each entry of `filters` adds a Conv-BN-ReLU-MaxPool block of that width.
    The stride-2 convolution and one 2x2 pooling per block halve the input
    len(filters) + 1 times, so `size` must be at least 2 ** (len(filters) + 1).
    `dropout` is the share of pooled features dropped before the last layer in training.
    The model returns logits, not probabilities, so that a temperature fitted
    after training can scale them before the softmax in the exported signature.
    """
    inputs = keras.Input(shape=(size[0], size[1], 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0)(inputs)

    # A stride-2 first convolution costs a third of a stride-1 stem. Global
    # average pooling keeps the dense head, and so the file, small.
    for block, width in enumerate(filters):
        stride = 2 if block == 0 else 1
        x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
        # Momentum 0.9 instead of Keras' 0.99: with about 60 steps an epoch, the
        # slower moving averages left validation at chance for several epochs.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(class_count, name="logits")(x)
    return keras.Model(inputs, outputs, name="rps_cnn")
