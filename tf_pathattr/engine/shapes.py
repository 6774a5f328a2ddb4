"""Input checking and structure handling shared by every method.

Methods work on a *flat list* of float32 tensors, one per model input, each ``[B, *S_i]``. This
module turns what users pass (numpy arrays, tensors, lists/tuples or dicts of them for multi-input
models) into that list, checks it, and packs results back into the user's structure. Errors name
the argument and say what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Structure:
    """How the user's inputs were nested: ``"single"``, ``"list"``, ``"tuple"`` or ``"dict"``."""

    kind: str
    keys: tuple = ()

    def pack(self, flat: Sequence[Any]):
        if self.kind == "single":
            return flat[0]
        if self.kind == "dict":
            return dict(zip(self.keys, flat))
        if self.kind == "tuple":
            return tuple(flat)
        return list(flat)

    def flatten(self, value, name: str):
        """Flatten a value that must mirror this structure (baselines, noise, attributions).

        For a multi-input model a Python list or tuple is always read as one entry per input (what
        captum and alibi users mean by ``baseline=(0.0, 1.0)``), never as a per-feature vector
        shared by every input; a list of the wrong length is refused. A scalar or an array is
        shared by every input; a dict model takes a dict with the same keys.
        """
        if self.kind == "single":
            if isinstance(value, (list, tuple, dict)) and not _is_numeric_sequence(value):
                raise ValueError(
                    f"{name}: the model has a single input, so {name} must be one array, got a {type(value).__name__}"
                )
            return [value]
        if self.kind == "dict":
            if isinstance(value, (list, tuple)):
                raise ValueError(
                    f"{name}: the inputs are a dict with keys {list(self.keys)}, so a per-input {name} "
                    f"must be a dict with those keys (a list or tuple cannot be matched to keys); a "
                    f"scalar or an array is shared by every input"
                )
            if not isinstance(value, dict):
                return [value] * len(self.keys)  # a scalar / shared value applies to every input
            missing = [k for k in self.keys if k not in value]
            if missing:
                raise ValueError(f"{name}: missing entries for inputs {missing}; expected keys {list(self.keys)}")
            return [value[k] for k in self.keys]
        if isinstance(value, (list, tuple)):
            if len(value) != len(self.keys):
                raise ValueError(
                    f"{name}: the model has {len(self.keys)} inputs, so a list or tuple {name} needs one entry "
                    f"per input; got {len(value)} entries. To share one per-feature {name} with every input pass a "
                    f"numpy array instead"
                )
            return list(value)
        return [value] * len(self.keys)


