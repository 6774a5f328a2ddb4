"""Tiny keras-hub task models built from configs (no downloads): GPT-2, Gemma, BERT and BART.

Importable without keras-hub: each builder imports it when called (``ImportError`` naming the package
otherwise). Two layers, hidden size 16, vocabulary ``vocab`` (100): big enough to exercise the real task
models' token embeddings, padding masks, causal LM heads and seq2seq inputs, small enough for unit tests.
Each builder seeds Keras first, so the same call gives the same weights.
"""

from __future__ import annotations

import keras

__all__ = ["VOCAB", "tiny_gpt2", "tiny_gemma", "tiny_bert", "tiny_bart"]

VOCAB = 100


def _keras_hub():
    try:
        import keras_hub
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tf_pathattr.testing.hub_models needs keras-hub: pip install --no-deps keras-hub (README, Set-up)"
        ) from err
    return keras_hub


def tiny_gpt2(vocab=VOCAB, seed=0):
    """``GPT2CausalLM`` (2 layers, 2 heads, hidden 16, max length 16), no preprocessor: a causal LM whose
    inputs are ``{"token_ids", "padding_mask"}`` and whose logits are ``[B, T, vocab]``."""
    hub = _keras_hub()
    keras.utils.set_random_seed(seed)
    return hub.models.GPT2CausalLM(
        backbone=hub.models.GPT2Backbone(
            vocabulary_size=vocab, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
        ),
        preprocessor=None,
    )


def tiny_gemma(vocab=VOCAB, seed=0):
    """``GemmaCausalLM`` (2 layers, 2 query heads, 1 key-value head, hidden 16): a causal LM with a scaled token
    embedding and a tied output head, inputs ``{"token_ids", "padding_mask"}``."""
    hub = _keras_hub()
    keras.utils.set_random_seed(seed)
    return hub.models.GemmaCausalLM(
        backbone=hub.models.GemmaBackbone(
            vocabulary_size=vocab,
            num_layers=2,
            num_query_heads=2,
            num_key_value_heads=1,
            hidden_dim=16,
            intermediate_dim=32,
            head_dim=8,
        ),
        preprocessor=None,
    )


def tiny_bert(vocab=VOCAB, classes=3, seed=0):
    """``BertTextClassifier`` (2 layers, 2 heads, hidden 16), ``classes`` logits ``[B, classes]``; inputs
    ``{"token_ids", "segment_ids", "padding_mask"}``."""
    hub = _keras_hub()
    keras.utils.set_random_seed(seed)
    return hub.models.BertTextClassifier(
        backbone=hub.models.BertBackbone(
            vocabulary_size=vocab, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
        ),
        num_classes=classes,
        preprocessor=None,
    )


def tiny_bart(vocab=VOCAB, seed=0):
    """``BartSeq2SeqLM`` (1 layer each side, 2 heads, hidden 16): a seq2seq LM whose encoder tokens are explained
    for a decoder token; inputs ``{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
    "decoder_padding_mask"}``."""
    hub = _keras_hub()
    keras.utils.set_random_seed(seed)
    return hub.models.BartSeq2SeqLM(
        backbone=hub.models.BartBackbone(
            vocabulary_size=vocab, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=16
        ),
        preprocessor=None,
    )
