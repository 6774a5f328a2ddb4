"""IDGI over IG, Guided IG and Blur IG: the spec's vectors, parity with a numpy re-statement of the
released function on the paths' own (gradient, output) lists, the linear-model reduction, exact
completeness, batching and errors (specs/idgi_sig.md part A)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage as ndi

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo
from tf_pathattr.testing import reference

idgi = tpa.important_direction_gradient_integration


def idgi_released(gradients, predictions):
    """Re-statement of yangruo1226/IDGI ``IDGI(Gradients, Predictions)`` (one example, float64)."""
    assert len(gradients) == len(predictions)
    out = np.zeros_like(np.asarray(gradients[0], np.float64))
    for j in range(len(gradients) - 1):  # the last gradient has no following output change
        d = float(predictions[j + 1]) - float(predictions[j])
        sq = np.asarray(gradients[j], np.float64) ** 2
        out += sq * d / sq.sum()
    return out


def grad_and_score(model, target):
    @tf.function
    def fn(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = model(z, training=False)[:, target]
        return tape.gradient(s, z), s

    def call(z):
        g, s = fn(tf.constant(np.asarray(z, np.float32)[None]))
        return g.numpy()[0], float(s.numpy()[0])

    return call


@pytest.fixture(scope="module")
def cnn():
    return zoo.smooth_cnn(8, classes=5)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)


def additive(z):
    return z[:, 0:1] ** 2 + 3.0 * z[:, 1:2]


# ------------------------------------------------------------------------------------------------
# spec A.7 / A.8 vectors


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (0.0, 4.0)),
        (2, (0.225, 3.775)),
        (4, (0.369088, 3.630912)),
        (16, (0.486207, 3.513793)),
        (128, (0.521524, 3.478476)),
    ],
)
def test_additive_model_vectors(n, expected):
    attr, delta = idgi(additive, np.ones((1, 2), np.float32), None, n_steps=n, return_convergence_delta=True)
    np.testing.assert_allclose(attr.numpy()[0], expected, atol=2e-6)
    assert abs(float(delta[0])) < 1e-5  # sum = 4 = F(x) - F(0) for every n


@pytest.mark.parametrize("baseline, expected", [(0.0, (1 / 3, 4 / 3, 1 / 3)), ([0.0, 0.0, 1.0], (0.5, 2.0, 0.5))])
def test_linear_vectors_credit_unmoved_features(baseline, expected):
    model, _ = zoo.linear_model([1.0, 2.0, -1.0], bias=0.1)
    base = np.asarray(baseline, np.float32)
    attr = idgi(model, np.ones((1, 3), np.float32), None, n_steps=7, baseline=base)
    np.testing.assert_allclose(attr.numpy()[0], expected, rtol=1e-6)


def test_zero_gradient_steps_skip_or_nan():
    relu = lambda z: tf.nn.relu(z[:, 0:1] + z[:, 1:2] - 1.0)  # noqa: E731
    x = np.ones((1, 2), np.float32)
    attr, delta = idgi(relu, x, None, n_steps=3, return_convergence_delta=True)
    # outputs (0, 0, 1/3, 1), gradients (0,0), (0,0), (1,1): step 1 -> 2 has d = 1/3 but no gradient
    np.testing.assert_allclose(attr.numpy()[0], [1 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(delta.numpy(), [-1 / 3], rtol=1e-6)  # the lost output change
    assert np.all(np.isnan(idgi(relu, x, None, n_steps=3, zero_gradient="nan").numpy()))


# ------------------------------------------------------------------------------------------------
# parity with the released function, per wrapped method


def test_parity_ig(cnn, images):
    n, target = 12, 2
    ours = idgi(cnn, images, target, n_steps=n, baseline=0.1).numpy()
    call = grad_and_score(cnn, target)
    for b in range(len(images)):
        x, base = images[b], np.full_like(images[b], 0.1)
        gs, ps = [], []
        for k in range(n + 1):
            z = x if k == n else base + np.float32(k / n) * (x - base)
            g, p = call(z)
            gs.append(g)
            ps.append(p)
        ref = idgi_released(gs, ps)
        assert np.abs(ours[b] - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("max_dist, fraction", [(1.0, 0.25), (0.1, 0.5)])
def test_parity_guided_ig(cnn, images, max_dist, fraction):
    steps, target = 15, 1
    ours = idgi(
        cnn,
        images[:2],
        target,
        base_method="guided_ig",
        n_steps=steps,
        max_dist=max_dist,
        fraction=fraction,
        parity=True,
    ).numpy()
    call = grad_and_score(cnn, target)
    for b in range(2):
        x = images[b].astype(np.float64)
        points = []

        def cmf(x_batch, call_model_args=None, expected_keys=None):
            points.append(np.array(x_batch[0], np.float64))
            g, _ = call(x_batch[0])
            return {reference.saliency.INPUT_OUTPUT_GRADIENTS: g[None].astype(np.float64)}

        reference.saliency.GuidedIG().GetMask(
            x, cmf, x_steps=steps, x_baseline=np.zeros_like(x), max_dist=max_dist, fraction=fraction
        )
        assert len(points) == steps
        gs, ps = zip(*[call(z) for z in points + [x]])
        ref = idgi_released(gs, ps)
        assert np.abs(ours[b] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_parity_blur_ig(cnn, images):
    steps, max_sigma, target = 10, 3.0, 4
    ours = idgi(cnn, images[:2], target, base_method="blur_ig", n_steps=steps, max_sigma=max_sigma).numpy()
    call = grad_and_score(cnn, target)
    for b in range(2):
        x = images[b].astype(np.float64)
        points = []

        def cmf(x_batch, call_model_args=None, expected_keys=None):
            points.append(np.array(x_batch[0], np.float64))
            g, _ = call(x_batch[0])
            return {reference.saliency.INPUT_OUTPUT_GRADIENTS: g[None].astype(np.float64)}

        reference.saliency.BlurIG().GetMask(x, cmf, max_sigma=max_sigma, steps=steps, batch_size=1)
        end = ndi.gaussian_filter(x, sigma=[max_sigma, max_sigma, 0], mode="constant")
        gs, ps = zip(*[call(z) for z in points + [end]])
        ref = -idgi_released(gs, ps)  # the points run from x towards blur; IDGI runs from blur to x
        assert np.abs(ours[b] - ref).max() <= 1e-5 * np.abs(ref).max()


def test_multi_input_norm_runs_over_all_inputs():
    a = keras.Input((3,))
    c = keras.Input((2,))
    h = keras.layers.Concatenate()([a, c])
    out = keras.layers.Dense(1, activation="tanh")(keras.layers.Dense(4, activation="tanh")(h))
    keras.utils.set_random_seed(3)
    model = keras.Model([a, c], out)
    xa = np.array([[0.5, -1.0, 2.0]], np.float32)
    xc = np.array([[1.5, 0.3]], np.float32)
    n = 6
    ours = idgi(model, [xa, xc], None, n_steps=n)

    @tf.function
    def gs_fn(za, zc):
        with tf.GradientTape() as tape:
            tape.watch([za, zc])
            s = model([za, zc])[:, 0]
        ga, gc = tape.gradient(s, [za, zc])
        return tf.concat([ga, gc], 1), s

    gs, ps = [], []
    for k in range(n + 1):
        al = np.float32(k / n)
        g, s = gs_fn(tf.constant(al * xa), tf.constant(al * xc))
        gs.append(g.numpy()[0])
        ps.append(float(s.numpy()[0]))
    ref = idgi_released(gs, ps)
    np.testing.assert_allclose(np.concatenate([ours[0].numpy()[0], ours[1].numpy()[0]]), ref, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# linear models, completeness, batching


@pytest.mark.parametrize(
    "base_method, opts",
    [("ig", {}), ("guided_ig", {"max_dist": 1.0, "fraction": 0.3}), ("blur_ig", {"max_sigma": 2.0})],
)
def test_linear_model_closed_form(base_method, opts):
    """F = w.z + b: IDGI = (F(x) - F(path start)) w^2 / ||w||^2 whatever the path (spec A.6)."""
    rng = np.random.default_rng(2)
    w = rng.normal(size=(4, 4, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w.reshape(-1, 1), np.array([0.3], np.float32)])
    x = rng.random((2, 4, 4, 2)).astype(np.float32)
    attr, delta = idgi(model, x, None, base_method=base_method, n_steps=9, return_convergence_delta=True, **opts)
    f = model(x).numpy()[:, 0]
    start = np.zeros_like(x) if base_method != "blur_ig" else tpa.methods.blur_ig.gaussian_blur(x, 2.0).numpy()
    f0 = model(start).numpy()[:, 0]
    expected = (f - f0)[:, None, None, None] * w[None] ** 2 / np.sum(w**2)
    np.testing.assert_allclose(attr.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(delta.numpy()) <= 1e-5 * np.abs(f - f0))


def test_linear_model_equals_ig_when_the_step_is_along_w():
    model, w = zoo.linear_model([0.5, -2.0, 1.0])
    x = (3.0 * w[:, 0])[None].astype(np.float32)  # x - 0 parallel to w
    ig = tpa.integrated_gradients(model, x, None, n_steps=4).numpy()
    for base in ("ig", "guided_ig"):
        np.testing.assert_allclose(idgi(model, x, None, base_method=base, n_steps=5).numpy(), ig, rtol=1e-5)


@pytest.mark.parametrize("base_method, opts", [("ig", {}), ("guided_ig", {}), ("blur_ig", {"max_sigma": 2.0})])
def test_exact_completeness_and_batch_equals_single(cnn, images, base_method, opts):
    attr, delta = idgi(cnn, images, None, base_method=base_method, n_steps=6, return_convergence_delta=True, **opts)
    total = np.abs(attr.numpy()).reshape(3, -1).sum(1)
    assert np.all(np.abs(delta.numpy()) <= 1e-5 * total)  # telescoping: no quadrature error
    pred = np.argmax(cnn(images).numpy(), 1)
    for b in (0, 2):
        one = idgi(cnn, images[b : b + 1], int(pred[b]), base_method=base_method, n_steps=6, **opts).numpy()
        assert np.abs(one[0] - attr.numpy()[b]).max() <= 1e-5 * np.abs(one).max()


def test_chunking_and_registry_dispatch(cnn, images):
    a = idgi(cnn, images, 1, n_steps=7).numpy()
    b = idgi(cnn, images, 1, n_steps=7, internal_batch_size=3).numpy()  # one point per call
    c = tpa.attribute(cnn, images, 1, method="idgi", n_steps=7).numpy()
    d = tpa.integrated_gradients(cnn, images, 1, n_steps=7, idgi=True).numpy()
    assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, d)


def test_errors(cnn, images):
    with pytest.raises(ValueError, match="base_method"):
        idgi(cnn, images, 0, base_method="expected_gradients")
    with pytest.raises(ValueError, match="zero_gradient"):
        idgi(cnn, images, 0, zero_gradient="ignore")
    with pytest.raises(ValueError, match="rule="):
        idgi(cnn, images, 0, rule="riemann_trapezoid")
    with pytest.raises(ValueError, match="one baseline"):
        idgi(cnn, images, 0, baseline=np.zeros((2,) + images.shape, np.float32))
    with pytest.raises(ValueError, match="layer="):
        idgi(cnn, images, 0, base_method="blur_ig", layer="dense")
    with pytest.raises(ValueError, match="auto"):
        tpa.integrated_gradients(cnn, images, 0, n_steps="auto", idgi=True)
    with pytest.raises(TypeError, match="idgi"):
        tpa.integrated_gradients(cnn, images, 0, idgi="yes")


def test_layer_attribution_through_ig():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4, name="emb")(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(8, activation="tanh")(h)))
    ids = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 1]], np.int32)
    attr, delta = idgi(model, ids, 1, layer="emb", n_steps=8, return_convergence_delta=True)
    acts = tpa.layer_activations(model, "emb", ids).numpy()
    head = keras.Model(model.get_layer("emb").output, model.output)  # the rest of the model on activations
    ref = idgi(head, acts, 1, n_steps=8).numpy()
    np.testing.assert_allclose(attr.numpy(), ref, rtol=1e-5, atol=1e-8)
    assert np.all(np.abs(delta.numpy()) < 1e-5)
