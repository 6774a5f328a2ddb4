"""AUPC (region perturbation) and the pinned integration rules."""

import numpy as np
import pytest
import scipy.integrate
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.metrics._integrate import auc_unit, simpson, trapezoid
from tf_pathattr.metrics.aupc import aupc, select_regions
from tf_pathattr.testing import models as zoo

# ------------------------------------------------------------------------------------------
# Simpson / trapezoid


def test_simpson_hand_values_5_6_31_points():
    y5 = np.arange(5.0) ** 2  # Simpson is exact for x^2: int_0^4 x^2 = 64/3
    assert simpson(y5) == pytest.approx((0 + 4 * 1 + 2 * 4 + 4 * 9 + 16) / 3)
    assert simpson(y5) == pytest.approx(64 / 3)
    y6 = np.arange(6.0) ** 2  # pinned even rule: Simpson on 5 points + trapezoid on [4, 5]
    assert simpson(y6) == pytest.approx(64 / 3 + (16 + 25) / 2)
    assert simpson(y6, dx=0.5) == pytest.approx(0.5 * (64 / 3 + (16 + 25) / 2))
    y31 = np.arange(31.0) ** 3  # exact for cubics: int_0^30 x^3 = 30^4 / 4
    assert simpson(y31) == pytest.approx(30**4 / 4)
    w = np.array([1] + [4, 2] * 14 + [4, 1], float)
    y = np.cos(np.arange(31) / 5.0)
    assert simpson(y) == pytest.approx(float(w @ y) / 3)
    # small counts
    assert simpson([3.0]) == 0.0
    assert simpson([1.0, 3.0]) == pytest.approx(2.0)
    y6b = np.array([0.3, 1.2, -0.4, 2.0, 0.7, 1.1])
    assert simpson(y6b) == pytest.approx((0.3 + 4 * 1.2 - 2 * 0.4 + 4 * 2.0 + 0.7) / 3 + (0.7 + 1.1) / 2)


@pytest.mark.parametrize("n", [3, 5, 7, 31, 101])
def test_simpson_matches_scipy_for_odd_counts(n, rng):
    y = rng.normal(size=(3, n))
    np.testing.assert_allclose(simpson(y, dx=0.7), scipy.integrate.simpson(y, dx=0.7, axis=-1), rtol=1e-12)


def test_trapezoid_helpers(rng):
    y = rng.normal(size=(2, 9))
    np.testing.assert_allclose(trapezoid(y, 0.3), np.trapezoid(y, dx=0.3, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(auc_unit(y), np.trapezoid(y, dx=1 / 8, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(auc_unit(np.linspace(0, 1, 11)), 0.5)


# ------------------------------------------------------------------------------------------
# region selection and the perturbation curve


def _ref_regions(heat, w, n):
    """Released-style selection: sort all fitting windows by mean |h| (row-major stable), greedily
    skip windows that overlap a chosen one."""
    H, W = heat.shape
    scores, corners = [], []
    for i in range(H - w + 1):
        for j in range(W - w + 1):
            scores.append(np.mean(np.abs(heat[i : i + w, j : j + w])))
            corners.append((i, j))
    chosen = []
    for k in np.argsort(-np.asarray(scores), kind="stable"):
        i, j = corners[k]
        if all(abs(i - a) >= w or abs(j - b) >= w for a, b in chosen):
            chosen.append((i, j))
        if len(chosen) == n:
            break
    return chosen


def test_select_regions_matches_bruteforce(rng):
    for _ in range(3):
        h = rng.normal(size=(20, 17))
        assert select_regions(h, 4, 9) == _ref_regions(h, 4, 9)
    assert len(select_regions(rng.normal(size=(8, 8)), 4, 10)) <= 4


def _pre(x):
    return (x - 0.5) / 0.25


def _ref_curve(model, x, heat, cands, w, cls):
    """Numpy restatement of the released protocol with given candidates [R, K, B, w, w, C]."""
    n_regions, K = cands.shape[:2]
    curves = []
    for b in range(x.shape[0]):
        img = x[b].astype(np.float32).copy()
        s0 = float(model(_pre(img[None]), training=False).numpy()[0, cls[b]])
        curve = [s0]
        for r, (i, j) in enumerate(_ref_regions(heat[b], w, n_regions)):
            batch = np.repeat(img[None], K, axis=0)
            for k in range(K):
                batch[k, i : i + w, j : j + w] = cands[r, k, b]
            s = model(_pre(batch), training=False).numpy()[:, cls[b]].astype(np.float64)
            curve.append(s.mean())
            pick = int(np.argmin(np.abs(s - np.median(s))))
            img[i : i + w, j : j + w] = cands[r, pick, b]
        curves.append(np.array(curve) / abs(s0))
    return curves


def test_aupc_curve_matches_numpy_restatement(rng):
    model = zoo.smooth_cnn(16)
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    R, K, w = 6, 6, 4  # 7 curve points (odd): the Simpson value is SciPy's
    cands = rng.uniform(0, 1, (R, K, 2, w, w, 3)).astype(np.float32)
    values, curves = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, preprocess=_pre, candidates=cands)
    cls = np.argmax(model(_pre(x)).numpy(), axis=1)
    ref = _ref_curve(model, x, attr.sum(-1), cands, w, cls)
    assert curves.shape == (2, R + 1)
    for b in range(2):
        np.testing.assert_allclose(curves[b], ref[b], rtol=1e-5, atol=1e-6)
        assert values[b] == pytest.approx(scipy.integrate.simpson(ref[b], dx=1), rel=1e-5)
    # the curve moves: the perturbation changes the score
    assert np.abs(curves[:, 1:] - 1).max() > 1e-4
    # explicit target, [B, H, W] attributions give the same regions as their channel sum
    v2, c2 = aupc(
        model,
        x,
        attr.sum(-1),
        target=list(cls),
        window=w,
        n_regions=R,
        n_candidates=K,
        preprocess=_pre,
        candidates=cands,
    )
    np.testing.assert_allclose(c2, curves, rtol=1e-6)


def test_aupc_seeded_draws_are_stateless_uniform_per_region(rng):
    model = zoo.smooth_cnn(16)
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    attr = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    R, K, w, lo, hi = 3, 5, 4, -1.0, 2.0
    v1, c1 = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, value_range=(lo, hi), seed=7)
    v2, c2 = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, value_range=(lo, hi), seed=7)
    np.testing.assert_array_equal(c1, c2)
    cands = np.stack(
        [lo + (hi - lo) * tf.random.stateless_uniform([K, 2, w, w, 3], seed=[7, r]).numpy() for r in range(R)]
    )
    v3, c3 = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, candidates=cands)
    np.testing.assert_allclose(c1, c3, rtol=1e-6)
    _, c4 = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, value_range=(lo, hi), seed=8)
    assert np.abs(c4 - c1).max() > 0
    _, c5 = aupc(model, x, attr, window=w, n_regions=R, n_candidates=K, draw="gaussian", seed=1)
    assert np.all(np.isfinite(c5))


