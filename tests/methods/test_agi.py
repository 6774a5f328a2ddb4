"""AGI: parity with a re-statement of the released loop (pd90506/AGI ``pgd_step``/``fgsm_step``) and of
the paper's chained walk, batch = per-example, class sampling, telescoping as epsilon -> 0, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo

agi = tpa.adversarial_gradient_integration


def small_cnn(classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3, padding="same", activation="tanh"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(12, activation="tanh"),
            keras.layers.Dense(classes),
        ]
    )


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)


def agi_restated(model, x, c, classes, eps, max_iter, compat, clip=None):
    """One example, one walk per false class, plain Python loop (the released per-image algorithm)."""

    @tf.function
    def probs_and_grads(z, j):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            out = model(z, training=False)
            p = tf.nn.softmax(out, axis=-1)
            pj, pc = p[0, j], p[0, c]
        return out, tape.gradient(pj, z), tape.gradient(pc, z)

    total = np.zeros_like(x, np.float64)
    for j in classes:
        if j == c:
            continue  # the demo script skips the explained class
        z = x.copy()
        for _ in range(max_iter):
            out, gj, gc = probs_and_grads(tf.constant(z[None]), int(j))
            if int(np.argmax(out.numpy()[0])) == j:
                break  # attack succeeded
            anchor = x if compat else z
            nxt = anchor + np.float32(eps) * np.sign(gj.numpy()[0])
            if clip is not None:
                nxt = np.clip(nxt, clip[0], clip[1])
            total += -gc.numpy()[0].astype(np.float64) * (nxt - anchor)
            z = nxt.astype(np.float32)
    return total


@pytest.mark.parametrize("compat", [True, False])
def test_parity_with_restated_algorithm(cnn, images, compat):
    eps, max_iter, k = 0.05, 6, 3
    attr, det = agi(
        cnn, images, None, epsilon=eps, max_iter=max_iter, k=k, seed=3, reference_compat=compat, return_details=True
    )
    classes = det["false_classes"]
    pred = np.argmax(cnn(images).numpy(), 1)
    assert classes.shape == (3, k) and all(pred[b] not in classes[b] for b in range(3))
    assert all(len(set(row)) == k for row in classes)
    for b in range(3):
        ref = agi_restated(cnn, images[b], int(pred[b]), classes[b], eps, max_iter, compat)
        assert np.abs(attr.numpy()[b] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_spaced_classes_skip_the_explained_class(cnn, images):
    attr, det = agi(cnn, images, 0, class_selection="spaced", k=2, max_iter=4, return_details=True)
    np.testing.assert_array_equal(det["false_classes"], np.tile([0, 2], (3, 1)))  # range(0, 4, 5 // 2)
    ref = agi_restated(cnn, images[1], 0, [0, 2], 0.05, 4, False)  # class 0 is the target: only class 2 walks
    assert np.abs(attr.numpy()[1] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_batch_equals_single_and_chunking(cnn, images):
    fc = np.array([[1, 3], [0, 4], [2, 1]])
    full = agi(cnn, images, [0, 2, 3], false_classes=fc, max_iter=5).numpy()
    chunked = agi(cnn, images, [0, 2, 3], false_classes=fc, max_iter=5, internal_batch_size=3).numpy()
    assert np.abs(full - chunked).max() <= 1e-6 * np.abs(full).max()
    for b in range(3):
        one = agi(cnn, images[b : b + 1], [0, 2, 3][b], false_classes=fc[b : b + 1], max_iter=5).numpy()
        assert np.abs(one[0] - full[b]).max() <= 1e-6 * np.abs(full[b]).max()


def test_seeds(cnn, images):
    a, d1 = agi(cnn, images, None, k=2, max_iter=2, seed=1, return_details=True)
    b, d2 = agi(cnn, images, None, k=2, max_iter=2, seed=1, return_details=True)
    c, d3 = agi(cnn, images, None, k=2, max_iter=2, seed=7, return_details=True)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(d1["false_classes"], d2["false_classes"])
    assert not np.array_equal(d1["false_classes"], d3["false_classes"])


def test_chain_telescopes_as_epsilon_shrinks():
    """Chained walk, no clip, no early stop: sum(AGI_j) -> p_c(x) - p_c(x_end) (left Riemann sum)."""
    model, _ = zoo.linear_model(np.random.default_rng(4).normal(size=(6, 3)))
    x = np.random.default_rng(5).normal(size=(1, 6)).astype(np.float32)
    c = int(np.argmax(model(x).numpy()))
    j = [i for i in range(3) if i != c][0]
    gaps = []
    for eps, steps in ((0.02, 5), (0.002, 50)):
        attr = agi(model, x, c, false_classes=[j], epsilon=eps, max_iter=steps, clip=None).numpy()
        z = x.copy()
        for _ in range(steps):  # the sign direction of a softmax-of-linear model
            with tf.GradientTape() as tape:
                zt = tf.constant(z)
                tape.watch(zt)
                pj = tf.nn.softmax(model(zt))[0, j]
            z = z + eps * np.sign(tape.gradient(pj, zt).numpy())
        assert np.argmax(model(z).numpy()) != j  # no early stop in this set-up
        p = lambda v: tf.nn.softmax(model(v)).numpy()[0, c]  # noqa: E731
        target = p(x) - p(z)
        gaps.append(abs(attr.sum() - target) / abs(target))
    assert gaps[1] < gaps[0] / 5, gaps


def test_errors(cnn, images):
    single, _ = zoo.linear_model([1.0, 2.0])
    with pytest.raises(ValueError, match=r"outputs \[B, C\]"):
        agi(single, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="callable"):
        agi(cnn, images, lambda o: o[:, 0])
    with pytest.raises(ValueError, match="k=9"):
        agi(cnn, images, 0, k=9)
    with pytest.raises(ValueError, match="false_classes"):
        agi(cnn, images, 0, false_classes=[7])
    with pytest.raises(ValueError, match="epsilon"):
        agi(cnn, images, 0, epsilon=-0.1)
    with pytest.raises(ValueError, match="clip"):
        agi(cnn, images, 0, clip=(1.0, 0.0))
    with pytest.raises(ValueError, match="class_selection"):
        agi(cnn, images, 0, class_selection="top")


def test_no_box_by_default_and_a_given_box_must_hold_the_inputs(cnn):
    """Issue 18 item 2: inputs in [-1, 1] (standardised) were moved into the old default box (0, 1) at
    the first step, silently. Now the walk has no box unless one is given, and a box that does not
    hold the inputs is refused, naming clip=."""
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (2, 8, 8, 3)).astype(np.float32)
    fc = np.array([[1, 3], [0, 4]])
    attr = agi(cnn, x, [0, 2], false_classes=fc, max_iter=4).numpy()
    for b in range(2):
        free = agi_restated(cnn, x[b], [0, 2][b], fc[b], 0.05, 4, False)
        boxed = agi_restated(cnn, x[b], [0, 2][b], fc[b], 0.05, 4, False, clip=(0.0, 1.0))
        assert np.abs(attr[b] - free).max() <= 1e-5 * np.abs(free).max()
        assert np.abs(boxed - free).max() > 0.1 * np.abs(free).max()  # the old default was far off
    with pytest.raises(ValueError, match=r"clip=.*outside"):
        agi(cnn, x, 0, k=1, clip=(0.0, 1.0))
    inside = agi(cnn, x, [0, 2], false_classes=fc, max_iter=4, clip=(-1.0, 1.0)).numpy()
    for b in range(2):
        ref = agi_restated(cnn, x[b], [0, 2][b], fc[b], 0.05, 4, False, clip=(-1.0, 1.0))
        assert np.abs(inside[b] - ref).max() <= 1e-5 * np.abs(ref).max()
