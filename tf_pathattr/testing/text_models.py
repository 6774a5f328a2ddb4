"""A small token model with a twin that takes embeddings directly (independent gradient oracle)."""

import keras
import numpy as np
import tensorflow as tf


def token_model(seed=0, vocab=40, length=6, dim=4):
    """Token ids ``[B, length] -> Embedding(vocab, dim, name="embedding") -> Dense(5, tanh) -> GAP -> Dense(3)``.

    Returns ``(model, twin, embedding_matrix)``: ``twin`` is the same function on embeddings ``[B, length, dim]``
    (the same layer objects, so the same weights), ``model(ids) == twin(embedding_matrix[ids])``; its plain
    ``GradientTape`` gradients (:func:`twin_gradients`) are an independent oracle for methods that move through
    the embedding space (DIG, SIG). Smooth (tanh, average pooling).
    """
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32")
    emb = keras.layers.Embedding(vocab, dim, name="embedding")
    dense = keras.layers.Dense(5, activation="tanh")
    head = keras.layers.Dense(3)
    pool = keras.layers.GlobalAveragePooling1D()
    model = keras.Model(ids, head(pool(dense(emb(ids)))))
    e_in = keras.Input((length, dim))
    twin = keras.Model(e_in, head(pool(dense(e_in))))
    return model, twin, emb.embeddings.numpy()


def twin_gradients(twin, points, target):
    """d logit[target] / d points for a stack of embedding points ``[N, T, E]`` (plain GradientTape)."""
    p = tf.constant(points, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(p)
        s = twin(p)[:, target]
    return tape.gradient(s, p).numpy().astype(np.float64)
