import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.methods import noise_tunnel as noise_tunnel_module
from tf_pathattr.testing import models as zoo


def test_zero_noise_equals_wrapped_method_and_vargrad_is_zero(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    ig = tpa.integrated_gradients(toy_cnn, x, 1, n_steps=8)
    sg = tpa.noise_tunnel("integrated_gradients", toy_cnn, x, 1, stdevs=0.0, nt_samples=3, n_steps=8)
    np.testing.assert_allclose(sg, ig, rtol=1e-6, atol=1e-8)
    sq = tpa.noise_tunnel("ig", toy_cnn, x, 1, nt_type="smoothgrad_sq", stdevs=0.0, nt_samples=3, n_steps=8)
    np.testing.assert_allclose(sq, ig.numpy() ** 2, rtol=1e-5, atol=1e-10)
    vg = tpa.noise_tunnel("ig", toy_cnn, x, 1, nt_type="vargrad", stdevs=0.0, nt_samples=3, n_steps=8)
    assert np.max(np.abs(vg)) < 1e-10


def test_injected_noise_matches_numpy(rng):
    model, w = zoo.linear_model(rng.normal(size=(4, 2)))
    x = rng.normal(size=(3, 4)).astype("float32")
    eps = rng.normal(size=(5, 3, 4)).astype("float32")
    sigma = 0.2 * (x.max(1) - x.min(1))
    noisy = x[None] + eps * sigma[None, :, None]
    # gradient x input of a linear model: w * (x + eps)
    per = noisy * w[:, 1]
    for nt_type, expected in [
        ("smoothgrad", per.mean(0)),
        ("smoothgrad_sq", (per**2).mean(0)),
        ("vargrad", per.var(0)),
    ]:
        out = tpa.noise_tunnel(
            "gradients",
            model,
            x,
            1,
            nt_type=nt_type,
            nt_samples=5,
            stdevs=0.2,
            noise=eps,
            multiply_by_inputs=True,
            internal_batch_size=6,
        )  # 2 samples per call
        np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6)


def test_vargrad_non_negative_and_seeded(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    a = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=4, n_steps=8)
    assert float(tf.reduce_min(a)) >= 0.0
    b = tpa.noise_tunnel(
        "ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=4, n_steps=8, internal_batch_size=8
    )  # 4 noise samples per call
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
    with pytest.warns(DeprecationWarning, match="nt_samples_batch_size"):
        c = tpa.noise_tunnel(
            "ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=4, n_steps=8, nt_samples_batch_size=4
        )
    np.testing.assert_allclose(c, b, rtol=1e-5, atol=1e-9)
    c = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_type="vargrad", nt_samples=6, seed=5, n_steps=8)
    assert np.max(np.abs(a.numpy() - c.numpy())) > 0


def test_smoothgrad_completeness(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    eps = rng.normal(size=(4, 2, 8, 8, 3)).astype("float32")
    sg, delta = tpa.noise_tunnel(
        "ig", toy_cnn, x, 2, nt_samples=4, noise=eps, stdevs=0.1, n_steps=32, return_convergence_delta=True
    )
    sigma = 0.1 * (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1))
    f_noisy = np.mean([toy_cnn(x + eps[j] * sigma[:, None, None, None]).numpy()[:, 2] for j in range(4)], axis=0)
    f_base = toy_cnn(np.zeros_like(x)).numpy()[:, 2]
    np.testing.assert_allclose(sg.numpy().reshape(2, -1).sum(1), f_noisy - f_base, atol=1e-5)
    assert np.max(np.abs(delta)) < 1e-5


