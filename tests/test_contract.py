"""One contract for every registered attribution method (issue 9), parametrised from the registry.

A method gets every test here by being registered (``tf_pathattr.methods.registry``): the tests
read its ``MethodSpec`` (capabilities, ``test_options``, ``batch_tolerance``, ``output``...) and
never a method name, except in the table :data:`KNOWN_DEFECTS` below.

The contract: an example explained inside a batch gets its result alone; ``internal_batch_size``
only bounds memory; the target kinds (int, ``B`` ints, callable, tf-keras-vis ``CategoricalScore``)
agree; list and dict multi-input models work (or the declared refusal); ``layer=`` on a text model
equals the method on the model's tail (or the declared refusal); new inputs, targets and seeds do
not retrace; seeds are reproducible and matter; a feature the output ignores gets exactly zero; a
batch of one works; float64 and mixed-precision models give float32 results close to the float32
model; XLA equals eager; bad inputs raise one ``ValueError`` / ``TypeError`` naming the argument.

Models come from the zoo (``tf_pathattr/testing/models.py``); the image model is ``dummy_feature_cnn`` (8x8x3,
rows 0-1 ignored by the model).
"""

import re

import numpy as np
import pytest
import tensorflow as tf
from tf_keras_vis.utils.scores import CategoricalScore

from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods import registry
from tf_pathattr.testing import models as zoo

SPECS = registry.specs()

# --------------------------------------------------------------------------------------------------
# KNOWN_DEFECTS: the only place that names methods. Each entry is a contract check that fails on
# today's code because of a tracked defect; it runs as xfail(strict=True), so the suite stays green
# and the fix turns the entry into an XPASS failure until the entry is removed here.
# Key: (test function name, canonical method name), or (test, method, case id) for one case of a
# parametrised test; a (test, method) entry covers every case. Reasons cite issue 9 (defect numbers
# as in the issue; "contract" = a contract item of the issue with no defect number of its own).

_DRAWS_DEPEND_ON_B = (
    "issue 9 contract batch=per-example: random draws are shaped by the whole batch from one seed, "
    "so an example's draws change with B and its position ({where}); draw per example (fold the "
    "example index into the seed) or declare batch_tolerance with the cause"
)
_MIXED = (
    "issue 9 contract mixed precision: amplifies the mixed model's own rounding ~40x (float16 4e-2, bfloat16 "
    "2e-1 relative L2 vs 1e-3 / 5e-3 for plain gradients) -- {why}"
)

KNOWN_DEFECTS = {
    # dicts are mappings
    # targets and seeds
    (
        "test_target_kinds_agree",
        "adversarial_gradient_integration",
    ): "issue 9 registry: AGI refuses callable targets with a clear ValueError (agi.py:227: it needs a class "
    "index), but the registry cannot declare that; add a MethodSpec capability (e.g. callable_target=<reason>) "
    "and let test_target_kinds_agree expect the declared refusal",
    # mixed precision
    ("test_dtype_policies", "ig2", "mixed_float16"): _MIXED.format(
        why="GradPath's normalised steps follow the float16 gradient direction; measured 3.1e-2"
    ),
    ("test_dtype_policies", "ig2", "mixed_bfloat16"): _MIXED.format(
        why="GradPath's normalised steps follow the bfloat16 gradient direction; measured 2.1e-1"
    ),
    ("test_dtype_policies", "integrated_decision_gradients", "mixed_float16"): _MIXED.format(
        why="sample allocation from differences of float16 logits between coarse points; measured 4.3e-2"
    ),
    ("test_dtype_policies", "integrated_decision_gradients", "mixed_bfloat16"): _MIXED.format(
        why="sample allocation from differences of bfloat16 logits between coarse points; measured 2.2e-1"
    ),
    # real architectures (tests/test_architectures.py reads this table too)
    (
        "test_real_architectures",
        "adversarial_gradient_integration",
        "multi_output",
    ): "issue 9 registry: AGI refuses the callable target a multi-output model needs (agi.py:227), and the "
    "registry cannot declare that (see test_target_kinds_agree)",
    # XLA = eager
    (
        "test_xla_equals_eager",
        "smooth_taylor",
    ): "issue 9 contract XLA = eager: smooth_taylor.py:48 draws tf.random.stateless_normal inside the compiled body; "
    "TF 2.21 on CPU gives a different stream under XLA (philox and auto_select alike; threefry has no CPU "
    "kernel), so jit_compile=True changes the noise (1.7 of max|attr|); draw outside XLA or with integer ops",
}