def test_aupc_fewer_regions_than_requested(rng):
    model = zoo.smooth_cnn(8)
    x = rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    n_fit = len(select_regions(attr[0].sum(-1), 4, 6))
    values, curves = aupc(model, x, attr, window=4, n_regions=6, n_candidates=4, seed=0)
    assert np.all(np.isfinite(curves[0, : n_fit + 1])) and np.all(np.isnan(curves[0, n_fit + 1 :]))
    assert values[0] == pytest.approx(simpson(curves[0, : n_fit + 1]))


def test_aupc_errors(rng):
    model = zoo.smooth_cnn(8)
    x = rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="attributions must have shape"):
        aupc(model, x, np.zeros((1, 8, 8, 2)), window=2)
    with pytest.raises(ValueError, match="window"):
        aupc(model, x, np.zeros((1, 8, 8)), window=9)
    with pytest.raises(ValueError, match="candidates must have shape"):
        aupc(model, x, np.zeros((1, 8, 8)), window=2, n_regions=2, n_candidates=2, candidates=np.zeros((2, 2, 1, 2, 2)))
    with pytest.raises(ValueError, match="value_range"):
        aupc(model, x, np.zeros((1, 8, 8)), window=2, value_range=(1, 0))
    with pytest.raises(ValueError, match="draw"):
        aupc(model, x, np.zeros((1, 8, 8)), window=2, draw="poisson")
    assert tpa.metrics.aupc is aupc


def test_aupc_is_traced_once_per_model_and_preprocess(rng):
    from tf_pathattr.engine import gradients as eng

    model = zoo.smooth_cnn(16)
    attr = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    opts = dict(window=4, n_regions=3, n_candidates=4, preprocess=_pre)
    aupc(model, rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32), attr, seed=0, **opts)
    count = lambda: sum(fn.experimental_get_tracing_count() for _, fn in eng.CACHE._items.values())  # noqa: E731
    before = count()
    aupc(model, rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32), -attr, seed=1, **opts)
    aupc(model, rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32), attr, target=[0, 1], seed=2, **opts)
    assert count() <= before + 1  # at most the integer-target variant is new
    n_after = count()
    aupc(model, rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32), attr, target=[3, 3], seed=3, **opts)
    assert count() == n_after


def test_aupc_refuses_inputs_outside_value_range(rng):
    """issue 18 item 7: the drawn candidates live in value_range; images outside it are refused."""
    model = zoo.smooth_cnn(8)
    x = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    opts = dict(window=4, n_regions=2, n_candidates=3, seed=0)
    with pytest.raises(ValueError, match=r"outside value_range=\(0\.0, 1\.0\).*value_range="):
        aupc(model, x, attr, **opts)
    values, curves = aupc(model, x, attr, value_range=(-1, 1), **opts)
    assert np.all(np.isfinite(curves))


def test_aupc_on_a_softmax_model_names_its_own_default_score(rng):
    """issue 18 item 8: aupc's default score is 'logit'; the refusal on a softmax model says so and does
    not call 'probability' the default."""
    import keras

    model = keras.Sequential([zoo.smooth_cnn(8), keras.layers.Softmax()])
    x = rng.uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError) as info:
        aupc(model, x, attr, window=4, n_regions=2, n_candidates=3, seed=0)
    message = str(info.value)
    assert "score='logit' (this metric's default)" in message and "score='probability'" in message, message
    assert "(the default)" not in message, message
    _, curves = aupc(model, x, attr, window=4, n_regions=2, n_candidates=3, seed=0, score="probability")
    assert np.all(np.isfinite(curves))