def test_predicted_target_is_resolved_on_clean_inputs(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    pred = np.argmax(toy_cnn(x).numpy(), 1)
    a = tpa.noise_tunnel("ig", toy_cnn, x, None, nt_samples=3, seed=1, stdevs=0.5, n_steps=8)
    b = tpa.noise_tunnel("ig", toy_cnn, x, pred, nt_samples=3, seed=1, stdevs=0.5, n_steps=8)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_per_example_baseline_is_tiled(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    base = rng.random((2, 8, 8, 3)).astype("float32")
    a = tpa.noise_tunnel("ig", toy_cnn, x, 0, stdevs=0.0, nt_samples=2, baseline=base, n_steps=8)
    np.testing.assert_allclose(a, tpa.integrated_gradients(toy_cnn, x, 0, baseline=base, n_steps=8), rtol=1e-6)


def test_by_name_through_attribute(toy_cnn, rng):
    x = rng.random((1, 8, 8, 3)).astype("float32")
    a = tpa.attribute(toy_cnn, x, 0, method="noise_tunnel", base_method="gradients", nt_samples=3, seed=2)
    b = tpa.noise_tunnel("gradients", toy_cnn, x, 0, nt_samples=3, seed=2)
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nt_type="median"), "nt_type must be one of"),
        (dict(nt_samples=0), "nt_samples must be >= 1"),
        (dict(stdevs=-1.0), "stdevs must be"),
        (dict(nt_type="vargrad", return_convergence_delta=True), "only defined for nt_type='smoothgrad'"),
        (dict(noise=np.zeros((2, 1, 8, 8, 3))), "noise must have shape"),
    ],
)
def test_errors(toy_cnn, kwargs, match):
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        tpa.noise_tunnel("ig", toy_cnn, x, 0, **kwargs)
    with pytest.raises(ValueError, match="unknown method"):
        tpa.noise_tunnel("nope", toy_cnn, x, 0)


# ---------------------------------------------------------------------------------------------
# per-example options of the wrapped method are tiled as its registry entry declares (issue 9)


def _two_input_model(kind):
    """The zoo's two-input model (a [4], b [3]) with list or dict inputs."""
    list_model, dict_model = zoo.two_input_models(seed=3, widths=(4, 3))
    return dict_model if kind == "dict" else list_model


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_per_example_baselines_of_multi_input_models_are_tiled(kind, rng):
    # issue 9 defect 1: with stdevs=0 the tunnel is the wrapped method, per-example baselines included
    model = _two_input_model(kind)
    xa, xb = rng.random((2, 4)).astype("float32"), rng.random((2, 3)).astype("float32")
    ba, bb = rng.random((2, 4)).astype("float32"), rng.random((2, 3)).astype("float32")
    if kind == "dict":
        x, base = {"a": xa, "b": xb}, {"a": ba, "b": bb}
    else:
        x, base = [xa, xb], [ba, bb]
    ig = tpa.integrated_gradients(model, x, 1, baseline=base, n_steps=8)
    nt = tpa.noise_tunnel("ig", model, x, 1, stdevs=0.0, nt_samples=2, baseline=base, n_steps=8)
    flat = (lambda v: [v["a"], v["b"]]) if kind == "dict" else list
    for a, b in zip(flat(nt), flat(ig)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and they matter: zero baselines give something else
    ig0 = tpa.integrated_gradients(model, x, 1, n_steps=8)
    assert max(np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(flat(nt), flat(ig0))) > 1e-3


def test_smoothgrad_is_smoothgrad_over_gradients(toy_cnn, rng):
    # issue 9 defect 2: the name means Smilkov et al.'s SmoothGrad (plain gradients), not SmoothGrad over IG
    x = rng.random((2, 8, 8, 3)).astype("float32")
    sg = tpa.attribute(toy_cnn, x, 1, method="smoothgrad", nt_samples=4, stdevs=0.2, seed=7)
    over_grad = tpa.noise_tunnel("gradients", toy_cnn, x, 1, nt_samples=4, stdevs=0.2, seed=7)
    over_ig = tpa.noise_tunnel("integrated_gradients", toy_cnn, x, 1, nt_samples=4, stdevs=0.2, seed=7, n_steps=8)
    np.testing.assert_allclose(sg, over_grad, rtol=1e-6, atol=1e-9)
    scale = np.max(np.abs(over_grad))
    assert np.max(np.abs(sg.numpy() - over_ig.numpy())) > 0.1 * scale
    # independent restatement: mean over the same stateless draws of the plain input gradient
    sigma = 0.2 * (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1))
    grads = []
    for j in range(4):
        # the tunnel's draws for seed=7: one [1, *S] draw per sample, shared by every example
        eps = np.broadcast_to(tf.random.stateless_normal((1,) + x.shape[1:], seed=[7, j]).numpy(), x.shape)
        z = tf.constant(x + eps * sigma[:, None, None, None])
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = toy_cnn(z)[:, 1]
        grads.append(tape.gradient(s, z).numpy())
    np.testing.assert_allclose(sg, np.mean(grads, 0), rtol=1e-4, atol=1e-7)


