"""tpa.text on keras-hub task models built from tiny configs (no downloads) and on plain Keras models."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods import registry
from tf_pathattr.testing import hub_models

keras_hub = pytest.importorskip("keras_hub")

V = 100


@pytest.fixture(scope="module")
def models():
    return {"gpt2": hub_models.tiny_gpt2(V), "gemma": hub_models.tiny_gemma(V), "bert": hub_models.tiny_bert(V)}


def batch(name, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(2, length)).astype("int32")
    mask = np.ones((2, length), "int32")
    mask[1, length - 2 :] = 0
    ids[1, length - 2 :] = 0
    x = {"token_ids": ids, "padding_mask": mask}
    if name == "bert":
        x["segment_ids"] = np.zeros_like(ids)
    return x


def target_for(name):
    return 1 if name == "bert" else tpa.text.next_token()


def method_options(spec, model, x):
    emb = tpa.layer_activations(model, tpa.text.find_token_embedding(model), x).numpy()
    opts = spec.options_for(emb)
    if spec.name == "ig2":  # keras-hub LM heads have no keras.layers.Dense for IG2's default representation:
        opts["representation"] = lambda z: z  # steer GradPath by the distance in the embedding space itself
    return opts


@pytest.mark.parametrize("name", ["gpt2", "gemma", "bert"])
@pytest.mark.parametrize("method", registry.names())
def test_every_registered_method_runs_on_each_keras_hub_model(models, name, method):
    spec = registry.get(method)
    model, x = models[name], batch(name)
    opts = method_options(spec, model, x)
    if spec.layer is not True:
        with pytest.raises(ValueError, match=re.escape(spec.layer)):
            tpa.text.token_attributions(model, x, target_for(name), method=method, **opts)
        return
    res = tpa.text.token_attributions(model, x, target_for(name), method=method, **opts)
    assert res.attributions.shape == (2, 8, 16) and res.scores.shape == (2, 8)
    assert np.all(np.isfinite(res.attributions))
    np.testing.assert_array_equal(res.attributions[1, 6:], 0.0)  # padding: exactly 0 and excluded
    assert not res.mask[1, 6:].any() and res.mask[0].all()
    assert np.max(np.abs(res.scores)) > 0.0
    reduced = res.attributions.sum(-1) if spec.completeness is not None else res.l2
    assert res.reduction == ("sum" if spec.completeness is not None else "l2")
    np.testing.assert_allclose(res.scores, reduced, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.l2, np.linalg.norm(res.attributions, axis=-1), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["gpt2", "gemma", "bert"])
def test_ig_completeness_with_the_padding_baseline(models, name):
    model, x = models[name], batch(name)
    target = target_for(name)
    res = tpa.text.token_attributions(model, x, target, n_steps=64, return_convergence_delta=True)
    # independent F(x) - F(x'): the model on padded ids (pad id 0 at the attributed positions)
    pad = dict(x, token_ids=np.where(res.mask, 0, x["token_ids"]).astype("int32"))
    if name == "bert":
        fx, fb = model(x).numpy()[:, 1], model(pad).numpy()[:, 1]
    else:
        pos = np.array([7, 5])
        tok = res.target_tokens
        fx = tf.nn.log_softmax(model(x).numpy()[np.arange(2), pos]).numpy()[np.arange(2), tok]
        fb = tf.nn.log_softmax(model(pad).numpy()[np.arange(2), pos]).numpy()[np.arange(2), tok]
    total = res.attributions.reshape(2, -1).sum(1)
    np.testing.assert_allclose(total, fx - fb, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(res.delta, total - (fx - fb), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "gemma"])
def test_tied_projection_is_untouched(models, name):
    model, x = models[name], batch(name)
    own = model(x).numpy()
    problem = eng.prepare(model, x, lambda out: out[:, 0, 0], layer="token_embedding")
    assert problem.layer_call == 0
    end = problem.flat_x[0]
    np.testing.assert_allclose(problem.forward([end]).numpy(), own, atol=1e-6)
    np.testing.assert_allclose(tf.function(lambda p: problem.forward([p]))(end).numpy(), own, atol=1e-6)
    emb = model.backbone.token_embedding
    np.testing.assert_array_equal(end, tf.gather(emb.embeddings, x["token_ids"]))  # unscaled rows (Gemma too)


def teacher_forced(model, x, plen):
    logits = model(x).numpy().astype(np.float64)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    ids, mask = x["token_ids"], x["padding_mask"]
    tok = np.take_along_axis(logp[:, :-1], ids[:, 1:, None], axis=2)[..., 0]  # entry j-1 scores ids[:, j]
    keep = (np.arange(1, ids.shape[1])[None] >= plen) & (mask[:, 1:] == 1)
    return np.where(keep, tok, 0.0).sum(1)


@pytest.mark.parametrize("name", ["gpt2", "gemma"])
def test_continuation_is_the_teacher_forced_log_probability(models, name):
    model, x = models[name], batch(name)
    inputs = tpa.text._flat_lm_inputs(x, *_cont_args(x, 3))
    wrapper = tpa.text._lm_wrapper(model, x, True)
    value = tf.reduce_sum(wrapper(inputs), -1).numpy()
    np.testing.assert_allclose(value, teacher_forced(model, x, 3), atol=1e-5)
    res = tpa.text.token_attributions(model, x, tpa.text.continuation(3), n_steps=64, return_convergence_delta=True)
    assert res.mask[:, :3].all() and not res.mask[:, 3:].any()  # only the prompt is attributed
    pad = dict(x, token_ids=np.where(res.mask, 0, x["token_ids"]).astype("int32"))
    gap = teacher_forced(model, x, 3) - teacher_forced(model, pad, 3)
    np.testing.assert_allclose(res.attributions.reshape(2, -1).sum(1), gap, rtol=1e-3, atol=1e-6)


def _cont_args(x, plen):
    ids, mask = x["token_ids"], x["padding_mask"]
    j = plen + np.arange(ids.shape[1] - plen)
    return ids[:, j], np.repeat((j - 1)[None], 2, 0), mask[:, j].astype(np.float32)


@pytest.mark.parametrize("name", ["gpt2", "gemma"])
def test_generation_matrix_rows_equal_single_token_calls(models, name):
    model, x = models[name], batch(name)
    matrix, info = tpa.text.generation_attributions(model, x, 3, output_batch_size=2, n_steps=16)
    assert matrix.shape == (2, 5, 8)
    np.testing.assert_array_equal(matrix[:, :, 3:], 0.0)
    np.testing.assert_array_equal(matrix[1, 3:], 0.0)  # padded continuation tokens
    prompt = np.zeros((2, 8), bool)
    prompt[:, :3] = True
    for t in (0, 2, 4):
        single = tpa.text.token_attributions(
            model, x, tpa.text.next_token(x["token_ids"][:, 3 + t], position=2 + t), attributed=prompt, n_steps=16
        )
        rows = np.where(info["valid"][:, t, None], single.scores, 0.0)
        np.testing.assert_allclose(matrix[:, t], rows, rtol=1e-4, atol=1e-7)


def test_token_strings_special_tokens_and_mask_baseline(models):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(V - 5)]
    tok = keras_hub.models.BertTokenizer(vocabulary=vocab)
    model, x = models["bert"], batch("bert")
    x["token_ids"][:, 0] = 2  # [CLS]
    x["token_ids"][0, -1] = 3  # [SEP]
    res = tpa.text.token_attributions(model, x, 0, tokenizer=tok, n_steps=16, return_convergence_delta=True)
    assert res.tokens[0][0] == "[CLS]" and res.tokens[0][1] == vocab[x["token_ids"][0, 1]]
    assert not res.mask[:, 0].any() and not res.mask[0, -1]
    np.testing.assert_array_equal(res.attributions[:, 0], 0.0)
    # the default baseline is [MASK] (the tokenizer has one): completeness against the masked input
    masked = dict(x, token_ids=np.where(res.mask, 4, x["token_ids"]).astype("int32"))
    gap = model(x).numpy()[:, 0] - model(masked).numpy()[:, 0]
    np.testing.assert_allclose(res.attributions.reshape(2, -1).sum(1), gap, rtol=1e-2, atol=1e-5)
    kept = tpa.text.token_attributions(model, x, 0, tokenizer=tok, keep_special=True, baseline="pad", n_steps=8)
    assert kept.mask[:, 0].all()
    pairs = res.pairs(0)
    assert [p[0] for p in pairs] == [t for t, m in zip(res.tokens[0], res.mask[0]) if m]


def test_errors(models):
    gpt2, x = models["gpt2"], batch("gpt2")
    with pytest.raises(ValueError, match="language-model logits"):
        tpa.text.token_attributions(gpt2, x, 3)
    with pytest.raises(ValueError, match="no mask token id"):
        tpa.text.token_attributions(gpt2, x, baseline="mask")
    with pytest.raises(ValueError, match="takes no baseline"):
        tpa.text.token_attributions(gpt2, x, method="gradients", baseline="pad")
    with pytest.raises(ValueError, match="not language-model logits"):
        tpa.text.token_attributions(models["bert"], batch("bert"), tpa.text.next_token())
    with pytest.raises(ValueError, match="score must be one of"):
        tpa.text.next_token(score="prob")
    with pytest.raises(ValueError, match="prompt_length"):
        tpa.text.token_attributions(gpt2, x, tpa.text.continuation(0))


@pytest.mark.slow
def test_trained_transformer_recovers_trigger_tokens():
    """Ground truth: class 1 means "holds a trigger token"; the best-scored tokens are the triggers."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((16,), dtype="int32")
    h = keras.layers.Embedding(50, 16, name="token_embedding")(ids) + keras.layers.Embedding(16, 16)(
        keras.ops.arange(16)[None]
    )
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 8)(h, h))
    out = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling1D()(keras.layers.Dense(32, activation="gelu")(h)))
    model = keras.Model(ids, out)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y, _ = tpa.data.trigger_tokens(3000, seed=0)
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    xt, yt, masks = tpa.data.trigger_tokens(60, seed=1)
    assert np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt) > 0.95
    xp, mp = xt[yt == 1], masks[yt == 1]
    for method in ("integrated_gradients", "sequential_integrated_gradients", "discretized_integrated_gradients"):
        res = tpa.text.token_attributions(model, xp, 1, method=method, baseline="pad", n_steps=16)
        precision = np.mean([m[np.argsort(-s)[: m.sum()]].mean() for s, m in zip(res.scores, mp)])
        assert precision >= 0.9, (method, precision)


