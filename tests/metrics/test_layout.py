"""Image metrics take the layout from the model (issue 18 item 4): a channels-first model is measured on
its channels-first images without ``data_format=`` (whatever ``keras.config.image_data_format()`` says),
with the same values as its channels-last twin; ``data_format=`` contradicting the model, or a model
whose layout cannot be read, is a ``ValueError`` naming ``data_format=``. The rule itself is
:func:`tf_pathattr.engine.layout.resolve_image_layout`, the one every image method and metric calls."""

import keras
import numpy as np
import pytest

from tf_pathattr import metrics
from tf_pathattr.testing import models as zoo

B = 2
_PERTURBED = np.random.default_rng(5).uniform(0.0, 1.0, (3, B, 8, 8, 3)).astype(np.float32)


def _first(x):
    """Channels-last ``[..., H, W, C]`` -> channels-first ``[..., C, H, W]``."""
    x = np.asarray(x)
    lead = x.ndim - 3
    return np.ascontiguousarray(np.transpose(x, tuple(range(lead)) + (lead + 2, lead, lead + 1)))


def _same(x):
    return x


# One runner per image metric: (model, x, attributions, t, **data_format) -> the numbers it reports; ``t``
# puts a channels-last option array into the layout of ``x``. Random draws shaped like the inputs are made
# deterministic (MEB's noise range of width 1e-6, infidelity's given perturbations) so that both layouts
# see the same values.
RUNS = {
    "deletion": lambda m, x, a, t, **k: metrics.deletion(m, x, a, n_steps=4, **k).curves,
    "insertion": lambda m, x, a, t, **k: metrics.insertion(m, x, a, n_steps=4, substrate="blur", **k).curves,
    "meb_ablation": lambda m, x, a, t, **k: metrics.meb_ablation(
        m, x, a, low=0.5, high=0.5 + 1e-6, fractions=[0.0, 0.5, 1.0], n_draws=1, seed=0, **k
    ).curves["morf"],
    "infidelity (pixel map)": lambda m, x, a, t, **k: (
        metrics.infidelity(
            m, x, np.asarray(a).sum(axis=1 if t is _first else -1), perturbation=t(_PERTURBED), **k
        ).infidelity
    ),
    "mu_fidelity": lambda m, x, a, t, **k: metrics.mu_fidelity(m, x, a, nb_samples=6, grid_size=2, seed=0, **k).drops,
    "pic": lambda m, x, a, t, **k: metrics.pic(
        m, x, a, kind="sic", seed=0, min_pred_value=0.0, thresholds=(0.0, 0.2, 1.0), **k
    ).auc["sic"],
    "road": lambda m, x, a, t, **k: metrics.road(m, x, a, fractions=[0.2, 0.6], seed=0, **k).probability["morf"],
    "aupc": lambda m, x, a, t, **k: metrics.aupc(m, x, a, window=4, n_regions=2, n_candidates=3, seed=0, **k)[1],
}


@pytest.fixture(scope="module")
def models_and_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (B, 8, 8, 3)).astype(np.float32)
    attr = rng.normal(size=x.shape)
    return (zoo.dummy_feature_cnn(), zoo.dummy_feature_cnn_channels_first(), zoo.permuted_input_cnn(), x, attr)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_image_metric_reads_the_layout_from_the_model(name, models_and_data):
    cl_model, cf_model, permuted, x, attr = models_and_data
    assert keras.config.image_data_format() == "channels_last"
    run = RUNS[name]
    reference = np.asarray(run(cl_model, x, attr, _same), np.float64)
    from_model = np.asarray(run(cf_model, _first(x), _first(attr), _first), np.float64)
    np.testing.assert_allclose(from_model, reference, rtol=1e-4, atol=1e-5, equal_nan=True)
    explicit = np.asarray(run(cf_model, _first(x), _first(attr), _first, data_format="channels_first"), np.float64)
    np.testing.assert_allclose(explicit, from_model, rtol=1e-6, atol=1e-7, equal_nan=True)
    with pytest.raises(ValueError, match=r"data_format='channels_last' contradicts the model"):
        run(cf_model, _first(x), _first(attr), _first, data_format="channels_last")
    with pytest.raises(ValueError, match=r"cannot be read from the model.*data_format="):
        run(permuted, _first(x), _first(attr), _first)
    run(permuted, _first(x), _first(attr), _first, data_format="channels_first")  # the user's word settles it


def test_layout_rule_reads_layers_and_input_shapes():
    from tf_pathattr.engine.layout import model_data_format, resolve_image_layout

    assert model_data_format(zoo.dummy_feature_cnn())[0] == "channels_last"
    assert model_data_format(zoo.dummy_feature_cnn_channels_first())[0] == "channels_first"
    assert model_data_format(zoo.permuted_input_cnn())[0] == "ambiguous"
    assert model_data_format(lambda v: v) == (None, "")  # a callable declares nothing
    # no image layer: the declared input shape (free height and width, fixed channels) says it
    free = keras.Sequential([keras.Input((3, None, None)), keras.layers.GlobalAveragePooling2D("channels_first")])
    assert model_data_format(free)[0] == "channels_first"
    dense = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Flatten()])
    assert model_data_format(dense)[0] == "channels_last"
    # nothing declared: the global setting; rank-3 images have no channel axis
    assert resolve_image_layout(lambda v: v, (2, 3, 8, 8), None) == keras.config.image_data_format()
    assert resolve_image_layout(zoo.dummy_feature_cnn_channels_first(), (2, 8, 8), None) == "channels_last"
    with pytest.raises(ValueError, match="data_format must be one of"):
        resolve_image_layout(lambda v: v, (2, 3, 8, 8), "NCHW")