def test_smooth_taylor_per_example_noise_scale_is_tiled(toy_cnn, rng):
    # issue 9 defect 7: noise_scale [B] is per example; the tunnel repeats it with the rows
    x = rng.random((2, 8, 8, 3)).astype("float32")
    scales = np.array([0.1, 0.4], np.float32)
    nt = tpa.noise_tunnel(
        "smooth_taylor", toy_cnn, x, 1, stdevs=0.0, nt_samples=2, noise_scale=scales, n_roots=4, seed=3
    )
    # the wrapped method on the 2B tiled rows (with the seed the tunnel derives for it), averaged over the copies
    inner = noise_tunnel_module.inner_seed(3, 0)
    assert inner != 3
    tiled = tpa.smooth_taylor(
        toy_cnn, np.concatenate([x, x]), [1] * 4, noise_scale=np.tile(scales, 2), n_roots=4, seed=inner
    ).numpy()
    np.testing.assert_allclose(nt, tiled.reshape(2, 2, 8, 8, 3).mean(0), rtol=1e-5, atol=1e-8)
    one = tpa.noise_tunnel(
        "smooth_taylor", toy_cnn, x, 1, stdevs=0.0, nt_samples=1, noise_scale=scales, n_roots=4, seed=3
    )
    np.testing.assert_allclose(
        one, tpa.smooth_taylor(toy_cnn, x, 1, noise_scale=scales, n_roots=4, seed=inner), rtol=1e-5, atol=1e-8
    )


def test_ig2_per_example_references_are_tiled(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)])
    x = rng.random((2, 5)).astype("float32")
    refs = rng.random((2, 3, 5)).astype("float32")  # [B, R, *S]
    opts = dict(references=refs, step_size=0.05, n_steps=6)
    nt = tpa.noise_tunnel("ig2", model, x, 1, stdevs=0.0, nt_samples=2, **opts)
    np.testing.assert_allclose(nt, tpa.ig2(model, x, 1, **opts), rtol=1e-5, atol=1e-7)


def test_expected_gradients_injected_draws_are_tiled_along_the_batch_axis(rng):
    # n_samples == B: [n_samples, B] must be tiled along axis 1, not axis 0
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)])
    x = rng.random((3, 5)).astype("float32")
    bg = rng.random((4, 5)).astype("float32")
    idx = np.array([[0, 1, 2], [3, 0, 1], [2, 3, 0]])
    alphas = rng.random((3, 3)).astype("float32")
    opts = dict(background=bg, n_samples=3, sample_indices=idx, sample_alphas=alphas)
    nt = tpa.noise_tunnel("eg", model, x, 1, stdevs=0.0, nt_samples=2, **opts)
    np.testing.assert_allclose(nt, tpa.expected_gradients(model, x, 1, **opts), rtol=1e-5, atol=1e-7)


def test_only_declared_options_are_tiled(rng):
    # a [B, *S]-shaped option the wrapped method does not declare per-example reaches it unchanged
    seen = {}

    def method(model, inputs, target=None, *, table=None):
        seen["table"] = np.asarray(table)
        return tf.zeros_like(inputs)

    model, _ = zoo.linear_model(rng.normal(size=(4, 2)))
    x = rng.random((2, 4)).astype("float32")
    table = rng.random((2, 4)).astype("float32")
    tpa.noise_tunnel(method, model, x, 0, nt_samples=3, table=table)
    np.testing.assert_array_equal(seen["table"], table)


def test_ig2_per_example_clip_is_tiled(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)])
    xv = rng.random((2, 5)).astype("float32")
    low = np.stack([np.full(5, 0.2), np.full(5, -1.0)]).astype("float32")  # per example [B, *S]
    opts = dict(references=rng.random((3, 5)).astype("float32"), step_size=0.2, n_steps=6, clip=(low, 1.0))
    nt = tpa.noise_tunnel("ig2", model, xv, 1, stdevs=0.0, nt_samples=2, **opts)
    np.testing.assert_allclose(nt, tpa.ig2(model, xv, 1, **opts), rtol=1e-5, atol=1e-7)


