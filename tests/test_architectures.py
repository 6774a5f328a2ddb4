"""Real architectures through every method that applies (issue 9): the registry's capabilities decide.

keras.applications MobileNetV3Small and EfficientNetV2B0 at 96x96 (random weights with BatchNorm
statistics calibrated on 8 random images, their own preprocessing layers, inputs in [0, 255]), a nested model, an image model with two outputs explained
through a callable target, an LSTM on float sequences and an Embedding + GRU text model explained
with ``layer="embedding"``. Batch of 2, the registry's small ``test_options``. Each result has the
inputs' structure, is float32, finite and not all zero, and example 0 explained alone gets the same
result within the method's declared ``batch_tolerance``.
"""

import keras
import numpy as np
import pytest
from test_contract import KNOWN_DEFECTS, check_result, explain, rel_diff, take

from tf_pathattr.methods import registry
from tf_pathattr.testing import models as zoo

pytestmark = pytest.mark.slow


def mobilenet_v3_small():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), include_top=False, weights=None, pooling="avg", include_preprocessing=True
    )
    inp = keras.Input((96, 96, 3))
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(base(inp)))
    zoo.calibrate_batchnorm(model, _images(96, batch=8, seed=5))
    return model


def efficientnet_v2_b0():
    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetV2B0(
        input_shape=(96, 96, 3), weights=None, classes=10, classifier_activation=None, include_preprocessing=True
    )
    zoo.calibrate_batchnorm(model, _images(96, batch=8, seed=5))
    return model


def _images(size, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 255.0, (batch, size, size, 3)).astype(np.float32)


# name -> (builder, probe, target, kind); kind "image", "sequence" or "text" (explained with layer=)
ARCHS = {
    "mobilenet_v3_small": (mobilenet_v3_small, lambda: _images(96), [3, 7], "image"),
    "efficientnet_v2_b0": (efficientnet_v2_b0, lambda: _images(96), [3, 7], "image"),
    "nested": (zoo.nested_cnn, lambda: _images(16), [0, 3], "image"),
    "multi_output": (
        zoo.multi_output_cnn,
        lambda: _images(16) / 255.0,
        lambda outs: outs[0][:, 1] - outs[1][:, 0],
        "image",
    ),
    "lstm": (
        zoo.lstm_model,
        lambda: np.random.default_rng(0).normal(size=(2, 10, 4)).astype(np.float32),
        [0, 2],
        "sequence",
    ),
    "gru_text": (lambda: zoo.text_model(recurrent=True), lambda: zoo.ids(2), [0, 2], "text"),
}

_BUILT = {}


def _model(arch):
    if arch not in _BUILT:
        _BUILT[arch] = ARCHS[arch][0]()
    return _BUILT[arch]


def _applies(spec, kind):
    if kind == "text":
        return spec.layer is True
    if spec.image_only is not True and kind != "image" and spec.image_only:
        return False
    return True


def _params():
    out = []
    for arch, (_, _, _, kind) in ARCHS.items():
        for spec in registry.specs():
            reason = KNOWN_DEFECTS.get(("test_real_architectures", spec.name, arch))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            if not _applies(spec, kind):
                marks.append(pytest.mark.skip(reason=f"not applicable to {kind} inputs (registry capabilities)"))
            out.append(pytest.param(arch, spec, marks=marks, id=f"{arch}-{spec.name}"))
    return out


@pytest.mark.parametrize("arch, spec", _params())
def test_real_architectures(arch, spec):
    _, probe, target, kind = ARCHS[arch]
    model, x = _model(arch), probe()
    if kind == "text":
        emb = model.get_layer("embedding")(x).numpy()
        res = explain(spec, model, x, target, opts_from=emb, layer="embedding")
        check_result(spec, res, emb)
        return
    res = explain(spec, model, x, target)
    check_result(spec, res, x)
    if callable(target):
        return  # a callable written for B rows cannot explain one example alone
    if ("test_batch_equals_per_example", spec.name) in KNOWN_DEFECTS:
        return  # tracked in test_contract.py (the draws depend on the batch)
    single = explain(spec, model, x[:1], target[:1], opts_from=x)
    assert rel_diff(take(res, 0), single) <= max(spec.batch_tolerance, 1e-4)