def _xfail_reason(test, name, case=None):
    """The KNOWN_DEFECTS reason for a (test, method[, case]); a (test, method) entry covers every case."""
    return KNOWN_DEFECTS.get((test, name, case)) or KNOWN_DEFECTS.get((test, name))


def methods(test, cases=None, slow_if=None):
    """``pytest.param`` per registered spec (and case), xfail(strict) where KNOWN_DEFECTS says so, and
    marked slow where ``slow_if(spec)`` (e.g. host-side methods in tests with many calls)."""
    out = []
    for spec in SPECS:
        for case in cases or [None]:
            reason = _xfail_reason(test, spec.name, case)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            if slow_if is not None and slow_if(spec):
                marks.append(pytest.mark.slow)
            values = (spec,) if cases is None else (spec, case)
            ident = spec.name if case is None else f"{spec.name}-{case}"
            out.append(pytest.param(*values, marks=marks, id=ident))
    return out


# --------------------------------------------------------------------------------------------------
# probes and helpers

B = 3
TARGETS = np.array([2, 0, 1])


@pytest.fixture(scope="module")
def image_model():
    return zoo.dummy_feature_cnn()


@pytest.fixture(scope="module")
def x_img():
    return np.random.default_rng(0).uniform(0.0, 1.0, (B, 8, 8, 3)).astype(np.float32)


def options(spec, x, **overrides):
    """``spec.test_options`` for the probe ``x``; callables are evaluated per input of a list / dict."""
    out = {}
    for k, v in spec.test_options.items():
        if callable(v):
            if isinstance(x, dict):
                v = {key: v(np.asarray(val)) for key, val in x.items()}
            elif isinstance(x, (list, tuple)):
                v = type(x)(v(np.asarray(val)) for val in x)
            else:
                v = v(np.asarray(x))
        out[k] = v
    out.update(overrides)
    return out


def explain(spec, model, x, target=None, opts_from=None, **overrides):
    """Run ``spec``'s method with its small test options (evaluated on ``opts_from``, default ``x``)."""
    opts = options(spec, x if opts_from is None else opts_from, **overrides)
    return spec.function(model, x, target, **opts)


def flat(result):
    """Every attribution array of a result as float64 numpy (dict entries sorted by key)."""
    return [np.asarray(a, np.float64) for a in tf.nest.flatten(result)]


def expected_shapes(spec, x):
    shapes = [tuple(np.shape(v)) for v in tf.nest.flatten(x)]
    if spec.output == "pixels":
        shapes = [s[:3] for s in shapes]
    if spec.output == "split":
        shapes = shapes * 2
    return shapes


def check_result(spec, result, x, nonzero=True):
    """Structure, shapes, float32, finite, and (by default) not all zero."""
    arrays = tf.nest.flatten(result)
    assert [tuple(a.shape) for a in arrays] == expected_shapes(spec, x)
    for a in arrays:
        assert tf.convert_to_tensor(a).dtype == tf.float32, f"{spec.name} returned {tf.convert_to_tensor(a).dtype}"
        assert np.all(np.isfinite(np.asarray(a))), f"{spec.name} returned non-finite attributions"
    if nonzero:
        assert max(np.abs(np.asarray(a)).max() for a in arrays) > 0, f"{spec.name} returned all zeros"