def test_xrai_per_example_base_attribution_and_segments_are_tiled(toy_cnn, rng):
    x = rng.random((2, 8, 8, 3)).astype("float32")
    base = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    top = np.zeros((8, 8), bool)
    top[:4] = True
    segments = [[left, ~left], [top, ~top]]  # one list of masks per image
    opts = dict(base_attribution=base, segments=segments, min_pixel_diff=1)
    nt = tpa.noise_tunnel("xrai", toy_cnn, x, 1, stdevs=0.0, nt_samples=2, **opts)
    np.testing.assert_allclose(nt, tpa.xrai(toy_cnn, x, 1, **opts), rtol=1e-6)


def test_smoothgrad_over_a_layer_of_a_linear_tail_is_the_exact_layer_gradient():
    """Issue 18 item 6: ids -> Embedding -> Flatten -> Dense is linear in the embedding output, so its
    gradient there is the Dense kernel at every point: SmoothGrad over layer= equals it exactly,
    whatever the noise."""
    from tf_pathattr.testing import models as zoo

    model = zoo.linear_text_model()
    ids = zoo.ids(3)
    kernel = model.get_layer("logits").get_weights()[0]  # [T * E, C]
    exact = np.broadcast_to(kernel[:, 1].reshape(6, 4), (3, 6, 4))
    sg = noise_tunnel_module.smoothgrad(model, ids, 1, layer="embedding", nt_samples=4, stdevs=0.5, seed=0)
    np.testing.assert_allclose(sg.numpy(), exact, rtol=1e-5, atol=1e-7)
    nt = tpa.noise_tunnel("gradients", model, ids, 1, layer="embedding", nt_samples=4, stdevs=0.5, seed=0)
    np.testing.assert_allclose(nt.numpy(), exact, rtol=1e-5, atol=1e-7)


def test_noise_in_the_layer_space_is_scaled_to_each_examples_activation_range():
    """The noise goes on the layer's output, sigma_b = stdevs * (max - min of example b's activations)
    (AllenNLP's SmoothGradient for embeddings): SmoothGrad over layer= equals the mean of the tail
    model's gradients (plain GradientTape) at the noisy embeddings."""
    from tf_pathattr.testing import models as zoo

    model = zoo.text_model()
    tail = zoo.embedding_tail(model)
    ids = zoo.ids(3)
    emb = model.get_layer("embedding")(ids).numpy()
    eps = np.random.default_rng(3).normal(size=(5,) + emb.shape).astype(np.float32)
    sigma = 2.0 * (emb.reshape(3, -1).max(1) - emb.reshape(3, -1).min(1))
    noisy = emb[None] + eps * sigma[None, :, None, None]
    grads = []
    for z in noisy:
        zt = tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            s = tail(zt)[:, 1]
        grads.append(tape.gradient(s, zt).numpy())
    expected = np.mean(grads, axis=0)
    sg = noise_tunnel_module.smoothgrad(model, ids, 1, layer="embedding", nt_samples=5, stdevs=2.0, noise=eps)
    np.testing.assert_allclose(sg.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert np.abs(expected - tpa.gradients(model, ids, 1, layer="embedding").numpy()).max() > 20 * (
        1e-4 * np.abs(expected).max() + 1e-6
    )  # the noise matters
    # the noise tunnel over IG with the layer's baseline options (captum's zero_input too)
    ig = tpa.noise_tunnel(
        "ig", model, ids, 1, layer="embedding", nt_samples=5, stdevs=2.0, noise=eps, n_steps=16, baseline="zero_input"
    )
    zero_emb = model.get_layer("embedding")(np.zeros_like(ids)).numpy()
    ref = np.mean([tpa.integrated_gradients(tail, z, 1, baseline=zero_emb, n_steps=16).numpy() for z in noisy], axis=0)
    np.testing.assert_allclose(ig.numpy(), ref, rtol=1e-4, atol=1e-6)


def test_noise_tunnel_layer_refuses_a_base_method_without_layer():
    from tf_pathattr.testing import models as zoo

    model = zoo.text_model()
    with pytest.raises(ValueError, match="layer="):
        tpa.noise_tunnel("agi", model, zoo.ids(2), 1, layer="embedding", nt_samples=2)
