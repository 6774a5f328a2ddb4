"""Maximum Entropy Baseline (``tpa.baselines.uniform`` / ``maximum_entropy``), spec B.2-B.3.

Other baseline recipes are tested in ``test_baselines_common.py``.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


def test_meb_draws_lie_in_per_feature_box_and_are_seeded(rng):
    x = tf.zeros((3, 6, 5, 3))
    low, high = np.array([0.0, -1.0, 2.0]), np.array([1.0, 1.0, 255.0])  # per-channel bounds
    meb = tpa.baselines.maximum_entropy(low, high, n=4, seed=11)
    d = meb.draw(x).numpy()
    assert d.shape == (4, 3, 6, 5, 3)
    assert np.all(d >= low) and np.all(d <= high)
    for c in range(3):  # each channel spreads over its own box
        assert d[..., c].max() - d[..., c].min() > 0.8 * (high[c] - low[c])
    np.testing.assert_array_equal(d, tpa.baselines.uniform(low, high, n=4, seed=11).draw(x).numpy())
    assert not np.allclose(d, tpa.baselines.uniform(low, high, n=4, seed=12).draw(x).numpy())
    assert all(not np.allclose(d[i], d[j]) for i in range(4) for j in range(i))  # different k differ
    # draw k does not depend on n, and is the documented stateless draw
    np.testing.assert_array_equal(d[:2], tpa.baselines.uniform(low, high, n=2, seed=11).draw(x).numpy())
    u = tf.random.stateless_uniform((3, 6, 5, 3), seed=[11, 2]).numpy()
    np.testing.assert_allclose(d[2], low + u * (high - low), rtol=1e-6)
    # per-feature bounds with the example's full shape
    lo_f = rng.uniform(-2, 0, (6, 5, 3)).astype(np.float32)
    hi_f = lo_f + rng.uniform(0.1, 3, (6, 5, 3)).astype(np.float32)
    df = tpa.baselines.uniform(lo_f, hi_f, n=3, seed=1).draw(x).numpy()
    assert np.all(df >= lo_f) and np.all(df <= hi_f)


def test_meb_statistics_continuous_and_discrete():
    n = 200_000
    x = tf.zeros((n, 2))
    lo, hi = np.array([-1.0, 10.0]), np.array([3.0, 11.0])
    d = tpa.baselines.uniform(lo, hi, seed=5).draw(x).numpy()[0].astype(np.float64)
    mean_se = d.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(d.mean(axis=0) - (lo + hi) / 2) < 4 * mean_se)
    sq = (d - d.mean(axis=0)) ** 2
    assert np.all(np.abs(sq.mean(axis=0) - (hi - lo) ** 2 / 12) < 4 * sq.std(axis=0) / np.sqrt(n))
    # discrete uniform on {0..255}: integers, every value present, mean 127.5, var (256^2 - 1)/12
    dd = tpa.baselines.uniform(0, 255, seed=2, discrete=True).draw(tf.zeros((n, 1))).numpy().ravel()
    assert np.all(dd == np.round(dd)) and dd.min() == 0 and dd.max() == 255
    assert len(np.unique(dd)) == 256
    assert abs(dd.mean() - 127.5) < 4 * dd.std() / np.sqrt(n)
    sq = (dd - dd.mean()) ** 2
    assert abs(sq.mean() - (256**2 - 1) / 12) < 4 * sq.std() / np.sqrt(n)
    counts = np.bincount(dd.astype(int), minlength=256)
    expected = n / 256
    assert ((counts - expected) ** 2 / expected).sum() < 256 + 6 * np.sqrt(2 * 255)  # chi-square, 255 dof


def test_meb_errors():
    with pytest.raises(ValueError, match="high > low"):
        tpa.baselines.uniform(1.0, 0.0)
    with pytest.raises(ValueError, match="integers"):
        tpa.baselines.uniform(0.5, 10, discrete=True)
    with pytest.raises(ValueError, match="broadcast"):
        tpa.baselines.uniform(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="broadcast to one example"):
        tpa.baselines.uniform(np.zeros(4), np.ones(4)).draw(tf.zeros((2, 5, 5, 3)))


def test_meb_ig_completeness_per_draw_and_average(rng):
    model = zoo.smooth_cnn(8, seed=2)
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    meb = tpa.baselines.maximum_entropy(0.0, 1.0, n=3, seed=4)
    draws = meb.draw(x).numpy()  # [3, B, 8, 8, 3]
    cls = np.argmax(model(x).numpy(), axis=1)
    f = lambda z: model(z, training=False).numpy()[np.arange(2), cls].astype(np.float64)  # noqa: E731
    per_draw = []
    for k in range(3):
        a = tpa.integrated_gradients(model, x, cls, baseline=draws[k], n_steps=32).numpy()
        gap = a.reshape(2, -1).sum(1) - (f(x) - f(draws[k]))
        assert np.all(np.abs(gap) < 1e-4 * np.abs(f(x) - f(draws[k])).max() + 1e-6)
        per_draw.append(a)
    avg, delta = tpa.integrated_gradients(model, x, cls, baseline=meb, n_steps=32, return_convergence_delta=True)
    np.testing.assert_allclose(avg.numpy(), np.mean(per_draw, axis=0), rtol=1e-4, atol=1e-7)
    target = f(x) - np.mean([f(draws[k]) for k in range(3)], axis=0)
    np.testing.assert_allclose(avg.numpy().reshape(2, -1).sum(1), target, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(delta.numpy()) < 1e-4 * np.abs(target).max() + 1e-6)


def test_meb_linear_transformation_invariance(rng):
    """IG(F o T, p, p') == IG(F, T(p), T(p')) with the same raw MEB draw p', T(u) = (u - mu) / s."""
    net = zoo.smooth_cnn(8, seed=3)
    mu = np.array([0.485, 0.456, 0.406], np.float32)
    s = np.array([0.229, 0.224, 0.225], np.float32)
    T = lambda u: (u - mu) / s  # noqa: E731
    inp = keras.Input((8, 8, 3))
    f_of_t = keras.Model(inp, net(keras.layers.Lambda(T)(inp)))
    p = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    cls = np.argmax(net(T(p)).numpy(), axis=1)
    raw = tpa.baselines.maximum_entropy(0.0, 1.0, n=2, seed=9)
    normed = tpa.baselines.maximum_entropy(0.0, 1.0, n=2, seed=9, preprocess=T)
    np.testing.assert_allclose(normed.draw(p).numpy(), T(raw.draw(p).numpy()), rtol=1e-6, atol=1e-6)
    for rule in ("gausslegendre", "riemann_right"):
        a_raw = tpa.integrated_gradients(f_of_t, p, cls, baseline=raw, n_steps=16, rule=rule).numpy()
        a_norm = tpa.integrated_gradients(net, T(p), cls, baseline=normed, n_steps=16, rule=rule).numpy()
        scale = np.abs(a_raw).max()
        np.testing.assert_allclose(a_raw, a_norm, rtol=1e-4, atol=1e-5 * scale)
        assert np.abs(a_raw - a_norm).max() / scale < 1e-5