def rel_diff(a, b):
    """``max |a - b| / max |b|`` over all arrays of two results."""
    fa, fb = flat(a), flat(b)
    assert len(fa) == len(fb)
    scale = max(np.abs(v).max() for v in fb)
    assert scale > 0, "the reference result is all zeros"
    return max(np.abs(p - q).max() for p, q in zip(fa, fb)) / scale


def rel_l2(a, b):
    fa, fb = np.concatenate([v.ravel() for v in flat(a)]), np.concatenate([v.ravel() for v in flat(b)])
    return np.linalg.norm(fa - fb) / np.linalg.norm(fb)


def take(result, index):
    """Example ``index`` (kept as a batch of one) of every array of a result."""
    return tf.nest.map_structure(lambda a: np.asarray(a)[index : index + 1], result)


FLOAT_TOL = 1e-5  # float rounding of the model itself (different batch shapes, chunkings, code paths)


def _compiled_functions():
    """Every compiled ``tf.function`` the engine has cached (for every live model)."""
    return list(eng.CACHE.functions())


def tracing_count():
    fns = _compiled_functions()
    return len(fns), sum(f.experimental_get_tracing_count() for f in fns)


# --------------------------------------------------------------------------------------------------
# the table itself


def test_known_defects_table_names_registered_methods_and_tests():
    tests = {name for name in globals() if name.startswith("test_")} | {"test_real_architectures"}
    names = set(registry.names())
    for key, reason in KNOWN_DEFECTS.items():
        assert key[0] in tests, f"KNOWN_DEFECTS entry {key}: no test called {key[0]}"
        assert key[1] in names, f"KNOWN_DEFECTS entry {key}: {key[1]} is not a registered method"
        assert reason.startswith("issue "), f"KNOWN_DEFECTS entry {key}: reason must cite the issue"
        assert len(key) in (2, 3)


# --------------------------------------------------------------------------------------------------
# batching


@pytest.mark.parametrize("spec, kind", methods("test_batch_equals_per_example", ["smooth", "maxpool"]))
def test_batch_equals_per_example(spec, kind, x_img, image_model):
    if kind == "smooth":
        model, x = image_model, x_img
    else:
        model = _maxpool_model()
        x = np.random.default_rng(1).uniform(0.0, 1.0, (B, 16, 16, 3)).astype(np.float32)
    batch = explain(spec, model, x, TARGETS)
    check_result(spec, batch, x)
    tol = max(spec.batch_tolerance, FLOAT_TOL)
    for b in range(B):
        single = explain(spec, model, x[b : b + 1], TARGETS[b : b + 1], opts_from=x)
        err = rel_diff(take(batch, b), single)
        assert err <= tol, (
            f"example {b}: batch vs alone differ by {err:.3g} of max|attr| (declared {spec.batch_tolerance})"
        )


_MAXPOOL = {}


def _maxpool_model():
    if "m" not in _MAXPOOL:
        _MAXPOOL["m"] = zoo.maxpool_cnn(size=16)
    return _MAXPOOL["m"]


@pytest.mark.parametrize("spec", methods("test_batch_of_one"))
def test_batch_of_one(spec, x_img, image_model):
    for target in (None, 1, [2]):
        res = explain(spec, image_model, x_img[:1], target)
        check_result(spec, res, x_img[:1])


@pytest.mark.parametrize("spec", methods("test_internal_batch_size_does_not_change_results"))
def test_internal_batch_size_does_not_change_results(spec, x_img, image_model):
    one_point = explain(spec, image_model, x_img, TARGETS, internal_batch_size=B)
    all_points = explain(spec, image_model, x_img, TARGETS, internal_batch_size=100_000)
    check_result(spec, one_point, x_img)
    assert rel_diff(one_point, all_points) <= FLOAT_TOL


# --------------------------------------------------------------------------------------------------
# targets


