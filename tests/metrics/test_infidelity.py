"""Infidelity and max-sensitivity: closed forms (metrics_faithfulness.md 1.7, 2.6), a numpy
re-statement of the estimator, and captum's own code on the same perturbations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_pathattr.metrics import infidelity, sensitivity_max

W = np.array([0.5, -1.0, 2.0])
X = np.array([[1.0, 2.0, -1.0]])
I_K = np.array([[0.1, 0.0, -0.2], [-0.3, 0.2, 0.1], [0.05, -0.1, 0.4]])


def linear(bias=0.1):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[-1].set_weights([W[:, None].astype(np.float32), np.array([bias], np.float32)])
    return model


def pair():
    i = I_K[:, None, :]
    return i, X[None] - i


@pytest.mark.parametrize(
    "phi, normalize, mbi, baseline, expect",
    [
        (W, False, False, 0.0, 0.0),
        (2 * W, False, False, 0.0, 0.333542),
        (2 * W, True, False, 0.0, 0.0),
    ],
)
def test_linear_closed_forms_with_given_perturbations(phi, normalize, mbi, baseline, expect):
    r = infidelity(
        linear(),
        X.astype(np.float32),
        phi[None],
        perturbation=pair(),
        normalize=normalize,
        multiply_by_inputs=mbi,
        baseline=baseline,
    )
    assert r.infidelity[0] == pytest.approx(expect, abs=2e-6)
    assert r.score == "output"


def test_decorator_semantic_multiply_by_inputs():
    model = linear()
    x_tilde = X[None] - I_K[:, None, :]  # only x~ given: I from the decorator rule
    r = infidelity(model, X.astype(np.float32), (W * X), perturbation=x_tilde, multiply_by_inputs=True, baseline=0.0)
    assert r.infidelity[0] == pytest.approx(0.0, abs=1e-10)
    base = np.array([0.0, 2.0, 0.0])  # the second feature has x = x' = 2: denominator 1, Phi 0 there
    r2 = infidelity(
        model, X.astype(np.float32), W * (X - base), perturbation=x_tilde, multiply_by_inputs=True, baseline=base
    )
    assert r2.infidelity[0] == pytest.approx(0.016667, abs=1e-5)


def test_quadratic_closed_forms():
    def f(v):
        return tf.reduce_sum(v * v, axis=-1)

    r = infidelity(f, X.astype(np.float32), 2 * X, perturbation=pair(), multiply_by_inputs=False)
    assert r.infidelity[0] == pytest.approx(0.0172854, rel=1e-5)
    rn = infidelity(f, X.astype(np.float32), 2 * X, perturbation=pair(), multiply_by_inputs=False, normalize=True)
    assert rn.infidelity[0] == pytest.approx(0.0118671, rel=1e-5)
    assert rn.beta[0] == pytest.approx(1.101752, rel=1e-5)


def numpy_infidelity(f, x, phi, x_tilde, baseline, noise_mbi, normalize):
    """Re-statement from the paper / captum docs: a_k = sum Phi I_k, b_k = f(x) - f(x~_k)."""
    out = []
    for b in range(x.shape[0]):
        i = x[b][None] - x_tilde[:, b]
        if noise_mbi:
            den = x[b] - baseline
            i = i / np.where(den == 0, 1.0, den)
        a = (i * phi[b][None]).reshape(len(i), -1).sum(1)
        bb = f(x[b][None])[0] - f(x_tilde[:, b])
        if normalize:
            beta = (a * bb).sum() / (a * a).sum()
            out.append(np.mean((beta * a - bb) ** 2))
        else:
            out.append(np.mean((a - bb) ** 2))
    return np.asarray(out)


def test_named_perturbation_matches_numpy_and_is_stateless(smooth_cnn):
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16, 3)).astype(np.float32)
    phi = rng.normal(size=x.shape)
    r = infidelity(smooth_cnn, x, phi, 2, n_perturb_samples=6, seed=3, clip=(0.0, 1.0), noise_scale=0.2)
    r2 = infidelity(
        smooth_cnn, x, phi, 2, n_perturb_samples=6, seed=3, clip=(0.0, 1.0), noise_scale=0.2, batch_size=4
    )  # other chunking: same draws
    np.testing.assert_allclose(r2.infidelity, r.infidelity, rtol=1e-6)
    # re-draw the same noisy baselines: sample k uses seed [seed, k]
    eps = np.stack([tf.random.stateless_normal(x.shape, seed=[3, k]).numpy() for k in range(6)])
    x_tilde = np.clip(0.0 + 0.2 * eps, 0.0, 1.0)

    def f(v):
        return np.asarray(smooth_cnn(v.astype(np.float32)), np.float64)[:, 2]

    exp = numpy_infidelity(f, x.astype(np.float64), phi, x_tilde, 0.0, True, False)
    np.testing.assert_allclose(r.infidelity, exp, rtol=2e-4)


# --- captum parity -----------------------------------------------------------------------------------------


def mlp_pair(seed=0):
    torch = pytest.importorskip("torch")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(3)])
    (w1, b1), (w2, b2) = model.layers[0].get_weights(), model.layers[1].get_weights()

    class Net(torch.nn.Module):
        def forward(self, v):
            h = torch.tanh(v @ torch.tensor(w1) + torch.tensor(b1))
            return h @ torch.tensor(w2) + torch.tensor(b2)

    return model, Net()


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("mbi", [False, True])
def test_infidelity_equals_captum(normalize, mbi):
    torch = pytest.importorskip("torch")
    cm = pytest.importorskip("captum.metrics")
    model, net = mlp_pair()
    rng = np.random.default_rng(1)
    b, n = 3, 7
    x = rng.normal(size=(b, 5)).astype(np.float32)
    phi = rng.normal(size=x.shape).astype(np.float32)
    base = rng.normal(size=(1, 5)).astype(np.float32) * 0.1
    x_tilde = (base[None] + 0.3 * rng.normal(size=(n, b, 5))).astype(np.float32)
    target = np.array([0, 2, 1])
    ours = infidelity(
        model, x, phi, target, perturbation=x_tilde, multiply_by_inputs=mbi, baseline=base, normalize=normalize
    )
    inter = torch.tensor(x_tilde.transpose(1, 0, 2).reshape(b * n, 5))  # captum rows: example-major

    if mbi:

        @cm.infidelity_perturb_func_decorator(True)
        def perturb(inputs, baselines):
            return inter
    else:

        @cm.infidelity_perturb_func_decorator(False)
        def perturb(inputs):
            return inter

    theirs = cm.infidelity(
        net,
        perturb,
        torch.tensor(x),
        torch.tensor(phi),
        baselines=torch.tensor(base) if mbi else None,
        target=torch.tensor(target),
        n_perturb_samples=n,
        normalize=normalize,
    )
    np.testing.assert_allclose(ours.infidelity, theirs.numpy(), rtol=1e-4, atol=1e-7)


def test_sensitivity_closed_forms():
    model = linear(0.0)
    deltas = np.array([[0.02, -0.01, 0.015], [-0.02, 0.02, 0.0], [0.01, 0.01, -0.02]])[:, None, :]

    def grad(m, v, t):
        return np.broadcast_to(W, np.shape(v))

    def input_x_grad(m, v, t):
        return np.asarray(v) * W

    r = sensitivity_max(grad, model, X.astype(np.float32), perturbations=deltas)
    assert r.sensitivity[0] == pytest.approx(0.0, abs=1e-12)
    r = sensitivity_max(input_x_grad, model, X.astype(np.float32), perturbations=deltas)
    np.testing.assert_allclose(r.ratios[0], [0.011547, 0.007785, 0.014460], atol=2e-6)
    assert r.sensitivity[0] == pytest.approx(0.014460, abs=2e-6)


def test_sensitivity_equals_captum_with_registered_method():
    torch = pytest.importorskip("torch")
    cm = pytest.importorskip("captum.metrics")
    from captum.attr import InputXGradient

    model, net = mlp_pair(2)
    rng = np.random.default_rng(3)
    b, n = 2, 5
    x = rng.normal(size=(b, 5)).astype(np.float32)
    deltas = rng.uniform(-0.05, 0.05, size=(n, b, 5)).astype(np.float32)
    target = np.array([1, 2])

    def ixg(m, v, t):
        v = tf.constant(v, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(v)
            s = tf.gather(m(v), tf.constant(t), axis=1, batch_dims=1)
        return (v * tape.gradient(s, v)).numpy()

    ours = sensitivity_max(ixg, model, x, target, perturbations=deltas)
    inter = torch.tensor(deltas.transpose(1, 0, 2).reshape(b * n, 5))

    def perturb(inputs, radius):
        return inputs + inter

    theirs = cm.sensitivity_max(
        InputXGradient(net).attribute,
        torch.tensor(x),
        perturb_func=perturb,
        n_perturb_samples=n,
        target=torch.tensor(target),
    )
    np.testing.assert_allclose(ours.sensitivity, theirs.numpy(), rtol=1e-4)
    # a registered method by name runs too (gradients of the predicted class)
    r = sensitivity_max("gradients", model, x, n_perturb_samples=3, seed=0)
    assert r.ratios.shape == (b, 3) and np.all(np.isfinite(r.sensitivity))


def test_sensitivity_excludes_changed_predictions():
    model = linear(0.0)  # one unit: decision z >= 0
    x = np.array([[0.01, 0.0, 0.0]], np.float32)  # z = 0.005, a small push flips it
    deltas = np.array([[[0.0, 0.0, 0.0]], [[0.0, 0.01, 0.0]]], np.float32)  # second: z = -0.005

    def ixg(m, v, t):
        return np.asarray(v) * W

    r = sensitivity_max(ixg, model, x, perturbations=deltas, exclude_changed_predictions=True)
    assert r.ratios[0, 0] == pytest.approx(0.0) and np.isnan(r.ratios[0, 1])
