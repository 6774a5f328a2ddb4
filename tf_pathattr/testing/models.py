"""The model zoo: small Keras models with documented properties, shared by tests, benchmarks and notebooks.

``from tf_pathattr.testing import models as zoo``. Plain functions (no pytest), so tests, fixtures in
``tests/conftest.py``, benchmarks and users' own checks can call them.
Every builder seeds Keras first (``seed=``), so the same call gives the same weights. ``dtype=`` is a
*per-layer* dtype policy (``"float64"``, ``"mixed_float16"``, ``"mixed_bfloat16"``), never the global
policy, so no test leaks a policy into the next; :func:`variant` builds such a variant with the
weights of the float32 model.

Properties tests rely on are stated in each docstring (smoothness, exact linearity, which features
the output ignores, the layer names used with ``layer=``).
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = [
    "toy_cnn",
    "smooth_cnn",
    "maxpool_cnn",
    "linear_model",
    "dummy_feature_cnn",
    "DUMMY_ROWS",
    "two_input_models",
    "text_model",
    "masked_text_model",
    "embedding_tail",
    "single_output_model",
    "multi_output_model",
    "variant",
    "dense_head",
    "ids",
    "multi_output_cnn",
    "nested_cnn",
    "lstm_model",
    "calibrate_batchnorm",
    "dummy_feature_cnn_channels_first",
    "permuted_input_cnn",
]


def _dt(dtype):
    return {} if dtype is None else {"dtype": dtype}


def toy_cnn(seed=0, dtype=None, size=8, channels=3):
    """``[B, size, size, channels] -> Conv2D(4, 3, tanh, same) -> GAP -> Dense(3)`` logits (default 8x8x3).

    Smooth (tanh, average pooling), so completeness of IG is tight with few steps.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, channels)),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh", **_dt(dtype)),
            keras.layers.GlobalAveragePooling2D(**_dt(dtype)),
            keras.layers.Dense(3, **_dt(dtype)),
        ]
    )


def digits_cnn(seed=0):
    """``[B, 8, 8, 1]`` digits -> ``Conv2D(8, 3, tanh, same) -> Flatten -> Dense(10)`` logits, untrained.

    The small image model of the dataset-scale tests (scikit-learn's digits are 8x8x1): smooth, cheap,
    and rebuilt identically from ``seed`` in another process (resume and Beam worker tests).
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def smooth_cnn(size=16, channels=3, classes=10, seed=0, dtype=None):
    """``Conv-tanh -> AvgPool -> Conv-softplus -> GAP -> Dense-tanh -> Dense`` logits, ``[B, size, size, channels]``.

    Smooth everywhere (no ReLU, no max-pooling): path integrals converge quickly and completeness is
    tight; ``classes`` logits.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, channels)),
            keras.layers.Conv2D(8, 3, padding="same", activation="tanh", **_dt(dtype)),
            keras.layers.AveragePooling2D(2, **_dt(dtype)),
            keras.layers.Conv2D(8, 3, padding="same", activation="softplus", **_dt(dtype)),
            keras.layers.GlobalAveragePooling2D(**_dt(dtype)),
            keras.layers.Dense(16, activation="tanh", **_dt(dtype)),
            keras.layers.Dense(classes, **_dt(dtype)),
        ]
    )


def maxpool_cnn(size=16, seed=0, dtype=None):
    """``Conv-relu -> MaxPool -> Conv-relu -> MaxPool -> Conv-softplus -> GAP -> Dense-tanh -> Dense(10)``.

    Piecewise smooth: ReLU kinks and max-pool switches (the regime where Guided IG's completeness is
    loose by design and where discrete choices can amplify float rounding).
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", **_dt(dtype)),
            keras.layers.MaxPooling2D(2, **_dt(dtype)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", **_dt(dtype)),
            keras.layers.MaxPooling2D(2, **_dt(dtype)),
            keras.layers.Conv2D(8, 3, padding="same", activation="softplus", **_dt(dtype)),
            keras.layers.GlobalAveragePooling2D(**_dt(dtype)),
            keras.layers.Dense(16, activation="tanh", **_dt(dtype)),
            keras.layers.Dense(10, **_dt(dtype)),
        ]
    )


def linear_model(weights, bias=0.0):
    """``F(x) = x @ W + b`` (one Dense layer, weights set exactly); returns ``(model, W [d, C])``.

    ``weights`` ``[d]`` gives one output unit (``[B, 1]``), ``[d, C]`` gives ``C`` outputs; ``bias``
    is a scalar or one value per output.
    """
    w = np.asarray(weights, np.float32)
    if w.ndim == 1:
        w = w[:, None]
    d, c = w.shape
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(c)])
    model.layers[-1].set_weights([w, np.broadcast_to(np.asarray(bias, np.float32), (c,)).copy()])
    return model, w


def dense_head(d, classes=2, hidden=None, seed=0, activation="tanh"):
    """``[B, d] -> (Dense(hidden, activation) ->) Dense(classes)``: a small tabular model."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((d,))]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation=activation))
    layers.append(keras.layers.Dense(classes))
    return keras.Sequential(layers)