@pytest.mark.parametrize("spec", methods("test_target_kinds_agree", slow_if=lambda spec: spec.host_side))
def test_target_kinds_agree(spec, x_img, image_model):
    same = explain(spec, image_model, x_img, 1)
    for other in ([1] * B, np.full(B, 1), lambda out: out[:, 1], CategoricalScore(1), CategoricalScore([1] * B)):
        assert rel_diff(explain(spec, image_model, x_img, other), same) <= FLOAT_TOL, other
    per_example = explain(spec, image_model, x_img, TARGETS)
    check_result(spec, per_example, x_img)
    picked = tf.constant(TARGETS, tf.int32)
    for other in (
        list(TARGETS),
        CategoricalScore(list(TARGETS)),
        lambda out: tf.gather(out, picked, axis=1, batch_dims=1),
    ):
        assert rel_diff(explain(spec, image_model, x_img, other), per_example) <= FLOAT_TOL, other
    predicted = np.argmax(image_model(x_img).numpy(), axis=1)
    assert rel_diff(explain(spec, image_model, x_img, None), explain(spec, image_model, x_img, predicted)) <= FLOAT_TOL


# --------------------------------------------------------------------------------------------------
# multi-input models


@pytest.fixture(scope="module")
def two_input():
    list_model, dict_model = zoo.two_input_models()
    rng = np.random.default_rng(3)
    xa = rng.uniform(0.0, 1.0, (B, 3)).astype(np.float32)
    xb = rng.uniform(0.0, 1.0, (B, 2)).astype(np.float32)
    return list_model, dict_model, xa, xb


def _refusal(spec, capability):
    """The declared refusal (a string), or None when the capability is supported."""
    value = getattr(spec, capability)
    return None if value is True else value


@pytest.mark.parametrize("spec", methods("test_list_inputs"))
def test_list_inputs(spec, two_input):
    list_model, _, xa, xb = two_input
    refusal = _refusal(spec, "multi_input")
    if refusal:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            explain(spec, list_model, [xa, xb], TARGETS)
        return
    res = explain(spec, list_model, [xa, xb], TARGETS)
    check_result(spec, res, [xa, xb])
    assert all(np.abs(a).max() > 0 for a in flat(res)), "an input got all-zero attributions"


@pytest.mark.parametrize("spec", methods("test_dict_inputs"))
def test_dict_inputs(spec, two_input):
    list_model, dict_model, xa, xb = two_input
    refusal = _refusal(spec, "multi_input")
    if refusal:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            explain(spec, dict_model, {"a": xa, "b": xb}, TARGETS)
        return
    res = explain(spec, dict_model, {"a": xa, "b": xb}, TARGETS)
    assert isinstance(res if spec.output != "split" else res[0], dict)
    check_result(spec, res, {"a": xa, "b": xb})
    # the same function as the list model: the same attributions, input by input
    assert rel_diff(res, explain(spec, list_model, [xa, xb], TARGETS)) <= FLOAT_TOL


@pytest.mark.parametrize("spec", methods("test_dict_key_order_does_not_matter"))
def test_dict_key_order_does_not_matter(spec, two_input):
    """A dict is a mapping: inputs (and dict-valued options) are paired by key, not by order."""
    _, dict_model, xa, xb = two_input
    if _refusal(spec, "multi_input"):
        pytest.skip(f"multi-input models not supported: {spec.multi_input}")
    in_order = {"a": xa, "b": xb}
    ref = explain(spec, dict_model, in_order, TARGETS)
    swapped = explain(spec, dict_model, {"b": xb, "a": xa}, TARGETS, opts_from=in_order)
    assert rel_diff(swapped, ref) <= FLOAT_TOL


# --------------------------------------------------------------------------------------------------
# layer= on a text model


@pytest.fixture(scope="module")
def text():
    model = zoo.text_model()
    return model, zoo.embedding_tail(model), zoo.ids(B)


