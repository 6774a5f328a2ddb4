"""Blur IG: the blur operator against scipy, the sigma schedule, chunk invariance, parity with PAIR
``saliency``'s BlurIG, completeness convergence and input errors (specs/blur_ig.md section 7)."""

import math

import keras
import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf

from tf_pathattr.methods.blur_ig import (
    blur_integrated_gradients,
    blur_matrix,
    gaussian_blur,
    gaussian_kernel1d,
    sigma_schedule,
)
from tf_pathattr.testing import models as zoo
from tf_pathattr.testing import reference

SIGMAS = [0.0, 0.01, 0.124, 0.125, 0.5, 3.0, 50.0]


def scipy_blur(img, sigma):
    """The package's blur (PAIR ``gaussian_blur``): identity at 0, else scipy with zero padding."""
    if sigma == 0:
        return img
    return ndi.gaussian_filter(img, sigma=[sigma, sigma, 0], mode="constant")


def pair_callback(model, target):
    """PAIR call_model_function: gradient of logit[target] (float32 model, float64 in/out)."""

    @tf.function
    def grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = tf.reduce_sum(model(z, training=False)[:, target])
        return tape.gradient(s, z)

    def fn(x_batch, call_model_args=None, expected_keys=None):
        g = grad(tf.constant(np.asarray(x_batch), tf.float32)).numpy()
        return {reference.saliency.INPUT_OUTPUT_GRADIENTS: g.astype(np.float64)}

    return fn