# rows of the image that dummy_feature_cnn ignores (index into axis 1 of [B, H, W, C])
DUMMY_ROWS = slice(0, 2)


def dummy_feature_cnn(seed=0, dtype=None, size=8, classes=3):
    """``[B, size, size, 3] -> Cropping2D(top 2 rows) -> Conv-tanh -> AvgPool -> Conv-softplus -> GAP -> Dense-tanh -> Dense``.

    The output does not depend on image rows ``DUMMY_ROWS`` (0 and 1) at all: their gradient is
    exactly zero, so every complete or gradient-weighted method gives them exactly zero attribution.
    Everything else is smooth (tanh / softplus / average pooling). This is the contract tests'
    image model (it is an ordinary image model apart from the two ignored rows).
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Cropping2D(((DUMMY_ROWS.stop, 0), (0, 0)), **_dt(dtype)),
            keras.layers.Conv2D(6, 3, padding="same", activation="tanh", **_dt(dtype)),
            keras.layers.AveragePooling2D(2, **_dt(dtype)),
            keras.layers.Conv2D(6, 3, padding="same", activation="softplus", **_dt(dtype)),
            keras.layers.GlobalAveragePooling2D(**_dt(dtype)),
            keras.layers.Dense(8, activation="tanh", **_dt(dtype)),
            keras.layers.Dense(classes, **_dt(dtype)),
        ]
    )


def two_input_models(seed=0, widths=(3, 2), classes=3):
    """A list-input and a dict-input functional model sharing the same layers (so the same function).

    ``[a [B, widths[0]], b [B, widths[1]]] -> concat -> Dense(8, tanh) -> Dense(classes)``; the dict
    model takes ``{"a": ..., "b": ...}``. Returns ``(list_model, dict_model)``.
    """
    keras.utils.set_random_seed(seed)
    hidden = keras.layers.Dense(8, activation="tanh")
    out = keras.layers.Dense(classes)
    a_in, b_in = keras.Input((widths[0],), name="a"), keras.Input((widths[1],), name="b")
    y = out(hidden(keras.layers.Concatenate()([a_in, b_in])))
    list_model = keras.Model([a_in, b_in], y)
    a2, b2 = keras.Input((widths[0],), name="a"), keras.Input((widths[1],), name="b")
    dict_model = keras.Model({"a": a2, "b": b2}, out(hidden(keras.layers.Concatenate()([a2, b2]))))
    return list_model, dict_model


def text_model(vocab=20, length=6, dim=4, classes=3, recurrent=False, seed=0, layer_norm=False):
    """Integer token ids ``[B, length]`` -> ``Embedding(vocab, dim, name="embedding")`` -> pooling or GRU -> Dense.

    ``layer_norm=True`` puts a ``LayerNormalization(name="norm")`` right after the Embedding: the
    gradient with respect to the embedding output then sums to exactly 0 over the embedding axis at
    every position (LayerNorm's Jacobian annihilates the all-ones vector), like a transformer's.

    ``recurrent=False``: ``GlobalAveragePooling1D -> Dense(8, tanh) -> Dense(classes)`` (smooth,
    see :func:`embedding_tail` for the same function on embeddings); ``recurrent=True``:
    ``GRU(8) -> Dense(classes)``. Float ids have no gradient path through the Embedding: explain
    with ``layer="embedding"``.
    """
    keras.utils.set_random_seed(seed)
    ids_in = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(vocab, dim, name="embedding")(ids_in)
    if layer_norm:
        h = keras.layers.LayerNormalization(name="norm")(h)
    if recurrent:
        h = keras.layers.GRU(8, name="gru")(h)
    else:
        h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
        h = keras.layers.Dense(8, activation="tanh", name="hidden")(h)
    return keras.Model(ids_in, keras.layers.Dense(classes, name="logits")(h))


def linear_text_model(vocab=20, length=6, dim=4, classes=3, seed=0):
    """Token ids ``[B, length]`` -> ``Embedding(name="embedding")`` -> Flatten -> ``Dense(classes, name="logits")``.

    Linear in the embedding output: its gradient there is the ``logits`` kernel (reshaped to
    ``[length, dim]``) at every point, so any average of layer gradients equals it exactly.
    """
    keras.utils.set_random_seed(seed)
    ids_in = keras.Input((length,), dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(vocab, dim, name="embedding")(ids_in))
    return keras.Model(ids_in, keras.layers.Dense(classes, name="logits")(h))


def masked_text_model(vocab=30, length=7, dim=5, hidden=8, classes=3, seed=0, embedding_name="embedding"):
    """Two inputs, ``[ids [B, length] int32, mask [B, length] float]``: ``Embedding(vocab, dim, name=embedding_name)
    -> Dense(hidden, tanh) -> (times mask) -> GlobalAveragePooling1D -> Dense(classes)``.

    A position whose mask is 0 contributes nothing after its embedding (its attribution to the embedding is
    exactly zero, whatever its id); the ids reach the output only through the Embedding, so they are explained
    with ``layer=embedding_name`` while the mask is fed unchanged. Smooth (tanh, average pooling).
    """
    keras.utils.set_random_seed(seed)
    ids_in = keras.Input((length,), dtype="int32", name="ids")
    mask_in = keras.Input((length,), name="mask")
    h = keras.layers.Dense(hidden, activation="tanh")(keras.layers.Embedding(vocab, dim, name=embedding_name)(ids_in))
    h = h * keras.ops.expand_dims(mask_in, -1)
    return keras.Model([ids_in, mask_in], keras.layers.Dense(classes)(keras.layers.GlobalAveragePooling1D()(h)))


def embedding_tail(model):
    """The part of a :func:`text_model` after its Embedding, as a model on embeddings ``[B, L, dim]``.

    Same layers (same weights): ``text_model(ids)`` equals ``embedding_tail(text_model)(Embedding(ids))``,
    so an attribution with ``layer="embedding"`` must equal the same method on the tail.
    """
    emb = model.get_layer("embedding")
    length = model.inputs[0].shape[1]
    e_in = keras.Input((length, emb.output_dim))
    h = e_in
    past = False
    for lay in model.layers:
        if lay is emb:
            past = True
            continue
        if past:
            h = lay(h)
    return keras.Model(e_in, h)


def ids(batch, length=6, vocab=20, seed=0):
    """Token ids ``[batch, length]`` int32 in ``1..vocab-1``."""
    return np.random.default_rng(seed).integers(1, vocab, size=(batch, length)).astype(np.int32)


def single_output_model(d=4, seed=0):
    """``[B, d] -> Dense(8, tanh) -> Dense(1)``: one output unit, ``[B, 1]`` (regression / binary logit)."""
    return dense_head(d, classes=1, hidden=8, seed=seed)


def multi_output_model(d=4, seed=0):
    """``[B, d] -> Dense(8, tanh) -> [Dense(3) logits, Dense(1) regression]``: needs a callable target."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((d,))
    h = keras.layers.Dense(8, activation="tanh")(inp)
    return keras.Model(inp, [keras.layers.Dense(3, name="classes")(h), keras.layers.Dense(1, name="value")(h)])


def variant(builder, dtype, **kwargs):
    """``builder(dtype=dtype, **kwargs)`` with the weights of ``builder(**kwargs)`` (float32).

    Mixed policies keep float32 variables (so the weights are identical); ``"float64"`` variables
    receive the float32 values exactly.
    """
    ref = builder(**kwargs)
    model = builder(dtype=dtype, **kwargs)
    model.set_weights(ref.get_weights())
    return model


def multi_output_cnn(size=16, seed=0):
    """``[B, size, size, 3] -> Conv-tanh -> GAP -> [Dense(3) logits "classes", Dense(1) "value"]``: an image
    model with two outputs (explained through a callable target)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, padding="same", activation="tanh")(inp))
    return keras.Model(inp, [keras.layers.Dense(3, name="classes")(h), keras.layers.Dense(1, name="value")(h)])


def nested_cnn(size=16, seed=0):
    """A functional model whose body is another model: ``Input -> Sequential(Conv-tanh, AvgPool) -> Sequential(GAP,
    Dense-tanh) -> Dense(4)``, with a Rescaling layer in front (inputs in [0, 255])."""
    keras.utils.set_random_seed(seed)
    trunk = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(6, 3, padding="same", activation="tanh"),
            keras.layers.AveragePooling2D(2),
        ],
        name="trunk",
    )
    head = keras.Sequential(
        [
            keras.Input(trunk.output_shape[1:]),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="tanh"),
        ],
        name="head",
    )
    inp = keras.Input((size, size, 3))
    return keras.Model(inp, keras.layers.Dense(4, name="logits")(head(trunk(keras.layers.Rescaling(1 / 255.0)(inp)))))


def lstm_model(steps=10, features=4, classes=3, seed=0):
    """Float sequences ``[B, steps, features] -> LSTM(8) -> Dense(classes)`` (a recurrent while loop inside the
    explained graph)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((steps, features)), keras.layers.LSTM(8), keras.layers.Dense(classes)])


