"""The compiled-function cache: reuse per model, and no cache keeps a model alive (issue 9, defect 10)."""

import gc
import weakref

import numpy as np

import tf_pathattr as tpa
from tf_pathattr.engine import gradients as eng
from tf_pathattr.testing import models as zoo

X = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)


def test_functions_are_reused_per_model_and_die_with_it():
    model = zoo.toy_cnn(seed=0)
    tpa.integrated_gradients(model, X, 1, n_steps=4)
    tpa.integrated_gradients(model, X + 0.1, [0, 2], n_steps=4)
    (fn,) = eng.CACHE.functions(model)
    assert fn.experimental_get_tracing_count() == 1
    ref = weakref.ref(model)
    del model, fn
    gc.collect()
    assert ref() is None, "a compiled-function cache kept the model alive"


def test_metric_and_export_plans_do_not_keep_models_alive():
    model = zoo.toy_cnn(seed=1)
    tpa.metrics.deletion(model, X, tpa.gradients(model, X, 1), 1)
    plan = tpa.integrated_gradients.plan(model, X, 1, n_steps=4)
    plan.execute()
    ref = weakref.ref(model)
    del model, plan
    gc.collect()
    assert ref() is None


def test_a_plain_function_model_is_cached_on_itself():
    model = zoo.toy_cnn(seed=2)

    def fn(x):
        return model(x)

    tpa.gradients(fn, X, 0)
    tpa.gradients(fn, X, 1)
    (compiled,) = eng.CACHE.functions(fn)
    assert compiled.experimental_get_tracing_count() == 1
    assert eng.CACHE.functions(model) == []


def test_bound_method_models_share_one_cache_entry():
    class Wrapper:
        def __init__(self, m):
            self.m = m

        def score(self, x):
            return self.m(x)

    w = Wrapper(zoo.toy_cnn(seed=3))
    tpa.gradients(w.score, X, 0)
    tpa.gradients(w.score, X, 1)  # a new bound-method object each time
    (compiled,) = eng.CACHE.functions(w.score)
    assert compiled.experimental_get_tracing_count() == 1


def test_aupc_with_preprocess_does_not_keep_the_model_alive():
    model = zoo.toy_cnn(seed=4)
    attr = tpa.gradients(model, X, 1).numpy()
    tpa.metrics.aupc(model, X, attr, 1, preprocess=lambda v: v * 1.0, n_regions=2, window=2, n_candidates=4)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