def _is_numeric_sequence(value) -> bool:
    """True for nested Python lists of numbers (an array written as a list), not lists of arrays."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        return False
    if all(isinstance(v, (int, float, np.number, bool)) for v in value):
        return True
    return all(isinstance(v, (list, tuple)) and _is_numeric_sequence(v) for v in value)


def _to_tensor(value, name: str) -> tf.Tensor:
    if isinstance(value, tf.Tensor):
        return value
    if isinstance(value, tf.Variable):
        return tf.convert_to_tensor(value)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be array-like (numpy array or tf.Tensor), got {type(value).__name__}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array (ragged or mixed content?)")
    return tf.convert_to_tensor(arr)


def structure_of(inputs) -> Structure:
    if isinstance(inputs, dict):
        if not inputs:
            raise ValueError("inputs: got an empty dict")
        try:  # a mapping: its key order carries no meaning, so inputs are ordered by key
            keys = tuple(sorted(inputs.keys()))
        except TypeError:  # keys of mixed types: keep the given order
            keys = tuple(inputs.keys())
        return Structure("dict", keys)
    if isinstance(inputs, (list, tuple)) and not _is_numeric_sequence(inputs):
        if not inputs:
            raise ValueError("inputs: got an empty list")
        return Structure("tuple" if isinstance(inputs, tuple) else "list", tuple(range(len(inputs))))
    return Structure("single")


def prepare_inputs(inputs, name: str = "inputs", allow_integer: bool = False, no_layer=None):
    """Convert user inputs to a flat list of float32 tensors and check them.

    Parameters
    ----------
    inputs : array-like, or list/tuple/dict of array-likes
        A batch ``[B, ...]`` per model input.
    allow_integer : bool
        Integer inputs are token ids; gradients do not exist for them, so methods refuse them
        unless an embedding ``layer=`` is given (then they are passed to the model unchanged).

    Returns
    -------
    flat : list of tf.Tensor
    structure : Structure
    batch_size : int
    """
    structure = structure_of(inputs)
    values = (
        [inputs[k] for k in structure.keys]
        if structure.kind == "dict"
        else (inputs if structure.kind in ("list", "tuple") else [inputs])
    )
    flat = []
    batch = None
    for key, value in zip(structure.keys or (None,), values):
        label = name if structure.kind == "single" else f"{name}[{key!r}]"
        t = _to_tensor(value, label)
        if t.shape.rank is None or t.shape.rank < 1:
            raise ValueError(f"{label} must have a batch dimension, i.e. shape [B, ...]; got a scalar")
        if t.dtype.is_integer or t.dtype == tf.bool:
            if not allow_integer:
                advice = (
                    "Pass layer=<the Embedding layer or its name> to attribute to the embedding output, with the "
                    "integer ids unchanged"
                    if no_layer is None
                    else f"This method cannot attribute to a layer's output ({no_layer})"
                )
                raise TypeError(
                    f"{label} has integer dtype {t.dtype.name}: integer inputs such as token ids have no gradient, "
                    "and casting ids to float does not create one (an Embedding lookup is not differentiable in its "
                    f"ids, so the attributions would all be zero). {advice}. Only integers that are "
                    "measurements (e.g. uint8 pixel values 0-255) should be converted to float."
                )
        elif t.dtype.is_floating:
            t = tf.cast(t, tf.float32)
            if not bool(tf.reduce_all(tf.math.is_finite(t))):
                raise ValueError(f"{label} contains NaN or infinite values")
        else:
            raise TypeError(f"{label} must be a float array, got dtype {t.dtype.name}")
        b = t.shape[0]
        if b == 0:
            raise ValueError(f"{label} is an empty batch (shape {tuple(t.shape)})")
        if batch is None:
            batch = b
        elif b != batch:
            raise ValueError(
                f"{label} has batch size {b} but the other inputs have {batch}; all inputs need the same B"
            )
        flat.append(t)
    if batch is None:  # unreachable: empty lists / dicts are refused above
        raise ValueError(f"{name}: no input tensors")
    return flat, structure, int(batch)


def _declared_shapes(model, structure: Structure):
    """The input shapes a Keras model declares (``keras.Input``), one per flat input, or ``None``."""
    try:
        spec = model.input
    except Exception:  # Sequential models before their first call, subclassed models, plain callables
        spec = None
    if spec is None:
        listed = getattr(model, "inputs", None)
        if not isinstance(listed, (list, tuple)) or not listed:
            return None
        if structure.kind == "dict":
            by_name = {getattr(t, "name", None): t for t in listed}
            spec = {k: by_name[k] for k in structure.keys if k in by_name}
        else:
            spec = listed[0] if len(listed) == 1 else list(listed)

    def shape_of(t):
        shape = getattr(t, "shape", None)
        return None if shape is None else tuple(shape)

    if structure.kind == "single":
        if isinstance(spec, (list, tuple, dict)):
            if len(spec) != 1:
                return None
            spec = next(iter(spec.values())) if isinstance(spec, dict) else spec[0]
        return [shape_of(spec)]
    if structure.kind == "dict":
        if not isinstance(spec, dict):
            return None
        return [shape_of(spec[k]) if k in spec else None for k in structure.keys]
    if isinstance(spec, (list, tuple)) and len(spec) == len(structure.keys):
        return [shape_of(t) for t in spec]
    return None


def check_against_model(model, flat, structure: Structure, name: str = "inputs") -> None:
    """Refuse inputs whose rank differs from the batch the model declares (``keras.Input``).

    The usual case is one example passed without its batch axis (``ig(model, x[0])``), which Keras
    would otherwise report deep inside a layer (e.g. negative Conv2D output sizes).
    """
    declared = _declared_shapes(model, structure)
    if not declared:
        return
    for i, (want, t) in enumerate(zip(declared, flat)):
        if want is None or len(want) == 0:
            continue
        if t.shape.rank != len(want):
            label = name if structure.kind == "single" else f"{name}[{structure.keys[i]!r}]"
            dims = ", ".join("B" if j == 0 else ("?" if d is None else str(d)) for j, d in enumerate(want))
            hint = ""
            if t.shape.rank == len(want) - 1:
                hint = " (one example without its batch axis? pass x[None] for a batch of one)"
            raise ValueError(f"{label}: expected a batch [{dims}], got an array of shape {tuple(t.shape)}{hint}")


#: The named baseline of ``layer=`` attribution: the layer's activation at an all-zero model input
#: (captum's layer baseline), where the default baseline is zeros in the layer's own space.
ZERO_INPUT = "zero_input"


class LayerActivations(list):
    """``flat_x`` of a ``layer=`` problem: the layer's activations for the explicands, with
    ``zero_input()`` giving its activations ``[B, *S]`` at an all-zero model input."""

    def __init__(self, items, zero_input):
        super().__init__(items)
        self.zero_input = zero_input


def prepare_baselines(baseline, flat_x, structure: Structure, name: str = "baseline", seed=None):
    """Bring baselines to ``[K, B, *S]`` per input (``K`` baselines that get averaged).

    Accepted per input (``S`` = per-example shape, ``B`` = batch size):

    * ``None`` -> zeros; a Python/numpy scalar -> a constant image;
    * ``S`` -> one baseline shared by all examples;
    * ``[B, *S]`` -> one baseline per example (``[1, *S]`` broadcasts);
    * ``[K, *S]`` with ``K != B`` -> K shared baselines, averaged;
    * ``[K, B, *S]`` or ``[K, 1, *S]`` -> K baselines per example, averaged;
    * ``"zero_input"`` (with ``layer=``: ``flat_x`` is a :class:`LayerActivations`) -> the layer's
      activations at an all-zero model input, one per example (captum's layer baseline).

    A ``[B, *S]`` array is always read as per-example; to pass ``K == B`` shared baselines use
    ``[K, 1, *S]``. All inputs must agree on ``K``. A ``tpa.baselines`` recipe is drawn for the
    inputs; ``seed`` (the method's ``seed=``) overrides the recipe's own seed when it is not ``None``.
    """
    if baseline is None:
        baseline = 0.0
    if isinstance(baseline, str):
        if baseline != ZERO_INPUT:
            raise ValueError(f"{name}: the only named baseline is {ZERO_INPUT!r} (with layer=), got {baseline!r}")
        zero_input = getattr(flat_x, "zero_input", None)
        if zero_input is None:
            raise ValueError(
                f"{name}={ZERO_INPUT!r} is a layer's activation at an all-zero model input; it needs layer= "
                "(without layer= pass baseline=0.0)"
            )
        baseline = zero_input()  # [B, *S]: one per example
    per_input = structure.flatten(baseline, name)
    out = []
    ks = set()
    for i, (b, x) in enumerate(zip(per_input, flat_x)):
        label = name if structure.kind == "single" else f"{name}[{structure.keys[i]!r}]"
        if b is None:
            b = 0.0
        if hasattr(b, "draw") and callable(b.draw):  # a tpa.baselines recipe
            b = b.draw(x, seed=seed, input_index=i)
        host = isinstance(b, (np.ndarray, np.generic, float, int)) and not isinstance(b, bool)
        t = tf.cast(_to_tensor(b, label), tf.float32)
        # checked in float32, as the method reads it; a host array on the host (no eager ops, no device sync)
        finite = np.isfinite(np.asarray(b, np.float32)).all() if host else bool(tf.reduce_all(tf.math.is_finite(t)))
        if not finite:
            raise ValueError(f"{label} contains NaN or infinite values")
        s = tuple(x.shape[1:])
        bsz = x.shape[0]
        shape = tuple(t.shape)
        if len(shape) == 0:
            t = tf.fill((1, bsz) + s, t)
        elif shape == s:
            t = tf.broadcast_to(tf.reshape(t, (1, 1) + s), (1, bsz) + s)
        elif len(shape) == len(s) + 1 and shape[1:] == s:
            if shape[0] == bsz:
                t = tf.expand_dims(t, 0)
            elif shape[0] == 1:
                t = tf.broadcast_to(tf.expand_dims(t, 0), (1, bsz) + s)
            else:  # K shared baselines
                t = tf.broadcast_to(tf.expand_dims(t, 1), (shape[0], bsz) + s)
        elif len(shape) == len(s) + 2 and shape[2:] == s and shape[1] in (1, bsz):
            t = tf.broadcast_to(t, (shape[0], bsz) + s)
        else:
            raise ValueError(
                f"{label} has shape {shape}, which does not fit inputs of shape {(bsz,) + s}: expected a scalar, "
                f"{s}, {(bsz,) + s}, (K,) + {s}, or (K, {bsz}) + {s}"
            )
        if t.shape[0] == 0:
            raise ValueError(f"{label}: got zero baselines")
        ks.add(int(t.shape[0]))
        out.append(t)
    if len(ks) > 1:
        raise ValueError(f"{name}: every input needs the same number of baselines, got {sorted(ks)}")
    return out


def renamed_option(new_value, old_value, new_name: str, old_name: str, default=None, stacklevel: int = 3):
    """Resolve an option renamed from ``old_name`` to ``new_name`` (the old name stays one release).

    ``new_value`` is ``None`` when the user did not pass the new name. Passing the old name warns
    with a ``DeprecationWarning``; passing both is a ``TypeError``.
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise TypeError(f"{old_name}= is the deprecated name of {new_name}=; pass only {new_name}= (got both)")
    import warnings

    warnings.warn(
        f"{old_name}= is deprecated and has been renamed {new_name}=; {old_name}= will be removed in the next release",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_optional_positive_int(value, name: str):
    return None if value is None else check_positive_int(value, name)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
