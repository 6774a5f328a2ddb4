"""SmoothTaylor: exact formula with injected noise, Taylor identities, Stein's identity, seeding,
chunk independence, tracing, and the adaptive-noising search against a restatement of the
released pseudo-code."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods.smooth_taylor import smooth_taylor
from tf_pathattr.metrics import total_variation
from tf_pathattr.testing import models as zoo


def _grads_at(model, z, cls):
    """Reference gradient of the logit ``cls[b]`` for rows ``z`` ``[N, B, *S]`` (direct tape, no engine)."""
    n, b = z.shape[:2]
    zz = tf.constant(z.reshape((n * b,) + z.shape[2:]), tf.float32)
    idx = np.tile(np.asarray(cls), n)
    with tf.GradientTape() as tape:
        tape.watch(zz)
        y = model(zz, training=False)
        s = tf.reduce_sum(tf.gather(y, idx, axis=1, batch_dims=1))
    return tape.gradient(s, zz).numpy().reshape(z.shape).astype(np.float64)


def _reference_st(model, x, eps, sigma, cls):
    """``-sigma * mean_n(eps_n * grad F(x + sigma eps_n))`` in numpy (float64 accumulation)."""
    sig = np.asarray(sigma, np.float64).reshape((1, -1) + (1,) * (x.ndim - 1))
    z = (x[None] + sig * eps).astype(np.float32)
    g = _grads_at(model, z, cls)
    return (-sig * eps * g).mean(axis=0)


@pytest.fixture
def cnn16():
    return zoo.smooth_cnn(16)


def test_formula_with_injected_noise_matches_numpy(toy_cnn, rng):
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    eps = rng.standard_normal((7, 2, 8, 8, 3)).astype(np.float32)
    cls = np.argmax(toy_cnn(x).numpy(), axis=1)
    for sigma in (0.3, np.array([0.2, 0.7], np.float32)):
        st = smooth_taylor(toy_cnn, x, noise=eps, noise_scale=sigma, internal_batch_size=6).numpy()
        ref = _reference_st(toy_cnn, x, eps, sigma, cls)
        np.testing.assert_allclose(st, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    # explicit integer targets and percent scaling
    ptp = np.ptp(x.reshape(2, -1), axis=1)
    st = smooth_taylor(toy_cnn, x, [1, 2], noise=eps, noise_scale=0.1, percent=True).numpy()
    ref = _reference_st(toy_cnn, x, eps, 0.1 * ptp, [1, 2])
    np.testing.assert_allclose(st, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_multi_input_with_injected_noise(rng):
    keras.utils.set_random_seed(1)
    a, b = keras.Input((3,)), keras.Input((2,))
    h = keras.layers.Concatenate()([a, b])
    out = keras.layers.Dense(2)(keras.layers.Dense(5, activation="tanh")(h))
    model = keras.Model([a, b], out)
    xa, xb = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)
    ea, eb = rng.standard_normal((5, 2, 3)).astype(np.float32), rng.standard_normal((5, 2, 2)).astype(np.float32)
    st = smooth_taylor(model, [xa, xb], 1, noise=[ea, eb], noise_scale=0.4)
    za, zb = (xa[None] + 0.4 * ea).reshape(10, 3), (xb[None] + 0.4 * eb).reshape(10, 2)
    za, zb = tf.constant(za), tf.constant(zb)
    with tf.GradientTape() as tape:
        tape.watch([za, zb])
        s = tf.reduce_sum(model([za, zb])[:, 1])
    ga, gb = (g.numpy().reshape(5, 2, -1) for g in tape.gradient(s, [za, zb]))
    np.testing.assert_allclose(st[0], (-0.4 * ea * ga).mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(st[1], (-0.4 * eb * gb).mean(0), rtol=1e-4, atol=1e-7)


def test_linear_model_sum_equals_f_x_minus_mean_f_roots(rng):
    w = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 0.3], [-1.5, 1.0]], np.float32)
    model, W = zoo.linear_model(w, bias=0.2)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    eps = rng.standard_normal((50, 3, 4)).astype(np.float32)
    st, delta = smooth_taylor(model, x, 0, noise=eps, noise_scale=0.7, return_convergence_delta=True)
    z = x[None].astype(np.float64) + 0.7 * eps
    f_x = x.astype(np.float64) @ W[:, 0] + 0.2
    f_z = (z @ W[:, 0] + 0.2).mean(axis=0)
    np.testing.assert_allclose(st.numpy().sum(axis=1), f_x - f_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(delta.numpy(), 0.0, atol=1e-5)
    # dummy feature (w = 0 for class 1 on feature 1) gets exactly zero
    st1 = smooth_taylor(model, x, 1, noise=eps, noise_scale=0.7).numpy()
    assert np.all(st1[:, 1] == 0.0)


def _quadratic(A, b):
    A_t, b_t = tf.constant(A, tf.float32), tf.constant(b, tf.float32)
    d = A.shape[0]
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Lambda(
                lambda z: 0.5 * tf.reduce_sum(z * tf.matmul(z, A_t), -1, keepdims=True) + tf.matmul(z, b_t[:, None])
            ),
        ]
    )


QA = np.array([[1.2, 0.3, 0.0, -0.2], [0.3, 0.4, 0.1, 0.0], [0.0, 0.1, -0.6, 0.2], [-0.2, 0.0, 0.2, -0.7]])
QB = np.array([0.5, -0.3, 0.2, 0.1])


def test_quadratic_taylor_remainder_identity(rng):
    model = _quadratic(QA, QB)
    x = rng.normal(size=(2, 4)).astype(np.float32)
    eps = rng.standard_normal((40, 2, 4)).astype(np.float32)
    sigma = 0.3
    _, delta = smooth_taylor(model, x, noise=eps, noise_scale=sigma, return_convergence_delta=True)
    d = sigma * eps.astype(np.float64)
    remainder = -0.5 * np.einsum("nbi,ij,nbj->nb", d, QA, d).mean(axis=0)
    np.testing.assert_allclose(delta.numpy(), remainder, rtol=1e-3, atol=1e-5)


def test_stein_identity_on_quadratic(rng):
    """E[ST_i] = -sigma^2 A_ii; the seeded estimate is within 4 standard errors."""
    model = _quadratic(QA, QB)
    x = np.array([[0.3, -0.5, 0.8, 0.1]], np.float32)
    sigma, n = 0.3, 20000
    st = smooth_taylor(model, x, n_roots=n, noise_scale=sigma, seed=3, internal_batch_size=5000).numpy()[0]
    truth = -(sigma**2) * np.diag(QA)
    # per-sample terms -sigma eps_i (A z + b)_i from an independent draw, for the standard error
    e = rng.standard_normal((n, 4))
    terms = -sigma * e * ((x[0] + sigma * e) @ QA + QB)
    se = terms.std(axis=0, ddof=1) / np.sqrt(n)
    z_scores = (st - truth) / se
    assert np.all(np.abs(z_scores) < 4.0), (st, truth, se)
    # the same estimator from the same per-sample terms agrees with the closed form as well
    assert np.all(np.abs(terms.mean(0) - truth) < 4 * se)


def test_seed_keying(cnn16, rng):
    """Seeds and chunking in general: tests/test_contract.py; here the documented keying."""
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    a = smooth_taylor(cnn16, x, n_roots=9, seed=5, internal_batch_size=4).numpy()  # chunks of 2 roots + rest
    # the documented keying: root n uses stateless_normal([1, *S], seed=[seed, n]), shared by every example
    eps = np.stack(
        [
            np.broadcast_to(tf.random.stateless_normal((1, 16, 16, 3), seed=[5, k]).numpy(), (2, 16, 16, 3))
            for k in range(9)
        ]
    )
    d = smooth_taylor(cnn16, x, noise=eps).numpy()
    np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_jit_compile(cnn16, rng):
    """Same maps with injected noise; seeded XLA runs are deterministic (XLA's RNG draws other numbers)."""
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    eps = rng.standard_normal((6, 2, 16, 16, 3)).astype(np.float32)
    a = smooth_taylor(cnn16, x, noise=eps).numpy()
    b = smooth_taylor(cnn16, x, noise=eps, jit_compile=True).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    c = smooth_taylor(cnn16, x, n_roots=6, seed=3, jit_compile=True).numpy()
    d = smooth_taylor(cnn16, x, n_roots=6, seed=3, jit_compile=True, internal_batch_size=4).numpy()
    np.testing.assert_allclose(c, d, rtol=1e-4, atol=1e-5 * np.abs(c).max())


def _tracing_counts():
    return sum(fn.experimental_get_tracing_count() for _, fn in eng.CACHE._items.values())


def test_no_retrace_for_new_inputs_sigma_seed_targets(toy_cnn, rng):
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    smooth_taylor(toy_cnn, x, n_roots=4, seed=0)
    before = _tracing_counts()
    smooth_taylor(toy_cnn, x + 0.1, n_roots=4, seed=1, noise_scale=[0.1, 0.3])
    smooth_taylor(toy_cnn, x, n_roots=4, seed=2, noise_scale=0.9)
    assert _tracing_counts() == before
    smooth_taylor(toy_cnn, x, [0, 1], n_roots=4, seed=0)
    after = _tracing_counts()
    smooth_taylor(toy_cnn, x, [2, 2], n_roots=4, seed=7)
    assert _tracing_counts() == after


def test_registry_and_errors(toy_cnn, rng):
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    a = tpa.attribute(toy_cnn, x, None, method="smooth_taylor", n_roots=3, seed=1).numpy()
    np.testing.assert_array_equal(a, tpa.smooth_taylor(toy_cnn, x, n_roots=3, seed=1).numpy())
    with pytest.raises(ValueError, match="noise_scale"):
        smooth_taylor(toy_cnn, x, noise_scale=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="noise_scale"):
        smooth_taylor(toy_cnn, x, noise_scale=-1.0)
    with pytest.raises(ValueError, match="noise must have shape"):
        smooth_taylor(toy_cnn, x, noise=np.zeros((3, 1, 8, 8, 3)))
    with pytest.raises(ValueError, match="n_roots"):
        smooth_taylor(toy_cnn, x, n_roots=0)
    with pytest.raises(ValueError, match="objective"):
        smooth_taylor(toy_cnn, x, adaptive=True, objective="nope")
    with pytest.raises(ValueError, match="percent"):
        smooth_taylor(toy_cnn, x, adaptive=True, percent=True)
    with pytest.raises(ValueError, match="search_options"):
        smooth_taylor(toy_cnn, x, adaptive=True, objective="autvc", search_options={"steps": 3})


# ------------------------------------------------------------------------------------------
# adaptive noising


def _restated_search(J, sigma0, lr=0.1, decay=0.9, max_stop=3, max_it=20):
    """The released pseudo-code, literally, for one example; returns the list of J arguments,
    the per-iteration (sigma, obj, lr, stop) and the best (sigma, obj)."""
    calls, steps = [], []

    def JJ(s):
        calls.append(s)
        return J(s)

    sigma = sigma0
    obj = JJ(sigma)
    best = (sigma, obj)
    stop, it = 0, 1
    while it <= max_it:
        o_plus = JJ(abs(sigma + lr))
        if o_plus > obj:
            sigma = abs(sigma - lr)
            o = JJ(sigma)
        else:
            sigma = abs(sigma + lr)
            o = o_plus
        if o > obj:
            if stop < max_stop:
                lr = lr * decay
                stop += 1
            else:
                steps.append((sigma, o, lr, stop))
                break
        else:
            stop = 0
            if o < best[1]:
                best = (sigma, o)
        steps.append((sigma, o, lr, stop))
        obj = o
        it += 1
    return calls, steps, best


@pytest.mark.parametrize("max_stop", [3, 0])
def test_adaptive_trajectory_matches_pseudocode_restatement(cnn16, rng, max_stop):
    x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    eps = rng.standard_normal((6, 2, 16, 16, 3)).astype(np.float32)
    opts = {"min_size": 5}
    search = {"max_iteration": 8, "max_stop_count": max_stop}
    attr, det = smooth_taylor(
        cnn16,
        x,
        noise=eps,
        adaptive=True,
        objective="autvc",
        objective_options=opts,
        search_options=search,
        return_details=True,
    )
    for b in range(2):

        def J(s, b=b):  # deterministic objective: fixed noise, the same batched call with sigma at b
            sig = np.full(2, s, np.float32)
            m = smooth_taylor(cnn16, x, noise=eps, noise_scale=sig).numpy()
            return total_variation(m, **opts)[0][b]

        sigma0 = float(np.abs(x[b]).mean())
        calls, steps, best = _restated_search(J, sigma0, max_stop=max_stop, max_it=8)
        traj = det["trajectory"][b]
        assert len(traj) == len(steps)
        for rec, (s, o, lr, stop) in zip(traj, steps):
            np.testing.assert_allclose(rec["sigma"], s, rtol=1e-6)
            np.testing.assert_allclose(rec["objective"], o, rtol=1e-6)
            np.testing.assert_allclose(rec["lr"], lr, rtol=1e-12)
            assert rec["stop"] == stop
        assert [r["stopped"] for r in traj[:-1]] == [False] * (len(traj) - 1)
        if max_stop == 0:  # the break path is exercised: the first worse step ends the search
            assert traj[-1]["stopped"] and len(traj) < 8
        np.testing.assert_allclose(det["sigma"][b], best[0], rtol=1e-6)
        np.testing.assert_allclose(det["objective"][b], best[1], rtol=1e-6)
        # the returned map is SmoothTaylor at the chosen sigma, and its objective is no worse than the start
        m = smooth_taylor(cnn16, x, noise=eps, noise_scale=np.full(2, det["sigma"][b], np.float32)).numpy()
        np.testing.assert_allclose(attr.numpy()[b], m[b], rtol=1e-5, atol=1e-7)
        assert det["objective"][b] <= det["initial_objective"][b]
        np.testing.assert_allclose(det["initial_sigma"][b], sigma0, rtol=1e-6)


def test_adaptive_callable_objective_and_aupc(cnn16, rng):
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)

    # a deterministic objective with a known minimiser: the noise scale itself, read off the map size
    def objective(attr, inputs):
        return np.abs(np.abs(np.asarray(attr)).mean(axis=(1, 2, 3)) - 1e-3)

    attr, det = smooth_taylor(
        cnn16,
        x,
        n_roots=8,
        seed=4,
        adaptive=True,
        objective=objective,
        search_options={"max_iteration": 5},
        return_details=True,
    )
    assert det["sigma"].shape == (2,)
    assert np.all(det["objective"] <= det["initial_objective"])
    np.testing.assert_allclose(objective(attr.numpy(), x), det["objective"], rtol=1e-5)
    # same seed -> same search; 1 + at most 2 evaluations per iteration; sigma is a tensor: no retrace
    before = _tracing_counts()
    _, det2 = smooth_taylor(
        cnn16,
        x,
        n_roots=8,
        seed=4,
        adaptive=True,
        objective=objective,
        search_options={"max_iteration": 5},
        return_details=True,
    )
    np.testing.assert_array_equal(det["sigma"], det2["sigma"])
    assert _tracing_counts() == before
    assert 1 + 5 <= det["n_evaluations"] <= 1 + 2 * 5
    # AUPC objective (stochastic): runs, gives per-example sigma and a best objective <= the start
    _, det3 = smooth_taylor(
        cnn16,
        x,
        n_roots=4,
        seed=1,
        adaptive=True,
        objective="aupc",
        objective_options={"window": 4, "n_regions": 4, "n_candidates": 6},
        search_options={"max_iteration": 2},
        return_details=True,
    )
    assert det3["sigma"].shape == (2,) and np.all(det3["objective"] <= det3["initial_objective"])


def test_adaptive_aupc_with_raw_inputs_and_preprocess(rng):
    """The model explained sees normalised inputs; AUPC perturbs the raw images through ``preprocess``."""
    model = zoo.smooth_cnn(16)
    raw = rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    pre = lambda u: (u - 0.5) / 0.25  # noqa: E731
    opts = {"window": 4, "n_regions": 3, "n_candidates": 4, "raw_inputs": raw, "preprocess": pre}
    attr, det = smooth_taylor(
        model,
        pre(raw),
        n_roots=4,
        seed=2,
        adaptive=True,
        objective="aupc",
        objective_options=opts,
        search_options={"max_iteration": 2},
        return_details=True,
    )
    assert attr.shape == (1, 16, 16, 3) and np.all(np.isfinite(attr.numpy()))
    np.testing.assert_allclose(det["initial_sigma"], np.abs(pre(raw)).mean(), rtol=1e-6)
    assert det["objective"][0] <= det["initial_objective"][0]
