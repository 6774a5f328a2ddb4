"""Models shared by the benchmark scripts (random weights: speed does not depend on training)."""

import keras


def cnn_100k(input_shape=(32, 32, 3), classes=10, seed=0):
    """A ~100k-parameter CNN for 32x32x3 inputs (ReLU, max pooling, logits)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(classes),
        ],
        name="cnn_100k",
    )


def mobilenet_v2(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(weights=None, classifier_activation=None, input_shape=(224, 224, 3))
