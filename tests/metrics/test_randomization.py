"""Model-parameter randomization (Adebayo et al. 2018): closed cases, the user's model untouched."""

import gc
import weakref

import numpy as np
import pytest
import scipy.stats

import tf_pathattr as tpa
from tf_pathattr.metrics.randomization import spearman_rows, ssim_maps
from tf_pathattr.testing import models as zoo


def _x(batch=3, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, channels)).astype(np.float32)


def _the_input(model, x, target):
    return x


def test_input_as_map_keeps_similarity_one_at_every_layer():
    """A map that does not depend on the model is not changed by randomizing it: similarity exactly 1."""
    model = zoo.toy_cnn()
    for cascade in (True, False):
        res = tpa.metrics.model_randomization(model, _x(), method=_the_input, cascade=cascade)
        assert res.layers == (model.layers[-1].name, model.layers[0].name)
        for name in ("spearman_abs", "spearman", "ssim"):
            assert res.similarity[name].shape == (2, 3)
            np.testing.assert_allclose(res.similarity[name], 1.0, atol=1e-12)


def test_layers_are_randomized_top_down_cascading_or_one_at_a_time():
    """The method sees, at step l, the top l + 1 layers random (cascade) or only layer l (independent)."""
    model = zoo.dense_head(4, classes=3, hidden=5)
    trained = {layer.name: np.asarray(layer.kernel).copy() for layer in model.layers}
    x = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)

    def changed_layers(log):
        def method(clone, inputs, target):
            log.append(
                tuple(sorted(lay.name for lay in clone.layers if not np.array_equal(lay.kernel, trained[lay.name])))
            )
            return inputs

        return method

    top, bottom = model.layers[1].name, model.layers[0].name
    log = []
    res = tpa.metrics.model_randomization(model, x, method=changed_layers(log), similarity="spearman")
    assert res.layers == (top, bottom)
    assert log == [(), (top,), tuple(sorted((top, bottom)))]
    log = []
    tpa.metrics.model_randomization(model, x, method=changed_layers(log), cascade=False, similarity="spearman")
    assert log == [(), (top,), (bottom,)]


def test_user_model_weights_unchanged_and_not_kept_alive():
    model = zoo.toy_cnn()
    before = [w.copy() for w in model.get_weights()]
    tpa.metrics.model_randomization(model, _x(), method="gradients")
    after = model.get_weights()
    assert len(before) == len(after)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_seeded_re_initialisation_uses_the_layers_initializers():
    model = zoo.toy_cnn()
    x = _x()
    a = tpa.metrics.model_randomization(model, x, method="gradients", seed=3)
    b = tpa.metrics.model_randomization(model, x, method="gradients", seed=3)
    c = tpa.metrics.model_randomization(model, x, method="gradients", seed=4)
    np.testing.assert_array_equal(a.similarity["spearman"], b.similarity["spearman"])
    assert not np.array_equal(a.similarity["spearman"], c.similarity["spearman"])


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 40)).astype(np.float64)  # many ties
    b = a + rng.integers(0, 3, size=(6, 40))
    ours = spearman_rows(a, b)
    ref = [scipy.stats.spearmanr(a[i], b[i]).statistic for i in range(6)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.isnan(spearman_rows(np.ones((1, 5)), np.arange(5.0)[None]))[0]
    np.testing.assert_allclose(spearman_rows(np.arange(5.0)[None], -np.arange(5.0)[None]), [-1.0])


def test_ssim_matches_skimage_on_normalised_maps():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 9, 9)), rng.normal(size=(2, 9, 9))
    ours = ssim_maps(a, b)
    ref = [
        structural_similarity(np.abs(a[i]) / np.abs(a[i]).max(), np.abs(b[i]) / np.abs(b[i]).max(), data_range=1.0)
        for i in range(2)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_errors_name_the_argument():
    model = zoo.dense_head(4)
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="ssim"):
        tpa.metrics.model_randomization(model, x, method="gradients")
    with pytest.raises(ValueError, match="similarity"):
        tpa.metrics.model_randomization(model, x, method="gradients", similarity=("pearson",))


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    import os

    from tf_pathattr import demo

    old = os.environ.get("TF_PATHATTR_CACHE")
    os.environ["TF_PATHATTR_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        model, acc, _ = demo.digits_model(quick=True)
    finally:
        if old is None:
            del os.environ["TF_PATHATTR_CACHE"]
        else:
            os.environ["TF_PATHATTR_CACHE"] = old
    (_, _), (x_te, _) = demo.load_digits_data()
    return model, acc, x_te[:16]


@pytest.mark.slow
def test_gradients_of_a_trained_cnn_lose_similarity_once_every_layer_is_random(digits_cnn):
    model, acc, x = digits_cnn
    assert acc > 0.8
    before = [w.copy() for w in model.get_weights()]
    res = tpa.metrics.model_randomization(model, x, method="gradients")
    assert len(res.layers) == 3 and res.layers[-1] == model.layers[0].name
    for name in ("spearman_abs", "spearman", "ssim"):
        assert res.mean(name)[-1] < 0.5, (name, res.mean(name))
    # the input-as-map control on the same model keeps 1
    same = tpa.metrics.model_randomization(model, x, method=_the_input)
    np.testing.assert_allclose(same.similarity["ssim"], 1.0, atol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