@pytest.mark.parametrize("spec", methods("test_layer_on_text_model"))
def test_layer_on_text_model(spec, text):
    model, tail, ids = text
    refusal = _refusal(spec, "layer")
    if refusal:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            explain(spec, model, ids, TARGETS, layer="embedding")
        return
    emb = model.get_layer("embedding")(ids).numpy()
    res = explain(spec, model, ids, TARGETS, opts_from=emb, layer="embedding")
    check_result(spec, res, emb)
    # attribution to the embedding output = the same method on the layers after the embedding
    assert rel_diff(res, explain(spec, tail, emb, TARGETS)) <= FLOAT_TOL


# --------------------------------------------------------------------------------------------------
# tracing and seeds


@pytest.mark.parametrize("spec", methods("test_no_retrace_on_new_inputs_targets_or_seeds"))
def test_no_retrace_on_new_inputs_targets_or_seeds(spec, x_img, image_model):
    seed = {"seed": 11} if spec.stochastic else {}
    explain(spec, image_model, x_img, TARGETS, **seed)
    n_fns, n_traces = tracing_count()
    assert n_fns > 0 and n_traces > 0, "no compiled function found in the engine cache (update _compiled_functions)"
    explain(spec, image_model, x_img[::-1].copy(), TARGETS, opts_from=x_img, **seed)  # new input values
    explain(spec, image_model, x_img, TARGETS[::-1].copy(), **seed)  # new targets
    explain(spec, image_model, x_img, 0, **seed)  # an int target is B ints
    if spec.stochastic:
        explain(spec, image_model, x_img, TARGETS, seed=12)  # a new seed
    assert tracing_count() == (n_fns, n_traces), "a new input, target or seed retraced (or built a new function)"


@pytest.mark.parametrize("spec", methods("test_seed_reproducible_and_effective"))
def test_seed_reproducible_and_effective(spec, x_img, image_model):
    if not spec.stochastic:
        pytest.skip("not stochastic")
    a = explain(spec, image_model, x_img, TARGETS, seed=1)
    again = explain(spec, image_model, x_img, TARGETS, seed=1)
    for p, q in zip(flat(a), flat(again)):
        np.testing.assert_array_equal(p, q)
    other = explain(spec, image_model, x_img, TARGETS, seed=2)
    assert rel_diff(other, a) > 1e-3, "different seeds gave the same result (up to float noise)"


# --------------------------------------------------------------------------------------------------
# axioms and dtypes


@pytest.mark.parametrize("spec", methods("test_dummy_feature_gets_zero"))
def test_dummy_feature_gets_zero(spec, x_img, image_model):
    if spec.output == "pixels":
        pytest.skip("region scores average pixel attributions over segments (a dummy pixel shares its region's score)")
    res = explain(spec, image_model, x_img, TARGETS)
    for a in flat(res):
        assert np.all(a[:, zoo.DUMMY_ROWS] == 0.0), (
            f"max |attr| on ignored rows: {np.abs(a[:, zoo.DUMMY_ROWS]).max():.3g}"
        )
        assert np.abs(a[:, zoo.DUMMY_ROWS.stop :]).max() > 0


