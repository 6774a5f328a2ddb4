"""Ordinary use does not retrace: several batch sizes, every registered method, options in any order.

Each cached ``tf.function`` (one per method, model, static options and batch size) must be traced
exactly once, and TensorFlow's "N out of the last M calls ... triggered tf.function retracing"
warning must not be logged. Before the fix, the per-batch-size functions built from one method
body shared TF's retracing counter (it is keyed by the code object) and every method logged it.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf

from tf_pathattr.engine import gradients as eng
from tf_pathattr.methods import registry

BATCH_SIZES = (1, 2, 3, 5, 8)


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def tf_log():
    rec = _Recorder()
    logger = tf.get_logger()
    logger.addHandler(rec)
    try:
        yield rec
    finally:
        logger.removeHandler(rec)


def _cached_functions(model):
    """The tf.functions the engine cache holds for ``model`` (cache key starts with id(model))."""
    return {key: fn for key, (ref, fn) in eng.CACHE._items.items() if ref() is model}


def _run(spec, model, batch, rng, reverse_options=False):
    x = rng.uniform(size=(batch, 8, 8, 3)).astype(np.float32)
    options = spec.options_for(x)
    if reverse_options:
        options = dict(reversed(list(options.items())))
    out = spec.function(model, x, None, **options)
    maps = out if spec.output == "split" else (out,)
    for m in maps:
        assert np.asarray(m).shape[0] == batch


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.names())
def test_no_retracing_over_batch_sizes(toy_cnn, tf_log, name):
    spec = registry.get(name)
    rng = np.random.default_rng(0)
    eng.CACHE.clear()
    for b in BATCH_SIZES:
        _run(spec, toy_cnn, b, rng)
    first = _cached_functions(toy_cnn)
    assert first, f"{name}: no compiled function was cached"
    counts = {k: fn.experimental_get_tracing_count() for k, fn in first.items()}
    assert set(counts.values()) == {1}, f"{name}: a cached function was traced more than once: {counts}"
    # again, with new values and the options in the reverse order: cache hits, no new trace
    for b in (2, 5):
        _run(spec, toy_cnn, b, rng, reverse_options=True)
    again = _cached_functions(toy_cnn)
    assert again.keys() == first.keys(), f"{name}: new functions were built for known shapes"
    assert {k: fn.experimental_get_tracing_count() for k, fn in again.items()} == counts
    retracing = [m for m in tf_log.messages if "retracing" in m]
    assert not retracing, retracing[0]


def test_token_attributions_probe_the_model_once(monkeypatch):
    # issue 21: tpa.text probes the embedding layer (one forward pass) and the method's prepare used to
    # probe it again on the same inputs; the method now takes the activations from the caller
    import tf_pathattr as tpa
    from tf_pathattr.testing import models as zoo

    model = zoo.text_model()
    ids = zoo.ids(2)
    calls = []
    probe = eng.layer_probe

    def counted(*args, **kwargs):
        calls.append(1)
        return probe(*args, **kwargs)

    monkeypatch.setattr(eng, "layer_probe", counted)
    once = tpa.text.token_attributions(model, ids, [0, 2], n_steps=8)
    assert len(calls) == 1
    # the same result as when the method probes for itself
    monkeypatch.setattr(eng, "_KNOWN_ACTIVATIONS", __import__("contextvars").ContextVar("off", default=None))
    monkeypatch.setattr(eng, "known_layer_activations", lambda *a: __import__("contextlib").nullcontext())
    twice = tpa.text.token_attributions(model, ids, [0, 2], n_steps=8)
    assert len(calls) == 3
    np.testing.assert_array_equal(once.attributions, twice.attributions)