def tanh_mlp(size=16, hidden=32, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


# ------------------------------------------------------------------------------------------------ blur operator


@pytest.mark.parametrize("sigma", SIGMAS)
def test_blur_matches_scipy_on_non_square_images(sigma):
    rng = np.random.default_rng(1)
    img = rng.random((13, 21, 3))
    ref = scipy_blur(img, sigma)
    out64 = gaussian_blur(img, sigma).numpy()
    np.testing.assert_allclose(out64, ref, rtol=0, atol=1e-12)
    out32 = gaussian_blur(img[None].astype(np.float32), sigma).numpy()[0]
    np.testing.assert_allclose(out32, ref, rtol=0, atol=1e-6)
    if sigma < 0.125:  # radius int(4 s + 0.5) = 0: exactly the identity
        assert np.array_equal(out32, img[None].astype(np.float32)[0])
        assert np.array_equal(blur_matrix(13, sigma), np.eye(13))


def test_kernel_radius_and_normalisation():
    assert len(gaussian_kernel1d(0.124)) == 1
    assert len(gaussian_kernel1d(0.125)) == 3  # int(0.5 + 0.5) = 1
    assert len(gaussian_kernel1d(50.0)) == 2 * 200 + 1
    for s in SIGMAS:
        assert math.isclose(gaussian_kernel1d(s).sum(), 1.0, rel_tol=1e-14)


def test_large_sigma_darkens_borders():
    img = np.ones((20, 30, 2))
    out = gaussian_blur(img, 50.0).numpy()
    np.testing.assert_allclose(out, scipy_blur(img, 50.0), atol=1e-12)
    assert out[0, 0, 0] < out[10, 15, 0] < 1.0  # zero padding, no renormalisation
    assert out.max() < 0.2


# ------------------------------------------------------------------------------------------------ path


def test_sigma_schedule_linear_and_sqrt():
    lin = sigma_schedule(50.0, 100)
    np.testing.assert_allclose(lin, np.arange(101) * 0.5)
    sq = sigma_schedule(50.0, 100, sqrt=True)
    np.testing.assert_allclose(sq, np.sqrt(np.arange(101) * 0.5))
    assert math.isclose(sq[-1], math.sqrt(50.0))
    np.testing.assert_allclose(np.diff(sq)[:2], [math.sqrt(0.5), 1 - math.sqrt(0.5)])


def test_first_step_contributes_exactly_zero():
    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    # one step: sigma_0 = 0 and 0 + grad_step = 0.01 are both the identity
    a1 = blur_integrated_gradients(model, x, 3, n_steps=1).numpy()
    assert np.array_equal(a1, np.zeros_like(a1))
    # with max_sigma / n_steps < 0.125 - grad_step both blurs of step 1 are the identity too
    a2 = blur_integrated_gradients(model, x, 3, n_steps=2, max_sigma=0.2).numpy()
    assert np.array_equal(a2, np.zeros_like(a2))
    # but not when the step reaches the first non-trivial kernel
    a3 = blur_integrated_gradients(model, x, 3, n_steps=1, grad_step=0.5).numpy()
    assert np.abs(a3).max() > 0


@pytest.mark.parametrize("sqrt", [False, True])
def test_chunk_size_does_not_change_the_result(sqrt):
    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(2).random((2, 12, 12, 3)).astype(np.float32)
    kw = dict(n_steps=50, sqrt=sqrt)
    a1 = blur_integrated_gradients(model, x, 1, internal_batch_size=2, **kw).numpy()  # chunk 1
    a25 = blur_integrated_gradients(model, x, 1, internal_batch_size=50, **kw).numpy()  # chunk 25
    a7 = blur_integrated_gradients(model, x, 1, internal_batch_size=14, **kw).numpy()  # 7 + remainder
    scale = np.abs(a1).max()
    assert np.abs(a25 - a1).max() <= 1e-6 * scale
    assert np.abs(a7 - a1).max() <= 1e-6 * scale


# ------------------------------------------------------------------------------------------------ parity


def test_parity_with_saliency_blur_ig():
    model = zoo.smooth_cnn(16)
    x = np.random.default_rng(3).random((2, 16, 16, 3)).astype(np.float32)
    ours = blur_integrated_gradients(model, x, 5).numpy()
    cmf = pair_callback(model, 5)
    for b in range(2):
        ref = reference.saliency.BlurIG().GetMask(x[b].astype(np.float64), cmf, batch_size=32)
        err = np.abs(ours[b] - ref).max() / np.abs(ref).max()
        assert err < 1e-5, err


def test_sqrt_widths_are_per_step_unlike_the_package_batch_quirk():
    model = tanh_mlp(8, 8)
    x = np.random.default_rng(4).random((1, 8, 8, 3)).astype(np.float32)
    ours = blur_integrated_gradients(model, x, 0, n_steps=50, sqrt=True, internal_batch_size=25).numpy()[0]
    cmf = pair_callback(model, 0)
    ref1 = reference.saliency.BlurIG().GetMask(x[0].astype(np.float64), cmf, steps=50, sqrt=True, batch_size=1)
    ref25 = reference.saliency.BlurIG().GetMask(x[0].astype(np.float64), cmf, steps=50, sqrt=True, batch_size=25)
    scale = np.abs(ref1).max()
    assert np.abs(ours - ref1).max() < 1e-5 * scale  # correct widths == the package at batch_size 1
    assert np.abs(ref25 - ref1).max() > 1e-2 * scale  # the package's batched sqrt quirk is real


# ------------------------------------------------------------------------------------------------ completeness


def test_convergence_delta_matches_an_independent_target():
    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(5).random((2, 12, 12, 3)).astype(np.float32)
    attr, delta = blur_integrated_gradients(
        model, x, 2, n_steps=20, max_sigma=6.0, sqrt=True, return_convergence_delta=True
    )
    end = np.stack([scipy_blur(x[b].astype(np.float64), math.sqrt(6.0)) for b in range(2)]).astype(np.float32)
    target = model(x).numpy()[:, 2] - model(end).numpy()[:, 2]
    np.testing.assert_allclose(delta.numpy(), attr.numpy().reshape(2, -1).sum(1) - target, atol=1e-5)


@pytest.mark.slow
def test_sum_converges_to_completeness_target():
    model = tanh_mlp(16, 32)
    x = np.random.default_rng(6).random((1, 16, 16, 3)).astype(np.float32)
    gaps = {}
    for n in (100, 1000):
        attr, delta = blur_integrated_gradients(model, x, 0, n_steps=n, return_convergence_delta=True)
        gaps[n] = abs(float(delta.numpy()[0]))
    end = scipy_blur(x[0].astype(np.float64), 50.0)[None].astype(np.float32)
    target = float(model(x).numpy()[0, 0] - model(end).numpy()[0, 0])
    assert abs(target) > 1e-3
    assert gaps[1000] < gaps[100] / 5, (gaps, target)


# ------------------------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors():
    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(0).random((1, 12, 12, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        blur_integrated_gradients(lambda z: tf.reduce_sum(z, axis=1)[:, None], x[:, :, 0, 0])
    with pytest.raises(TypeError, match="integer dtype int32: .*convert integer images") as info:
        blur_integrated_gradients(model, (x * 255).astype(np.int32))
    assert "Pass layer=" not in str(info.value)  # Blur IG cannot take layer=
    with pytest.raises(ValueError, match="max_sigma"):
        blur_integrated_gradients(model, x, max_sigma=0.0)
    with pytest.raises(ValueError, match="grad_step"):
        blur_integrated_gradients(model, x, grad_step=-0.1)
    with pytest.raises(ValueError, match="n_steps"):
        blur_integrated_gradients(model, x, n_steps=0)
    with pytest.raises(TypeError, match="n_steps"):
        blur_integrated_gradients(model, x, n_steps=10.0)


def test_alias_dispatch():
    import tf_pathattr as tpa

    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(8).random((2, 12, 12, 3)).astype(np.float32)
    a = blur_integrated_gradients(model, x, 1, n_steps=20).numpy()  # XLA: tests/test_contract.py
    np.testing.assert_array_equal(tpa.attribute(model, x, 1, method="blur_ig", n_steps=20).numpy(), a)


def test_plan_body_runs_on_new_inputs():
    """The planned body depends on the inputs only through flat_x (export / callback embedding)."""
    model = zoo.smooth_cnn(12)
    x = np.random.default_rng(9).random((2, 12, 12, 3)).astype(np.float32)
    x_new = np.random.default_rng(10).random((2, 12, 12, 3)).astype(np.float32)
    plan = blur_integrated_gradients.plan(model, x, 1, n_steps=10)
    out = tf.function(plan.python_fn)([tf.constant(x_new)], plan.problem.target.indices, *plan.extra_args)
    np.testing.assert_allclose(
        out[0][0].numpy(), blur_integrated_gradients(model, x_new, 1, n_steps=10).numpy(), rtol=1e-5, atol=1e-9
    )


# ------------------------------------------------------------------------------------------------
# data_format (issue 9 defect 6): channels-first images are blurred along H and W, never along C


def _cl_and_cf_models(h=8, w=6, c=3, seed=0):
    """The same network on channels-last input and on channels-first input (a Permute in front)."""
    keras.utils.set_random_seed(seed)
    body = [
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ]
    cl_in, cf_in = keras.Input((h, w, c)), keras.Input((c, h, w))
    a, b = cl_in, keras.layers.Permute((2, 3, 1))(cf_in)
    for lay in body:
        a, b = lay(a), lay(b)
    return keras.Model(cl_in, a), keras.Model(cf_in, b)


def test_channels_first_images_follow_data_format():
    cl_model, cf_model = _cl_and_cf_models()
    x = np.random.default_rng(0).random((2, 8, 6, 3)).astype(np.float32)
    x_cf = np.transpose(x, (0, 3, 1, 2))
    ref = blur_integrated_gradients(cl_model, x, 1, max_sigma=3.0, n_steps=8).numpy()
    got = blur_integrated_gradients(cf_model, x_cf, 1, max_sigma=3.0, n_steps=8, data_format="channels_first")
    assert got.shape == x_cf.shape
    np.testing.assert_allclose(np.transpose(got.numpy(), (0, 2, 3, 1)), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    # a Permute before the first Conv2D hides the layout: refused without data_format= (issue 18 item 4), even
    # when keras.config.image_data_format() happens to be right (it is not read for a model with image layers)
    saved = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="cannot be read from the model.*data_format="):
            blur_integrated_gradients(cf_model, x_cf, 1, max_sigma=3.0, n_steps=8)
    finally:
        keras.config.set_image_data_format(saved)
    with pytest.raises(ValueError, match="data_format must be one of"):
        blur_integrated_gradients(cl_model, x, 1, n_steps=2, data_format="NHWC")


def test_grayscale_images_without_a_channel_axis():
    keras.utils.set_random_seed(1)
    gray = keras.Sequential(
        [
            keras.Input((8, 6)),
            keras.layers.Reshape((8, 6, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    x = np.random.default_rng(1).random((2, 8, 6)).astype(np.float32)
    got = blur_integrated_gradients(gray, x, 0, max_sigma=2.0, n_steps=8)
    keras.utils.set_random_seed(1)
    with_c = keras.Sequential(
        [keras.Input((8, 6, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    with_c.set_weights(gray.get_weights())
    ref = blur_integrated_gradients(with_c, x[..., None], 0, max_sigma=2.0, n_steps=8).numpy()[..., 0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
