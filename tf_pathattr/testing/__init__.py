"""Small Keras models with stated properties, for tests, benchmarks, notebooks and users' own checks.

* :mod:`tf_pathattr.testing.models`: the model zoo (smooth CNNs, exact linear models, max-pool kinks,
  ignored features, multi-input and multi-output models, token models, recurrent models);
* :mod:`tf_pathattr.testing.text_models`: a token model with a twin on embeddings (a gradient oracle);
* :mod:`tf_pathattr.testing.hub_models`: tiny keras-hub task models from configs (no downloads; needs keras-hub);
* :mod:`tf_pathattr.testing.reference`: the PAIR ``saliency`` package as an independent reference (needs
  ``saliency``; importing it shims two numpy functions that ``saliency`` 0.2.1 still calls).

Each builder seeds Keras and states, in its docstring, the property a test may rely on::

    from tf_pathattr.testing import models as zoo

    model, w = zoo.linear_model([1.0, -2.0, 3.0])   # F(x) = x @ w: IG's attribution is exactly (x - x') * w

The library never imports this package (tests/test_layering.py checks it).
"""