def calibrate_batchnorm(model, x):
    """Set every BatchNormalization layer's moving statistics to the batch statistics of ``x``.

    Randomly initialised deep networks (``weights=None``) have moving statistics 0 / 1 that do not
    match their activations; in inference mode the signal then vanishes (MobileNetV3Small's logits
    are ~1e-10) and every attribution is numerically degenerate. One training-mode pass with
    momentum 0 makes inference normalise like training does. Returns the number of layers set.
    """
    bns = [lay for lay in model._flatten_layers() if isinstance(lay, keras.layers.BatchNormalization)]
    momenta = [lay.momentum for lay in bns]
    for lay in bns:
        lay.momentum = 0.0
    model(x, training=True)
    for lay, m in zip(bns, momenta):
        lay.momentum = m
    return len(bns)


def dummy_feature_cnn_channels_first(seed=0, size=8, classes=3):
    """:func:`dummy_feature_cnn` in the channels-first layout: ``[B, 3, size, size]``, every image layer
    ``data_format="channels_first"``, and the weights of ``dummy_feature_cnn(seed)``, so
    ``model_cf(x.transpose(0, 3, 1, 2)) == model_cl(x)`` up to float rounding and its attributions are
    the channels-last model's, transposed. Built whatever ``keras.config.image_data_format()`` is.
    """
    twin = dummy_feature_cnn(seed=seed, size=size, classes=classes)
    cf = {"data_format": "channels_first"}
    model = keras.Sequential(
        [
            keras.Input((3, size, size)),
            keras.layers.Cropping2D(((DUMMY_ROWS.stop, 0), (0, 0)), **cf),
            keras.layers.Conv2D(6, 3, padding="same", activation="tanh", **cf),
            keras.layers.AveragePooling2D(2, **cf),
            keras.layers.Conv2D(6, 3, padding="same", activation="softplus", **cf),
            keras.layers.GlobalAveragePooling2D(**cf),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(classes),
        ]
    )
    model.set_weights(twin.get_weights())
    return model


def permuted_input_cnn(seed=0, size=8, classes=3):
    """``[B, 3, size, size] -> Permute -> channels-last Conv -> GAP -> Dense``: its first image layer does
    not see the inputs as given, so the inputs' layout cannot be read from the model (tests of
    ``data_format=`` refusals)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((3, size, size)),
            keras.layers.Permute((2, 3, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="tanh", data_format="channels_last"),
            keras.layers.GlobalAveragePooling2D(data_format="channels_last"),
            keras.layers.Dense(classes),
        ]
    )