@pytest.mark.parametrize(
    "name",
    [
        "integrated_gradients",
        "guided_integrated_gradients",
        "integrated_decision_gradients",
        "split_integrated_gradients",
    ],
)
def test_methods_with_a_random_baseline_recipe_take_seed(name):
    # issue 9 defect 13: seed= reaches the recipe's stateless draws (None keeps the recipe's own seed)
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)])
    x = np.random.default_rng(0).random((2, 6)).astype(np.float32)

    def run(**kw):
        out = tpa.attribute(model, x, 1, method=name, n_steps=6, baseline=tpa.baselines.uniform(0.0, 1.0), **kw)
        return (out[0] if isinstance(out, tuple) else out).numpy()

    a, b, c = run(seed=1), run(seed=1), run(seed=2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3 * np.abs(a).max()
    # seed=None keeps the recipe's seed: the same as passing the recipe's seed (0) explicitly
    np.testing.assert_array_equal(run(), run(seed=0))


def _hidden_layer_model():
    """zoo.dense_head with a nonzero hidden bias: the hidden layer's output at a zero input,
    tanh(b1), is not zero (so captum's layer baseline differs from zeros in the layer's space)."""
    from tf_pathattr.testing import models as zoo

    model = zoo.dense_head(3, classes=2, hidden=4, seed=0)
    hidden = model.layers[0]
    w, _ = hidden.get_weights()
    hidden.set_weights([w, np.array([0.7, -0.4, 0.3, 1.1], np.float32)])
    return model, hidden


def test_zero_input_layer_baseline_is_the_activation_at_a_zero_input():
    """Issue 18 item 10: baseline="zero_input" with layer= is captum's layer baseline, the layer's
    activation at an all-zero model input. The head after the layer is linear, so layer IG has the
    closed form w_c * (h(x) - h(0)) and sums to F(x) - F(0 input)."""
    model, hidden = _hidden_layer_model()
    x = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    w1, b1 = hidden.get_weights()
    w2, b2 = model.layers[1].get_weights()
    h_x, h_0 = np.tanh(x @ w1 + b1), np.tanh(b1)
    closed = w2[:, 1] * (h_x - h_0)
    attr, delta = tpa.integrated_gradients(
        model, x, 1, layer=hidden, baseline="zero_input", n_steps=8, return_convergence_delta=True
    )
    np.testing.assert_allclose(attr.numpy(), closed, rtol=1e-5, atol=1e-6)
    gap = model(x).numpy()[:, 1] - model(np.zeros_like(x)).numpy()[:, 1]
    np.testing.assert_allclose(attr.numpy().sum(1), gap, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta.numpy(), 0.0, atol=1e-5)
    # the default layer baseline is zeros in the layer's space: a different answer here
    zeros = tpa.integrated_gradients(model, x, 1, layer=hidden, n_steps=8).numpy()
    np.testing.assert_allclose(zeros, w2[:, 1] * h_x, rtol=1e-5, atol=1e-6)
    assert np.abs(zeros - closed).max() > 0.1


def test_zero_input_without_layer_is_refused():
    model, _ = _hidden_layer_model()
    with pytest.raises(ValueError, match="zero_input.*layer="):
        tpa.integrated_gradients(model, np.ones((2, 3), np.float32), 1, baseline="zero_input")