# Tolerance: relative L2 distance to the float32 model's attributions, per dtype policy. Measured
# on this model (tf_pathattr/testing/models.py dummy_feature_cnn, 3 images): plain gradients of the mixed models
# differ from float32 by 1.1e-3 (float16) and 5.0e-3 (bfloat16); IG, EG, Guided IG, Blur IG, Split
# IG, SmoothTaylor, the noise tunnel and XRAI stay within 1.2e-3 / 5.5e-3. The bounds allow 10x the
# model's own rounding; float64 models differ from float32 by the float32 rounding (< 1e-5).
DTYPE_TOL = {"float64": 1e-4, "mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}


@pytest.mark.parametrize("spec, dtype", methods("test_dtype_policies", list(DTYPE_TOL)))
def test_dtype_policies(spec, dtype, x_img, image_model):
    model = zoo.variant(zoo.dummy_feature_cnn, dtype)
    res = explain(spec, model, x_img, TARGETS)
    check_result(spec, res, x_img)
    err = rel_l2(res, explain(spec, image_model, x_img, TARGETS))
    assert err <= DTYPE_TOL[dtype], f"{dtype}: relative L2 distance to float32 {err:.3g}"


@pytest.mark.parametrize("spec", methods("test_xla_equals_eager"))
def test_xla_equals_eager(spec, x_img, image_model):
    if spec.host_side:
        pytest.skip("host-side method: not one compiled function")
    eager = explain(spec, image_model, x_img, TARGETS, jit_compile=False)
    xla = explain(spec, image_model, x_img, TARGETS, jit_compile=True)
    check_result(spec, xla, x_img)
    err = rel_diff(xla, eager)
    assert err <= 1e-4, f"XLA vs eager: {err:.3g} of max|attr|"


# --------------------------------------------------------------------------------------------------
# bad inputs: one clear ValueError / TypeError naming the argument


def _bad_case(case, spec, x_img, image_model, text):
    """``(call, pattern)``: the call must raise ValueError or TypeError whose message matches ``pattern``."""
    model = image_model
    if case == "wrong_rank":
        x = x_img[..., 0]
        return lambda: explain(spec, model, x, TARGETS), r"inputs.*\(3, 8, 8\)"
    if case == "missing_batch_axis":
        x = x_img[0]
        return lambda: explain(spec, model, x, 1), r"inputs.*(?i:batch).*\(8, 8, 3\)|inputs.*\(8, 8, 3\).*(?i:batch)"
    if case == "nan":
        x = x_img.copy()
        x[1, 3, 3, 0] = np.nan
        return lambda: explain(spec, model, x, TARGETS, opts_from=x_img), r"inputs.*NaN"
    if case == "inf":
        x = x_img.copy()
        x[1, 3, 3, 0] = np.inf
        return lambda: explain(spec, model, x, TARGETS, opts_from=x_img), r"inputs.*(?i:inf)"
    if case == "int_inputs_without_layer":
        tmodel, _, ids = text
        pattern = r"inputs.*(?i:integer).*layer=" if spec.layer is True else r"inputs.*(?i:integer)"
        return lambda: explain(spec, tmodel, ids, TARGETS), pattern
    if case == "float_ids_into_embedding":
        tmodel, _, ids = text
        fids = ids.astype(np.float32)
        pattern = r"(?i)(embedding|gradient)"
        if spec.image_only:  # an image method refusing a non-image input is a clear answer too
            pattern = pattern + r"|inputs.*(?i:image)|(?i:image).*inputs"
        return lambda: explain(spec, tmodel, fids, TARGETS), pattern
    if case == "target_out_of_range":
        return lambda: explain(spec, model, x_img, 99), r"target.*(?i:range)"
    if case == "unknown_option":
        return lambda: explain(spec, model, x_img, TARGETS, bogus_option=1), r"bogus_option"
    raise AssertionError(case)


BAD_CASES = [
    "wrong_rank",
    "missing_batch_axis",
    "nan",
    "inf",
    "int_inputs_without_layer",
    "float_ids_into_embedding",
    "target_out_of_range",
    "unknown_option",
]


@pytest.mark.parametrize("spec, case", methods("test_bad_input", BAD_CASES))
def test_bad_input(spec, case, x_img, image_model, text):
    call, pattern = _bad_case(case, spec, x_img, image_model, text)
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert re.search(pattern, message, re.S), f"{type(info.value).__name__}: {message}"
    # raised by tf_pathattr's own checks, not from deep inside the model call
    assert "Exception encountered when calling" not in message, message
    if case == "int_inputs_without_layer" and spec.layer is not True:
        # a method that cannot take layer= must not advise passing it
        assert not re.search(r"(?i)pass layer=", message), message


# --------------------------------------------------------------------------------------------------
# public names (issue 18 item 9)


def _public_callable(spec):
    """The registered function, or for a private by-name adapter (``_noise_tunnel_by_name``) the
    module's public function of the method's name (``tpa.noise_tunnel(method, model, ...)``)."""
    import importlib

    fn = spec.function
    if fn.__name__.startswith("_"):
        return getattr(importlib.import_module(fn.__module__), spec.name)
    return fn


@pytest.mark.parametrize("spec", methods("test_every_name_and_alias_is_public"))
def test_every_name_and_alias_is_public(spec):
    import tf_pathattr as tpa

    expected = _public_callable(spec)
    if expected is not spec.function:  # the adapter runs the public function by name
        assert spec.function.__module__ == expected.__module__
    for name in (spec.name,) + registry.aliases_of(spec.name):
        assert getattr(tpa, name, None) is expected, f"tpa.{name} is not the registered {spec.name}"


# --------------------------------------------------------------------------------------------------
# image layout read from the model (issue 18 item 4)


@pytest.fixture(scope="module")
def channels_first():
    return zoo.dummy_feature_cnn_channels_first(), zoo.permuted_input_cnn()


def _to_channels_last(spec, result):
    """A channels-first result in the channels-last layout (pixel maps have no channel axis)."""
    if spec.output == "pixels":
        return result
    return tf.nest.map_structure(lambda a: np.transpose(np.asarray(a), (0, 2, 3, 1)), result)


@pytest.mark.parametrize(
    "spec",
    [
        p
        for p in methods("test_image_layout_is_read_from_the_model", slow_if=lambda spec: spec.host_side)
        if p.values[0].image_only
    ],
)
def test_image_layout_is_read_from_the_model(spec, x_img, image_model, channels_first):
    """An image method on a channels-first model takes the layout from the model (not from the global
    ``keras.config.image_data_format()``); an explicit ``data_format=`` contradicting it, or a model whose
    layout cannot be read, is a ``ValueError`` naming ``data_format=``."""
    import keras

    cf_model, permuted = channels_first
    assert keras.config.image_data_format() == "channels_last"
    x_cf = np.transpose(x_img, (0, 3, 1, 2)).copy()
    reference = explain(spec, image_model, x_img, TARGETS)
    shaped_like = x_img if spec.output == "pixels" else x_cf  # a pixel map is [B, H, W] in both layouts
    from_model = explain(spec, cf_model, x_cf, TARGETS, opts_from=x_img)
    check_result(spec, from_model, shaped_like)
    assert rel_diff(_to_channels_last(spec, from_model), reference) <= 1e-4
    explicit = explain(spec, cf_model, x_cf, TARGETS, opts_from=x_img, data_format="channels_first")
    assert rel_diff(explicit, from_model) <= FLOAT_TOL
    with pytest.raises(ValueError, match=r"data_format='channels_last' contradicts the model"):
        explain(spec, cf_model, x_cf, TARGETS, opts_from=x_img, data_format="channels_last")
    with pytest.raises(ValueError, match=r"cannot be read from the model.*data_format="):
        explain(spec, permuted, x_cf, TARGETS, opts_from=x_img)
    given = explain(spec, permuted, x_cf, TARGETS, opts_from=x_img, data_format="channels_first")
    check_result(spec, given, shaped_like)


# --------------------------------------------------------------------------------------------------
# the ledger only shrinks (issue 18)

# The number of KNOWN_DEFECTS entries on the day the rule was set (issue 18). Lower it when an entry is
# removed; never raise it: a new contract failure is fixed, or declared in the registry with its cause.
KNOWN_DEFECTS_CEILING = 8


def test_known_defects_ledger_only_shrinks_and_every_entry_carries_its_diagnosis():
    assert len(KNOWN_DEFECTS) <= KNOWN_DEFECTS_CEILING, (
        f"KNOWN_DEFECTS grew to {len(KNOWN_DEFECTS)} entries (ceiling {KNOWN_DEFECTS_CEILING}): fix the defect "
        "instead of adding an xfail"
    )
    for key, reason in KNOWN_DEFECTS.items():
        # a diagnosis names where the defect is (file.py:line) or what was measured, not only what fails
        assert re.search(r"\w+\.py:\d+|measured \d", reason), f"KNOWN_DEFECTS entry {key} has no diagnosis: {reason}"
    # xfail marks come from the ledger only (tests/test_architectures.py reads it too)
    import pathlib

    here = pathlib.Path(__file__).parent
    for path in here.rglob("test_*.py"):
        if path.name in ("test_contract.py", "test_architectures.py"):
            continue
        assert "mark.xfail" not in path.read_text(), f"{path.name}: an xfail outside the KNOWN_DEFECTS ledger"


# wrapping methods take their base method's baselines (issue 18 item 1)


def _wrapper_default_base(spec):
    import inspect

    return inspect.signature(spec.function).parameters["base_method"].default


@pytest.mark.parametrize(
    "spec", [s for s in methods("test_wrapping_methods_take_the_base_baseline") if s.values[0].wraps_method]
)
def test_wrapping_methods_take_the_base_baseline(spec, x_img, image_model):
    """A wrapping method declares the baseline option of its (default) base method and passes the
    baseline on: the result changes with it, and a complete wrapper meets the base target with it."""
    base = registry.get(_wrapper_default_base(spec))
    assert spec.baseline_option == base.baseline_option, (spec.baseline_option, base.baseline_option)
    assert registry.wrapped_baseline_option(spec, {}) == base.baseline_option
    option = base.baseline_option
    assert option is not None
    half = np.full_like(x_img, 0.5)
    with_zero = explain(spec, image_model, x_img, TARGETS, **{option: np.zeros_like(x_img)})
    with_half = explain(spec, image_model, x_img, TARGETS, **{option: half})
    assert rel_diff(with_half, with_zero) > 1e-3, "the baseline was ignored"
    if spec.completeness is not None:
        res, delta = explain(spec, image_model, x_img, TARGETS, return_convergence_delta=True, **{option: x_img})
        np.testing.assert_allclose(np.asarray(delta), 0.0, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# captum's layer baseline (issue 18 item 10)


def _takes_layer_and_baseline(spec):
    return spec.layer is True and registry.wrapped_baseline_option(spec, {}) == "baseline"


@pytest.mark.parametrize(
    "spec", [p for p in methods("test_zero_input_layer_baseline") if _takes_layer_and_baseline(p.values[0])]
)
def test_zero_input_layer_baseline(spec, text):
    """Every method with layer= and a baseline accepts baseline="zero_input" (the layer's activation at
    an all-zero model input: here the embedding of id 0 at every position) and equals the same method
    on the model's tail from that embedding; complete methods meet F(x) - F(0 input)."""
    model, tail, ids = text
    emb = model.get_layer("embedding")(ids).numpy()
    zero_emb = model.get_layer("embedding")(np.zeros_like(ids)).numpy()
    res = explain(spec, model, ids, TARGETS, opts_from=emb, layer="embedding", baseline="zero_input")
    check_result(spec, res, emb)
    assert rel_diff(res, explain(spec, tail, emb, TARGETS, baseline=zero_emb)) <= FLOAT_TOL
    if spec.completeness is None or spec.stochastic or spec.output != "inputs":
        return  # the noise tunnel's target is mean_j F(x + eps_j) - F(x'); Split IG returns two parts
    attr, delta = explain(
        spec,
        model,
        ids,
        TARGETS,
        opts_from=emb,
        layer="embedding",
        baseline="zero_input",
        return_convergence_delta=True,
    )
    delta = np.asarray(delta)
    if delta.ndim != 1:
        return  # SIG: one delta per word
    out_x, out_0 = model(ids).numpy(), model(np.zeros_like(ids)).numpy()
    gap = out_x[np.arange(B), TARGETS] - out_0[np.arange(B), TARGETS]
    total = np.asarray(attr).reshape(B, -1).sum(1)
    np.testing.assert_allclose(total - delta, gap, rtol=1e-4, atol=1e-5)