def test_seq2seq_encoder_tokens_explain_a_decoder_token():
    bart = hub_models.tiny_bart(V)
    rng = np.random.default_rng(0)
    enc = rng.integers(5, V, size=(2, 6)).astype("int32")
    dec = rng.integers(5, V, size=(2, 5)).astype("int32")
    emask, dmask = np.ones_like(enc), np.ones_like(dec)
    emask[1, 4:] = 0
    enc[1, 4:] = 0
    dmask[1, 3:] = 0
    x = {
        "encoder_token_ids": enc,
        "encoder_padding_mask": emask,
        "decoder_token_ids": dec,
        "decoder_padding_mask": dmask,
    }
    assert tpa.text.find_token_embedding(bart) == (bart.backbone.token_embedding, 0)
    res = tpa.text.token_attributions(bart, x, n_steps=64, return_convergence_delta=True)
    assert res.attributions.shape == (2, 6, 16)
    np.testing.assert_array_equal(res.mask, emask.astype(bool))  # every real encoder token
    np.testing.assert_array_equal(res.attributions[1, 4:], 0.0)
    logits = bart(x).numpy()
    pos = np.array([4, 2])  # last real decoder positions
    np.testing.assert_array_equal(res.target_tokens, logits[np.arange(2), pos].argmax(-1))
    padded = dict(x, encoder_token_ids=np.where(res.mask, 0, enc).astype("int32"))
    lp = lambda o: tf.nn.log_softmax(o[np.arange(2), pos]).numpy()[np.arange(2), res.target_tokens]  # noqa: E731
    gap = lp(logits) - lp(bart(padded).numpy())
    np.testing.assert_allclose(res.attributions.reshape(2, -1).sum(1), gap, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="decoder-only"):
        tpa.text.generation_attributions(bart, x, 2)


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_idgi_integrates_from_the_padding_baseline_like_ig(models, name):
    """Issue 18 item 1: IDGI takes the pad/[MASK] baseline of its base method (IG). Both are complete
    against F(x) - F(x padded), so their token-score sums agree to IG's quadrature error (|delta| of IG);
    from a zero embedding (the old behaviour) the sums differ by far more than that."""
    model, x = models[name], batch(name)
    target = target_for(name)
    ig = tpa.text.token_attributions(model, x, target, n_steps=64, return_convergence_delta=True)
    idgi = tpa.text.token_attributions(model, x, target, method="idgi", n_steps=64, return_convergence_delta=True)
    ig_sum, idgi_sum = ig.scores.sum(1), idgi.scores.sum(1)
    quad = np.abs(ig.delta) + 1e-5  # IG's own quadrature error, plus float32 rounding
    np.testing.assert_array_less(np.abs(idgi_sum - ig_sum), 2 * quad)
    np.testing.assert_allclose(idgi.delta, 0.0, atol=1e-4)  # exact telescoping against the same target
    padded = tpa.text.token_attributions(model, x, target, method="idgi", n_steps=64, baseline="pad")
    np.testing.assert_allclose(padded.attributions, idgi.attributions, rtol=1e-5, atol=1e-7)
    # the tolerance is meaningful: IDGI from a zero embedding (the old behaviour) misses it
    zero = tpa.text.token_attributions(model, x, target, method="idgi", n_steps=64, baseline="zeros")
    assert np.max(np.abs(zero.scores.sum(1) - ig_sum) - 2 * quad) > 0


def test_an_explicit_next_token_gives_what_the_greedy_target_gives(models):
    # issue 21: with an explicit token (and position) the layer probe skips the logits (shape only); the
    # result must equal the greedy target's, which reads the logits' values
    model, x = models["gpt2"], batch("gpt2")
    greedy = tpa.text.token_attributions(model, x, tpa.text.next_token(), n_steps=8)
    pos = np.array([7, 5])  # the last real position of each example
    explicit = tpa.text.token_attributions(model, x, tpa.text.next_token(greedy.target_tokens, position=pos), n_steps=8)
    np.testing.assert_array_equal(explicit.target_tokens, greedy.target_tokens)
    np.testing.assert_allclose(explicit.attributions, greedy.attributions, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=f"ids must lie in 0..{V - 1}"):  # the vocabulary from the shape alone
        tpa.text.token_attributions(model, x, tpa.text.next_token(V, position=pos), n_steps=8)
