"""Type aliases for the public signatures (``tf_pathattr`` ships ``py.typed``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import tensorflow as tf

#: a ``keras.Model`` / layer, a ``tf.saved_model.load(path).serve`` endpoint, or any callable batch -> outputs
Model = Callable[..., Any]
#: a batch ``[B, *S]`` (numpy array or tensor), or a list / dict of batches for multi-input models
Inputs = Union[np.ndarray, tf.Tensor, Sequence[Any], Mapping[str, Any]]
#: ``None`` (the predicted class), an int, ``B`` ints, or a callable ``score(outputs) -> [B]``
Target = Union[None, int, Sequence[int], np.ndarray, tf.Tensor, Callable[..., Any]]
#: a ``tf.Tensor`` shaped like ``inputs``, or the same list / dict structure for multi-input models
Attributions = Any
