"""Token attributions for Keras text models and keras-hub task models.

Integer token ids have no gradient, so every method here runs in the space of the token embedding
(the lookup output, ``[B, T, E]``) through the engine's ``layer=`` path: the model is called on its
real inputs (ids, padding mask, segment ids) with only the embedding lookup replaced by the path
point. For a keras-hub ``CausalLM`` the same ``ReversibleEmbedding`` also computes the logits
(``token_embedding(h, reverse=True)``); only the lookup is replaced, the projection keeps using the
real weights (:mod:`tf_pathattr.engine.layers`).

* :func:`token_attributions` - per-token scores ``[B, T]`` (the signed sum over the embedding axis
  for methods with a completeness target, the L2 norm for the others; both kept) next to the full ``[B, T, E]`` map, for any registered method that takes ``layer=``;
  padding positions are exactly 0 and excluded; token strings when a tokenizer is given.
* Targets for language models (``[B, T, V]`` logits): :func:`next_token` (a given token, or the
  model's own greedy one, as a log-probability or a logit) and :func:`continuation` (the sum of the
  teacher-forced log-probabilities of the tokens after the prompt).
* :func:`generation_attributions` - ``[B, T_out, T_in]``: each continuation token attributed to
  each prompt token, in batches of output tokens (one method call per batch, not per token).

Baselines live in embedding space. The default is the embedding of the padding token (``[MASK]``
where the tokenizer has one) at every attributed position and the real embedding everywhere
else, so completeness reads ``sum(attr) = F(x) - F(x with the attributed tokens padded)``. A zero
embedding is *not* the default: before the first RMSNorm of Gemma/Llama-style decoders it is a
singular point (``1/sqrt(eps)`` Jacobian) and IG does not converge there.

Log-probabilities are ``log_softmax`` of the logits at position ``j - 1`` for the token at ``j``
(teacher forcing). keras_hub is never imported here; tied embeddings are recognised by their
``reverse`` call argument.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .engine import gradients as _eng
from .engine import layers as _layers
from .methods import registry as _registry

__all__ = [
    "NextToken",
    "Continuation",
    "TokenAttributions",
    "next_token",
    "continuation",
    "token_attributions",
    "generation_attributions",
    "find_token_embedding",
    "token_strings",
    "lm_scores",
    "SCORES",
]

SCORES = ("logprob", "logit")
_TOK, _POS, _W = "tpa_target_tokens", "tpa_target_positions", "tpa_target_weights"


# --------------------------------------------------------------------------------------------
# targets for language models


@dataclass(frozen=True)
class NextToken:
    """Explain the score of one next token per example (see :func:`next_token`)."""

    token_id: Any = None
    position: Any = None
    score: str = "logprob"


@dataclass(frozen=True)
class Continuation:
    """Explain the teacher-forced log-probability of everything after the prompt (see :func:`continuation`)."""

    prompt_length: Any
    score: str = "logprob"


def _check_score(score):
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")


def next_token(token_id=None, *, position=None, score: str = "logprob") -> NextToken:
    """Target: the score of the token that follows ``position``.

    Parameters
    ----------
    token_id : None, int or ``[B]`` ints
        The token explained. ``None``: the model's own greedy token, ``argmax`` of the logits at
        ``position`` on the real input (fixed once; not recomputed along the path).
    position : None, int or ``[B]`` ints
        The position whose logits predict the token (``logits[:, position]`` scores the token at
        ``position + 1``). ``None``: the last real (non-padding) position of each example.
    score : {"logprob", "logit"}
        ``log_softmax`` of the logits (default; does not saturate like a probability) or the raw logit.
    """
    _check_score(score)
    return NextToken(token_id, position, score)


def continuation(prompt_length, *, score: str = "logprob") -> Continuation:
    """Target: ``sum_{j >= P} log p(x_j | x_<j)`` over the real tokens after a prompt of ``P`` tokens.

    The inputs hold prompt and continuation together (e.g. what ``CausalLM.generate`` returns, right
    padded); ``prompt_length`` (int or ``[B]``) says where the continuation starts. Only the prompt
    is attributed: the continuation keeps its real embeddings in the baseline. ``score="logit"``
    sums the continuation tokens' logits instead.
    """
    _check_score(score)
    return Continuation(prompt_length, score)


class _LMScore:
    """Callable model ``{model inputs, target tokens/positions/weights} -> [B, K]`` scores.

    Holds the language model by weak reference only (cached per model in the engine's weak cache).
    Target tensors travel as extra integer inputs, so new targets reuse the same trace.
    """

    def __init__(self, model, logprob: bool, structure):
        self._model = weakref.ref(model)
        self.logprob = logprob
        self.structure = structure  # "dict" or ("single",) / ("list", n) / ("tuple", n)

    def unpack(self, inputs):
        inputs = dict(inputs)
        extra = inputs.pop(_TOK), inputs.pop(_POS), inputs.pop(_W)
        kind = self.structure[0]
        if kind == "dict":
            return inputs, extra
        if kind == "single":
            return inputs["tpa_x0"], extra
        seq = [inputs[f"tpa_x{i}"] for i in range(self.structure[1])]
        return (tuple(seq) if kind == "tuple" else seq), extra

    def __call__(self, inputs, training=False):
        model = self._model()
        if model is None:
            raise RuntimeError("the language model was deleted")
        model_inputs, (tokens, positions, weights) = self.unpack(inputs)
        logits = model(model_inputs, training=False)
        return lm_scores(logits, tokens, positions, weights, self.logprob)


def lm_scores(logits, tokens, positions, weights=None, logprob: bool = True):
    """``weights * score(logits[b, positions[b, k], tokens[b, k]])`` as ``[B, K]`` (float32).

    With ``logprob=True`` the score is ``log_softmax`` over the vocabulary at that position.
    """
    logits = tf.cast(logits, tf.float32)
    sel = tf.gather(logits, tf.cast(positions, tf.int32), axis=1, batch_dims=1)  # [B, K, V]
    if logprob:
        sel = tf.nn.log_softmax(sel, axis=-1)
    out = tf.gather(sel, tf.cast(tokens, tf.int32)[..., None], axis=2, batch_dims=2)[..., 0]
    if weights is not None:
        out = out * tf.cast(weights, tf.float32)
    return out


def _sum_terms(outputs):
    return tf.reduce_sum(outputs, axis=-1)


# --------------------------------------------------------------------------------------------
# model inspection


def find_token_embedding(model):
    """The token-embedding layer (or ``(layer, call_index)``) to attribute to, found without names.

    keras-hub task models and backbones: ``backbone.token_embedding`` (for a ``Seq2SeqLM`` the
    encoder's lookup, call 0). Other Keras models: their only ``keras.layers.Embedding``.
    """
    backbone = getattr(model, "backbone", None)
    for holder in (backbone, model):
        emb = getattr(holder, "token_embedding", None) if holder is not None else None
        if isinstance(emb, keras.layers.Layer):
            if isinstance(getattr(model, "input", None), dict) and "encoder_token_ids" in model.input:
                return (emb, 0)  # Seq2SeqLM: encoder lookup, then decoder lookup, then the projection
            return emb
    if not isinstance(model, keras.Model):
        raise TypeError(f"layer=: cannot search a {type(model).__name__} for its embedding; pass layer=")
    found = [lay for lay in _layers.iter_layers(model) if isinstance(lay, keras.layers.Embedding)]
    found = list({id(lay): lay for lay in found}.values())
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(
            "layer=: the model has no keras.layers.Embedding; pass layer= (the layer whose output is attributed)"
        )
    raise ValueError(
        f"layer=: the model has {len(found)} Embedding layers {[lay.name for lay in found]}; pass "
        "layer= to choose the token embedding"
    )


def _mask_key(inputs):
    if isinstance(inputs, dict):
        for key in ("padding_mask", "encoder_padding_mask"):
            if key in inputs:
                return key
    return None


def _embed_ids(model, layer, call_index, inputs, ids):
    """The selected call's output when it receives ``ids`` instead of its real input."""
    with _layers.replaced_input(layer, call_index, tf.convert_to_tensor(ids)) as outputs:
        model(inputs, training=False)
    return tf.cast(tf.convert_to_tensor(outputs[0]), tf.float32)


def token_strings(tokenizer, ids):
    """Token strings ``[B][T]`` for ids ``[B, T]`` (``id_to_token``; GPT-2's ``Ġ`` shown as a space)."""
    ids = np.asarray(ids)
    out = []
    for row in ids:
        toks = []
        for i in row:
            try:
                t = tokenizer.id_to_token(int(i))
            except Exception:  # ids out of the tokenizer's vocabulary (e.g. padding fillers)
                t = f"<{int(i)}>"
            toks.append(str(t).replace("\u0120", " ").replace("\u2581", " "))
        out.append(toks)
    return out


def _as_inputs(inputs, preprocessor):
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
        if preprocessor is None:
            raise ValueError("inputs are strings: pass preprocessor= (e.g. task.preprocessor) or token ids")
        strings = [inputs] if isinstance(inputs, str) else list(inputs)
        if hasattr(preprocessor, "generate_preprocess"):
            out = preprocessor.generate_preprocess(strings)
        else:
            out = preprocessor(strings)
            if isinstance(out, tuple):
                out = out[0]
        return {k: tf.convert_to_tensor(v) for k, v in dict(out).items()}
    if isinstance(inputs, dict):
        return {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(tf.convert_to_tensor(v) for v in inputs)
    return tf.convert_to_tensor(inputs)


def _per_example(value, batch, name, dtype=np.int64):
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full((batch,), arr)
    if arr.shape != (batch,):
        raise ValueError(f"{name} must be an int or have shape ({batch},), got shape {arr.shape}")
    return arr.astype(dtype)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class TokenAttributions:
    """Token attributions of a batch.

    Attributes
    ----------
    scores : ndarray ``[B, T]``
        Per-token score, reduced over the embedding axis as ``reduction`` says; 0 where not attributed.
    reduction : {"sum", "l2"}
        How ``scores`` was reduced from ``attributions``: ``"sum"`` (signed; the default for methods
        with a completeness target, whose token scores then add up to ``F(x) - F(baseline)``) or
        ``"l2"`` (= ``l2``; the default for methods without one, e.g. plain gradients, whose signed
        sum behind a LayerNorm is ~0 at every token because the norm's Jacobian removes the mean).
    l2 : ndarray ``[B, T]``
        Per-token L2 norm of the attribution vector (unsigned); 0 where not attributed.
    attributions : ndarray ``[B, T, E]``
        The full map in embedding space; 0 where not attributed.
    mask : bool ndarray ``[B, T]``
        Attributed positions (real tokens, special tokens unless kept, prompt only for
        continuations).
    token_ids : int ndarray ``[B, T]``
    tokens : list of lists of str, or None
        Token strings (with a tokenizer / preprocessor).
    delta : ndarray ``[B]`` (``[B, T]`` per token for SIG) or None
        Convergence delta ``sum(attr) - (F(x) - F(baseline))`` where the method has one.
    target_tokens : ndarray or None
        The explained next tokens (``next_token``) per example.
    extra : dict
        Method extras (Split IG's ``right`` part, per-word deltas of SIG, ...).
    """

    scores: np.ndarray
    l2: np.ndarray
    attributions: np.ndarray
    mask: np.ndarray
    token_ids: np.ndarray
    tokens: list | None = None
    delta: np.ndarray | None = None
    target_tokens: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    reduction: str = "sum"

    def pairs(self, i: int = 0, kind: str = "scores"):
        """``[(token, score), ...]`` over the attributed positions of example ``i``."""
        vals = getattr(self, kind)[i]
        keep = np.nonzero(self.mask[i])[0]
        toks = self.tokens[i] if self.tokens is not None else [str(t) for t in self.token_ids[i]]
        return [(toks[j], float(vals[j])) for j in keep]

    def top_k(self, k: int, kind: str = "scores"):
        """Indices ``[B, k]`` of the k highest-scoring attributed positions (by value)."""
        vals = np.where(self.mask, getattr(self, kind), -np.inf)
        return np.argsort(-vals, axis=1, kind="stable")[:, :k]


# --------------------------------------------------------------------------------------------
# the main entry


def _lm_wrapper(model, inputs, logprob):
    if isinstance(inputs, dict):
        structure = ("dict",)
    elif isinstance(inputs, (list, tuple)):
        structure = ("tuple" if isinstance(inputs, tuple) else "list", len(inputs))
    else:
        structure = ("single",)
    return _eng.CACHE.get(
        model, ("tf_pathattr.text.lm", bool(logprob), structure), lambda: _LMScore(model, bool(logprob), structure)
    )


def _flat_lm_inputs(inputs, tokens, positions, weights):
    if isinstance(inputs, dict):
        flat = dict(inputs)
    elif isinstance(inputs, (list, tuple)):
        flat = {f"tpa_x{i}": v for i, v in enumerate(inputs)}
    else:
        flat = {"tpa_x0": inputs}
    flat[_TOK] = tf.constant(tokens, tf.int32)
    flat[_POS] = tf.constant(positions, tf.int32)
    flat[_W] = tf.constant(weights, tf.float32)
    return flat


def _baseline_array(baseline, acts, pad_id, mask_id, model, lay, call_index, inputs, ids) -> np.ndarray:
    """The baseline embeddings ``[B, T, E]`` (float32 numpy) for ``baseline`` (a name or an array)."""
    if isinstance(baseline, str):
        if baseline == "zeros":
            return np.zeros(acts.shape, np.float32)
        if baseline == "pad":
            fill = pad_id
        elif baseline == "mask":
            if mask_id is None:
                raise ValueError("baseline='mask': no mask token id (pass mask_id= or a tokenizer with a mask token)")
            fill = mask_id
        else:
            raise ValueError(f"baseline must be 'auto', 'pad', 'mask', 'zeros' or an array, got {baseline!r}")
        table = getattr(lay, "embeddings", None)
        if table is not None and tuple(table.shape[1:]) == tuple(acts.shape[2:]):
            # a plain lookup (its outputs are the table rows of the ids): the baseline is the fill id's row
            wanted = np.append(np.asarray(ids).ravel(), fill)  # one gather: the ids' rows and the fill id's row
            rows = tf.cast(tf.gather(tf.convert_to_tensor(table), wanted), tf.float32).numpy()
            if np.array_equal(rows[:-1].reshape(acts.shape), acts):
                return np.broadcast_to(rows[-1], acts.shape).astype(np.float32)
        return np.asarray(
            _embed_ids(model, lay, call_index, inputs, np.full(ids.shape, fill, ids.dtype.as_numpy_dtype))
        )
    arr = np.asarray(tf.cast(tf.convert_to_tensor(baseline), tf.float32))
    try:
        return np.broadcast_to(arr, acts.shape).astype(np.float32)
    except ValueError as exc:
        raise ValueError(
            f"baseline: an array must broadcast to the embedding output {tuple(acts.shape)}, got {tuple(arr.shape)}"
        ) from exc


def token_attributions(
    model,
    inputs,
    target=None,
    *,
    method="integrated_gradients",
    baseline="auto",
    layer=None,
    tokenizer=None,
    preprocessor=None,
    pad_id=None,
    mask_id=None,
    special_ids=None,
    keep_special: bool = False,
    attributed=None,
    return_convergence_delta: bool = False,
    reduction: str = "auto",
    **method_options,
) -> TokenAttributions:
    """Attribute a text model's output to its input tokens.

    Parameters
    ----------
    model : keras.Model
        Any Keras text model (integer token ids in, an ``Embedding`` inside) or a keras-hub task
        model (``TextClassifier``, ``CausalLM``, ``Seq2SeqLM``; built with or without a preprocessor).
    inputs : ids ``[B, T]``, a list / dict of model inputs, or strings (with ``preprocessor=``)
        keras-hub inputs are the dict ``{"token_ids", "padding_mask", ...}``; padding is right padding
        marked by ``padding_mask``. Without a ``padding_mask`` positions holding ``pad_id`` are padding.
    target : None, int, ``[B]`` ints, callable, :func:`next_token` or :func:`continuation`
        Classifiers: as for every method (``None`` = predicted class). Language models (logits
        ``[B, T, V]``): a :class:`NextToken` or :class:`Continuation`; ``None`` means
        ``next_token()`` (the model's own greedy next token after the last real position). For an
        encoder-decoder model (``Seq2SeqLM``: ``decoder_token_ids`` in the inputs) positions, prompt
        length and continuation refer to the decoder tokens, and every real encoder token is attributed.
    method : str
        A registered method name or alias whose registry spec supports ``layer=``
        (``tpa.methods.registry``); the others raise the reason their spec declares.
    baseline : {"auto", "pad", "mask", "zeros"} or array broadcastable to ``[B, T, E]``
        The starting point at the attributed positions (all other positions keep their real
        embedding). ``"auto"``: ``"mask"`` when a mask id is known (``mask_id=`` or the tokenizer's
        ``mask_token_id``), else ``"pad"``. Passed as the method's baseline option (the registry's
        ``baseline_option``); methods without one (gradients) ignore ``"auto"``.
    layer : optional
        The embedding layer, its name or ``(layer, call_index)``; default
        :func:`find_token_embedding`.
    tokenizer, preprocessor : optional
        keras-hub tokenizer (or a preprocessor, whose ``tokenizer`` is used) for token strings,
        ``pad_token_id``, ``mask_token_id`` and ``special_token_ids``; a preprocessor also turns
        string inputs into ids (eagerly: no tensorflow-text needed).
    pad_id, mask_id : int, optional
        Override the tokenizer's ids (``pad_id`` defaults to 0 without a tokenizer).
    special_ids : sequence of int, optional
        Token ids treated as special (default: the tokenizer's ``special_token_ids``). They are not
        attributed (exact 0, baseline = input) unless ``keep_special=True``.
    attributed : bool ``[B, T]``, optional
        Restrict the attributed positions further.
    return_convergence_delta : bool
        Fill ``delta`` (for methods with a completeness target).
    reduction : {"auto", "sum", "l2"}
        How ``scores`` reduces the embedding axis. ``"auto"``: the signed sum for methods with a
        completeness target (registry ``completeness``), the L2 norm for the others (plain
        gradients, SmoothGrad...: their signed sum carries no completeness meaning, and behind a
        LayerNorm it is ~0 at every token). The result's ``reduction`` field names the one used.
    **method_options
        Passed to the method (``n_steps``, ``internal_batch_size``, ...).

    Returns
    -------
    TokenAttributions
    """
    if reduction not in ("auto", "sum", "l2"):
        raise ValueError(f"reduction must be 'auto', 'sum' or 'l2', got {reduction!r}")
    spec = _registry.get(method) if isinstance(method, str) else _registry.spec_of(method)
    if spec is None:
        raise TypeError("method must be a registered method name or function (see tpa.METHODS)")
    _registry.require(spec, "layer", f"token_attributions(method={spec.name!r})")
    if preprocessor is not None and tokenizer is None:
        tokenizer = getattr(preprocessor, "tokenizer", None)
    inputs = _as_inputs(inputs, preprocessor)
    if layer is None:
        layer = find_token_embedding(model)
    lay, call_index = _layers.resolve_layer(model, layer)
    # the logits' values are needed only to find the model's own next token; otherwise their shape will do,
    # and the probe skips the model's ops after the embedding
    need_logits = target is None or (isinstance(target, NextToken) and target.token_id is None)
    acts, call_index, ids, out = _eng.layer_probe(model, lay, call_index, inputs, outputs=need_logits)
    if not need_logits and not all(d is not None for t in tf.nest.flatten(out) for d in t.shape):
        acts, call_index, ids, out = _eng.layer_probe(model, lay, call_index, inputs)  # a shape known only at run time
    acts = tf.cast(acts, tf.float32)
    if acts.shape.rank != 3 or ids.shape.rank != 2 or not ids.dtype.is_integer:
        raise ValueError(
            f"token_attributions needs an embedding layer mapping int ids [B, T] to [B, T, E]; layer "
            f"{lay.name!r} maps {ids.dtype.name} {tuple(ids.shape)} to {tuple(acts.shape)}"
        )
    ids_np = ids.numpy()
    acts_np = acts.numpy()
    batch, length = ids_np.shape

    if pad_id is None:
        pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        pad_id = 0 if pad_id is None else int(pad_id)
    if mask_id is None and tokenizer is not None:
        mask_id = getattr(tokenizer, "mask_token_id", None)
    if special_ids is None:
        special_ids = list(getattr(tokenizer, "special_token_ids", None) or []) if tokenizer is not None else []

    key = _mask_key(inputs)
    if key is not None:
        real = np.asarray(inputs[key]).astype(bool)
    else:
        real = ids_np != pad_id
    mask = real.copy()
    if not keep_special and len(special_ids):
        mask &= ~np.isin(ids_np, np.asarray(list(special_ids)))
    if attributed is not None:
        att = np.asarray(attributed).astype(bool)
        if att.shape != (batch, length):
            raise ValueError(f"attributed must be a bool array of shape ({batch}, {length}), got {att.shape}")
        mask &= att

    # targets
    out_rank = None
    run_model, run_inputs, run_target = model, inputs, target
    target_tokens = None
    out_rank = len(getattr(out, "shape", ())) if not isinstance(out, (dict, list, tuple)) else None
    if out_rank == 3 and not (target is None or callable(target) or isinstance(target, (NextToken, Continuation))):
        raise ValueError(
            "target: the model returns language-model logits [B, T, V]; pass tpa.text.next_token(...), "
            "tpa.text.continuation(prompt_length) or a callable score(logits) -> [B]"
        )
    if isinstance(target, (NextToken, Continuation)) or target is None:
        if out_rank == 3:
            if target is None:
                target = next_token()
            out_shape = tuple(out.shape)
            # decoder-only: logits, ids and the attributed tokens share positions; encoder-decoder: the
            # logits run over the decoder tokens and the (encoder) tokens are attributed whole
            seq2seq = isinstance(inputs, dict) and "decoder_token_ids" in inputs
            if seq2seq:
                lm_ids = np.asarray(inputs["decoder_token_ids"])
                lm_real = (
                    np.asarray(inputs["decoder_padding_mask"]).astype(bool)
                    if "decoder_padding_mask" in inputs
                    else np.ones(lm_ids.shape, bool)
                )
            else:
                lm_ids, lm_real = ids_np, real
            lm_len = lm_ids.shape[1]
            if out_shape[1] != lm_len:
                raise ValueError(f"target: the logits cover {out_shape[1]} positions but the token ids {lm_len}")
            if isinstance(target, NextToken):
                if target.position is None:
                    if not lm_real.any(axis=1).all():
                        raise ValueError("next_token(): an example has no real token")
                    pos = lm_len - 1 - np.argmax(lm_real[:, ::-1], axis=1)
                else:
                    pos = _per_example(target.position, batch, "next_token(position=)")
                if np.any(pos < 0) or np.any(pos >= lm_len):
                    raise ValueError(f"next_token(position=): positions must lie in 0..{lm_len - 1}, got {pos}")
                if target.token_id is None:
                    logits = tf.cast(out, tf.float32).numpy()  # a tensor: probed with outputs (need_logits)
                    tok = np.argmax(logits[np.arange(batch), pos], axis=-1)
                else:
                    tok = _per_example(target.token_id, batch, "next_token(token_id=)")
                    if np.any(tok < 0) or np.any(tok >= out_shape[-1]):
                        raise ValueError(f"next_token(token_id=): ids must lie in 0..{out_shape[-1] - 1}")
                target_tokens = tok
                if not seq2seq:
                    mask &= np.arange(length)[None] <= pos[:, None]
                run_inputs = _flat_lm_inputs(inputs, tok[:, None], pos[:, None], np.ones((batch, 1)))
                run_model = _lm_wrapper(model, inputs, target.score == "logprob")
                run_target = 0
            else:
                plen = _per_example(target.prompt_length, batch, "continuation(prompt_length)")
                if np.any(plen < 1) or np.any(plen >= lm_len):
                    raise ValueError(f"continuation(prompt_length): must lie in 1..{lm_len - 1}, got {plen}")
                n_out = int(lm_len - plen.min())
                j = plen[:, None] + np.arange(n_out)[None]  # positions of continuation tokens
                inside = j < lm_len
                jj = np.minimum(j, lm_len - 1)
                weights = (inside & lm_real[np.arange(batch)[:, None], jj]).astype(np.float32)
                tokens = np.where(inside, lm_ids[np.arange(batch)[:, None], jj], 0)
                if not seq2seq:
                    mask &= np.arange(length)[None] < plen[:, None]
                run_inputs = _flat_lm_inputs(inputs, tokens, jj - 1, weights)
                run_model = _lm_wrapper(model, inputs, target.score == "logprob")
                run_target = _sum_terms
        elif isinstance(target, (NextToken, Continuation)):
            raise ValueError(
                f"target={type(target).__name__}: the model's output is not language-model logits "
                f"[B, T, V] (got rank {out_rank}); pass a class index or a callable"
            )

    # baseline at the attributed positions, real embeddings elsewhere
    opts = dict(method_options)
    b_opt = _registry.wrapped_baseline_option(spec, opts)  # IDGI / noise tunnel: their base method's option
    user_baseline = not (isinstance(baseline, str) and baseline == "auto")
    if b_opt == "baseline" and "baseline" not in opts:
        kind = baseline if user_baseline else ("mask" if mask_id is not None else "pad")
        base = _baseline_array(kind, acts_np, pad_id, mask_id, model, lay, call_index, inputs, ids)
        opts["baseline"] = np.where(mask[..., None], base, acts_np)
    elif user_baseline and b_opt != "baseline":
        raise ValueError(
            f"baseline=: method {spec.name!r} takes no baseline "
            f"({'its reference option is ' + repr(b_opt) if b_opt else 'it has none'}); pass that "
            "option in the embedding space instead"
        )
    if return_convergence_delta:
        if spec.completeness is None:
            raise ValueError(f"return_convergence_delta: method {spec.name!r} has no completeness target")
        opts["return_convergence_delta"] = True

    # the method's own layer probe would repeat the forward pass above: hand it the activations
    with _eng.known_layer_activations(run_model, run_inputs, lay, call_index, acts):
        result = spec.function(run_model, run_inputs, run_target, layer=(lay, call_index), **opts)
    delta = None
    extra = {}
    if return_convergence_delta:
        result, delta = result
        delta = np.asarray(delta)
    if spec.details and isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        result, extra = result
    if spec.output == "split":
        left, right = result
        extra = dict(extra, right=np.where(mask[..., None], np.asarray(right), 0.0))
        result = left
    attr = np.asarray(result, dtype=np.float32)
    if attr.shape != tuple(acts.shape):
        raise ValueError(f"method {spec.name!r} returned shape {attr.shape}, expected {tuple(acts.shape)}")
    attr = np.where(mask[..., None], attr, 0.0).astype(np.float32)
    tokens_str = token_strings(tokenizer, ids_np) if tokenizer is not None else None
    l2 = np.sqrt((attr.astype(np.float64) ** 2).sum(-1)).astype(np.float32)
    if reduction == "auto":
        reduction = "sum" if spec.completeness is not None else "l2"
    return TokenAttributions(
        scores=attr.sum(-1) if reduction == "sum" else l2,
        reduction=reduction,
        l2=l2,
        attributions=attr,
        mask=mask,
        token_ids=ids_np,
        tokens=tokens_str,
        delta=delta,
        target_tokens=target_tokens,
        extra=extra,
    )


def _tile_inputs(inputs, reps):
    def tile(v):
        v = tf.convert_to_tensor(v)
        return tf.tile(v, [reps] + [1] * (v.shape.rank - 1))

    if isinstance(inputs, dict):
        return {k: tile(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(tile(v) for v in inputs)
    return tile(inputs)


def generation_attributions(
    model,
    inputs,
    prompt_length,
    *,
    method="integrated_gradients",
    output_batch_size=16,
    score: str = "logprob",
    tokenizer=None,
    preprocessor=None,
    **options,
):
    """Attribute every continuation token to every prompt token: ``[B, T_out, T_in]``.

    Row ``t`` is the attribution of ``score(x_{P+t} | x_{<P+t})`` (teacher forced) to the prompt
    tokens ``0..P-1`` (columns ``>= P`` are 0; token scores reduced as :func:`token_attributions`'
    ``reduction`` says, returned as ``result["reduction"]``): exactly :func:`token_attributions` with
    ``target=next_token(x_{P+t}, position=P+t-1)`` and only the prompt attributed. Output tokens are
    explained ``output_batch_size`` at a time: the batch is replicated once per output token and
    sent through the method in one call (the last group is padded to the same size, so one trace
    serves every group).

    Parameters
    ----------
    inputs : model inputs holding prompt and continuation (right padded)
    prompt_length : int (the same prompt length for every example)
    options : passed to :func:`token_attributions` (``baseline``, ``n_steps``, ``pad_id``, ...)

    Returns
    -------
    matrix : ndarray ``[B, T_out, T]`` with ``T_out = T - prompt_length`` (rows of padded
        continuation tokens are 0)
    result : dict with ``"tokens"`` (continuation token ids ``[B, T_out]``), ``"valid"``
        (``[B, T_out]`` real continuation tokens), ``"l2"`` (``[B, T_out, T]``, per-token L2 norms),
        ``"reduction"`` (how ``matrix`` reduced the embedding axis) and ``"token_strings"`` (``[B][T]`` with a tokenizer, else ``None``)
    """
    _check_score(score)
    if preprocessor is not None and tokenizer is None:
        tokenizer = getattr(preprocessor, "tokenizer", None)
    inputs = _as_inputs(inputs, preprocessor)
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, (int, np.integer)):
        raise TypeError("prompt_length must be an int (one prompt length for the batch)")
    output_batch_size = int(output_batch_size)
    if output_batch_size < 1:
        raise ValueError(f"output_batch_size must be >= 1, got {output_batch_size}")
    if isinstance(inputs, dict) and "decoder_token_ids" in inputs:
        raise ValueError(
            "generation_attributions explains decoder-only language models; for an encoder-decoder "
            "model call token_attributions with next_token(token, position=...) per decoder token"
        )
    layer = options.pop("layer", None) or find_token_embedding(model)
    lay, call_index = _layers.resolve_layer(model, layer)
    _, call_index, ids = _layers.layer_call_activations(model, lay, inputs, call_index, return_inputs=True)
    ids = np.asarray(ids)
    batch, length = ids.shape
    plen = int(prompt_length)
    if not 1 <= plen < length:
        raise ValueError(f"prompt_length must lie in 1..{length - 1}, got {plen}")
    key = _mask_key(inputs)
    pad_id = options.get("pad_id")
    real = np.asarray(inputs[key]).astype(bool) if key is not None else ids != (0 if pad_id is None else pad_id)
    n_out = length - plen
    cont = ids[:, plen:]
    valid = real[:, plen:]
    prompt_mask = np.zeros((batch, length), bool)
    prompt_mask[:, :plen] = True
    if options.get("attributed") is not None:
        prompt_mask &= np.asarray(options.pop("attributed")).astype(bool)
    g = min(output_batch_size, n_out)
    reduction = "sum"
    matrix = np.zeros((batch, n_out, length), np.float32)
    l2 = np.zeros((batch, n_out, length), np.float32)
    for start in range(0, n_out, g):
        ts = np.arange(start, start + g)
        ts_c = np.minimum(ts, n_out - 1)  # the last group is padded by repeating its last token
        rep_inputs = _tile_inputs(inputs, g)
        tok = cont[:, ts_c].T.reshape(-1)  # row r * B + b: output token ts[r] of example b
        pos = np.repeat(plen + ts_c - 1, batch)
        res = token_attributions(
            model,
            rep_inputs,
            next_token(tok, position=pos, score=score),
            method=method,
            layer=(lay, call_index),
            attributed=np.tile(prompt_mask, (g, 1)),
            **options,
        )
        reduction = res.reduction
        sc = res.scores.reshape(g, batch, length)
        nn = res.l2.reshape(g, batch, length)
        for r, t in enumerate(ts):
            if t < n_out:
                matrix[:, t] = np.where(valid[:, t, None], sc[r], 0.0)
                l2[:, t] = np.where(valid[:, t, None], nn[r], 0.0)
    return matrix, {
        "tokens": cont,
        "valid": valid,
        "l2": l2,
        "reduction": reduction,
        "token_strings": token_strings(tokenizer, ids) if tokenizer is not None else None,
    }
