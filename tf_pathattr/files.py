"""Reading inputs from disk: models, images, ``.npy`` arrays, TFRecord files, pixel scales, preprocessing.

Everything here raises plain ``ValueError`` / ``FileNotFoundError`` (or :class:`RecordError`, a
``ValueError``, for one record that cannot be read); the command line (:mod:`tf_pathattr.cli`) adds
its ``--model:`` / ``--input:`` prefixes, the dataset runs (:mod:`tf_pathattr.dataset`) turn record
errors into dead letters.
"""

from __future__ import annotations

import glob as _glob
import importlib
import io
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine.shapes import check_choice

__all__ = [
    "MODEL_SUFFIXES",
    "IMAGE_SUFFIXES",
    "TFRECORD_SUFFIXES",
    "FILE_SUFFIXES",
    "SCALES",
    "RecordError",
    "Record",
    "first_line",
    "load_model",
    "model_input_shape",
    "is_image_file",
    "read_image",
    "decode_image",
    "scale_pixels",
    "check_scale",
    "load_preprocess",
    "apply_preprocess",
    "check_example",
    "read_npy",
    "tfrecord_payloads",
    "decode_file",
    "list_files",
    "masked_crc32c",
]

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
FILE_SUFFIXES = IMAGE_SUFFIXES + (".npy",) + TFRECORD_SUFFIXES
#: Pixel scales for image inputs (``tf-pathattr explain --scale``); see :func:`scale_pixels`.
SCALES = ("0,1", "-1,1", "0,255", "caffe", "torch")


class RecordError(ValueError):
    """A record that cannot be explained; ``str(exc)`` is the reason written to the dead letters."""


@dataclass
class Record:
    """One input record: ``x`` (float32, per-example shape) or ``error`` (why it cannot be explained)."""

    id: str
    x: np.ndarray | None = None
    target: int | None = None
    error: str | None = None


def first_line(exc) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------------
# models


def model_input_shape(model):
    """Per-example input shape of a single-input Keras model (``None`` when unknown)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    if len(inputs) != 1:
        raise NotImplementedError(f"explain_dataset explains single-input models; this model has {len(inputs)} inputs")
    shape = tuple(inputs[0].shape[1:])
    return None if any(d is None for d in shape) else tuple(int(d) for d in shape)


def _saved_model_input_shape(fn):
    try:
        cf = fn.fn.concrete_functions[0] if hasattr(fn.fn, "concrete_functions") else None
        if cf is not None:
            spec = list(cf.structured_input_signature[0])[0]
            if all(d is not None for d in spec.shape[1:]):
                return tuple(int(d) for d in spec.shape[1:])
    except Exception:
        return None
    return None


def load_model(path):
    """``(model, per-example input shape or None)`` from a ``.keras`` / ``.h5`` / ``.hdf5`` file or a SavedModel folder.

    Keras files are loaded with Keras' safe mode on; a SavedModel (``model.export``,
    ``tf.saved_model.save`` or :func:`tf_pathattr.saved_model.export`) is explained through its
    ``serve`` endpoint. Raises ``FileNotFoundError`` for a missing path, ``ValueError`` otherwise.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if p.is_dir():
        if not (p / "saved_model.pb").exists():
            raise ValueError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        from .saved_model import load

        try:
            fn = load(p)
        except Exception as exc:
            raise ValueError(f"cannot load the SavedModel at {path}: {first_line(exc)}") from None
        return fn, _saved_model_input_shape(fn)
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"expected a .keras, .h5 or .hdf5 file or a SavedModel folder, got {path}")
    import keras

    try:
        model = keras.models.load_model(p, safe_mode=True, compile=False)
    except Exception as exc:
        raise ValueError(f"cannot load {path}: {first_line(exc)}") from None
    shape = None
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) == 1 and all(d is not None for d in inputs[0].shape[1:]):
        shape = tuple(int(d) for d in inputs[0].shape[1:])
    return model, shape


# --------------------------------------------------------------------------------------------
# images, scales, preprocessing


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _pixels(im, shape):
    from PIL import Image

    channels = shape[-1] if shape is not None and len(shape) == 3 else 3
    if channels not in (1, 3):
        raise RecordError(f"the model expects {channels} channels; images give 1 (grey) or 3 (RGB)")
    im = im.convert("L" if channels == 1 else "RGB")
    if shape is not None and len(shape) == 3 and im.size != (shape[1], shape[0]):
        im = im.resize((shape[1], shape[0]), Image.BILINEAR)
    x = np.asarray(im, dtype=np.float32)
    return x[..., None] if x.ndim == 2 else x


def read_image(path, shape):
    """Pixels ``[1, H, W, C]`` float32 in 0..255, converted to the model's channel count and resized to its input."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            x = _pixels(im, shape)
    except RecordError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot read {path} as an image: {first_line(exc)}") from None
    return x[None]


def decode_image(data: bytes, shape):
    """Pixels ``[H, W, C]`` float32 in 0..255 from PNG / JPEG bytes (as :func:`read_image`)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return _pixels(im, shape)
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"cannot decode the image: {first_line(exc)}") from None


def check_scale(scale) -> str:
    """``scale`` for image files: one of :data:`SCALES`."""
    return check_choice(scale, "scale", SCALES)


def scale_pixels(pixels, scale: str):
    """Bring 0..255 pixels ``[B, H, W, C]`` to a model's input range.

    ``0,1``: ``p / 255``; ``-1,1``: ``p / 127.5 - 1``; ``0,255``: unchanged; ``caffe``: RGB -> BGR
    minus the ImageNet channel means (VGG, ResNet50 in Keras); ``torch``: ``p / 255`` minus the
    ImageNet means, divided by the standard deviations (DenseNet, EfficientNetV2 with
    ``include_preprocessing=False``). ``caffe`` and ``torch`` need RGB images.
    """
    p = np.asarray(pixels, np.float32)
    if scale == "0,1":
        return p / 255.0
    if scale == "-1,1":
        return p / 127.5 - 1.0
    if scale == "0,255":
        return p.copy()
    if scale in ("caffe", "torch"):
        if p.shape[-1] != 3:
            raise ValueError(f"scale {scale}: needs RGB images (3 channels), the model takes {p.shape[-1]}")
        import keras

        return np.asarray(keras.applications.imagenet_utils.preprocess_input(p.copy(), mode=scale), np.float32)
    raise ValueError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")


def load_preprocess(spec: str):
    """The function named by ``module:function`` (the current folder is importable)."""
    module_name, sep, func_name = str(spec).partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"expected MODULE:FUNCTION (e.g. my_model:preprocess), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import {module_name}: {first_line(exc)}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ValueError(f"{module_name} has no function {func_name!r}")
    return fn


def apply_preprocess(fn, pixels, spec: str = "preprocess"):
    """``fn(pixels 0..255 float32 [B, H, W, C]) -> model inputs`` with the batch size kept."""
    try:
        out = fn(np.array(pixels, np.float32))
        x = np.asarray(out.numpy() if hasattr(out, "numpy") else out)
    except Exception as exc:
        raise ValueError(f"{spec} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if x.dtype.kind not in "fiub" or x.ndim < 1 or x.shape[0] != pixels.shape[0]:
        raise ValueError(
            f"{spec} must return a numeric array with the batch size kept "
            f"({pixels.shape[0]}), got {x.dtype} {tuple(x.shape)}"
        )
    return x.astype(np.float32)


class ImageTransform:
    """0..255 pixels ``[H, W, C]`` -> one model input: a :data:`SCALES` entry or a ``module:function``.

    Picklable (Beam workers re-import the preprocessing function by name).
    """

    def __init__(self, scale: str = "0,1", preprocess: str | None = None):
        self.scale = check_scale(scale)
        self.preprocess = preprocess
        self._fn = None
        if preprocess is not None:
            load_preprocess(preprocess)  # fail now, not on the first image

    def __getstate__(self):
        return {"scale": self.scale, "preprocess": self.preprocess, "_fn": None}

    def describe(self) -> dict:
        return {"scale": self.scale, "preprocess": self.preprocess}

    def __call__(self, pixels):
        try:
            if self.preprocess is not None:
                if self._fn is None:
                    self._fn = load_preprocess(self.preprocess)
                return apply_preprocess(self._fn, pixels[None], self.preprocess)[0]
            return scale_pixels(pixels[None], self.scale)[0]
        except RecordError:
            raise
        except ValueError as exc:
            raise RecordError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# records


def check_example(x, shape=None) -> np.ndarray:
    """One example as float32, checked: numeric, of ``shape`` (when given) and finite.

    Raises :class:`RecordError` with the reason otherwise.
    """
    try:
        arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    except Exception as exc:  # objects numpy cannot hold
        raise RecordError(f"not an array: {first_line(exc)}") from None
    if arr.dtype.kind not in "fiub":
        raise RecordError(f"holds {arr.dtype} values, expected numbers")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise RecordError(f"wrong shape: {tuple(arr.shape)}, the model expects {tuple(shape)}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise RecordError(f"non-finite values: {bad} NaN/inf entries")
    return arr


def read_npy(path):
    """A ``.npy`` array of numbers as float32 (no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        x = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"cannot read {path} as a .npy array: {first_line(exc)}") from None
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{path} holds {x.dtype} values, expected numbers")
    return x.astype(np.float32)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (needs ``google-crc32c``)."""
    import google_crc32c

    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_payloads(data: bytes) -> Iterator[bytes]:
    """The records of a TFRecord file (length, masked CRC of the length, data, masked CRC of the data).

    CRCs are checked when ``google-crc32c`` is installed (the ``[beam]`` extra); a truncated or
    corrupt file raises :class:`RecordError`.
    """
    try:
        import google_crc32c  # noqa: F401

        masked = masked_crc32c
    except ImportError:  # pragma: no cover - the [beam] extra installs it
        masked = None

    pos, n = 0, len(data)
    while pos < n:
        if pos + 12 > n:
            raise RecordError("truncated TFRecord file")
        (length,) = struct.unpack_from("<Q", data, pos)
        (len_crc,) = struct.unpack_from("<I", data, pos + 8)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > n:
            raise RecordError("truncated TFRecord file")
        payload = data[start:end]
        if masked is not None:
            (data_crc,) = struct.unpack_from("<I", data, end)
            if masked(data[pos : pos + 8]) != len_crc or masked(payload) != data_crc:
                raise RecordError("corrupt TFRecord file (CRC mismatch)")
        yield payload
        pos = end + 4


def _as_transform(transform):
    if transform is None:
        return ImageTransform()
    if isinstance(transform, str):
        return ImageTransform(transform)
    return transform


def _parse_example(payload: bytes, shape, default_id: str, transform):
    """``(id, x, target)`` from a serialized ``tf.train.Example``.

    Features: ``x`` (float list, reshaped by the int64 ``shape`` feature or the model's input
    shape) or ``image`` (PNG / JPEG bytes); optional ``id`` (bytes) and ``label`` / ``target`` (int64).
    """
    import tensorflow as tf

    try:
        ex = tf.train.Example.FromString(payload)
    except Exception as exc:
        raise RecordError(f"not a tf.train.Example: {first_line(exc)}") from None
    feats = ex.features.feature
    rid = (
        feats["id"].bytes_list.value[0].decode("utf-8", "replace")
        if "id" in feats and feats["id"].bytes_list.value
        else default_id
    )
    target = None
    for key in ("target", "label"):
        if key in feats and feats[key].int64_list.value:
            target = int(feats[key].int64_list.value[0])
            break
    try:
        if "x" in feats:
            x = np.asarray(feats["x"].float_list.value, np.float32)
            if "shape" in feats and feats["shape"].int64_list.value:
                x = x.reshape(tuple(feats["shape"].int64_list.value))
            elif shape is not None and x.size == int(np.prod(shape)):
                x = x.reshape(shape)
        elif "image" in feats and feats["image"].bytes_list.value:
            x = transform(decode_image(feats["image"].bytes_list.value[0], shape))
        else:
            raise RecordError("the tf.train.Example has neither an 'x' (float list) nor an 'image' (bytes) feature")
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"cannot read the example: {first_line(exc)}") from None
    return rid, x, target


def decode_file(path: str, data: bytes, shape=None, scale="0,1") -> list[Record]:
    """The records in one file (``data`` = its bytes), each checked with :func:`check_example`.

    * image (PNG / JPEG): one record ``path``, converted to the model's channel count, resized to
      its input size when ``shape`` is known, and brought to the model's input range by ``scale``
      (a :data:`SCALES` entry or an :class:`ImageTransform`, which may name a ``module:function``);
    * ``.npy``: one record ``path`` for an array of the example shape, ``path#i`` for a batch
      ``[n, *shape]``;
    * TFRecord: one record per ``tf.train.Example`` (``path#i`` unless it has an ``id`` feature).

    A file that cannot be read gives one record with its ``error``; records that fail the checks
    carry theirs.
    """
    path = str(path)
    transform = _as_transform(scale)
    suffix = os.path.splitext(path)[1].lower()
    out: list[Record] = []

    def add(rid, fn, target=None):
        try:
            out.append(Record(rid, check_example(fn(), shape), target))
        except RecordError as exc:
            out.append(Record(rid, target=target, error=str(exc)))

    try:
        if suffix in IMAGE_SUFFIXES:
            img = transform(decode_image(data, shape))
            add(path, lambda: img)
        elif suffix == ".npy":
            try:
                arr = np.load(io.BytesIO(data), allow_pickle=False)
            except Exception as exc:
                raise RecordError(f"cannot read a .npy array: {first_line(exc)}") from None
            if shape is not None and arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape):
                for i in range(arr.shape[0]):
                    add(f"{path}#{i}", lambda i=i: arr[i])
            else:
                add(path, lambda: arr)
        elif suffix in TFRECORD_SUFFIXES:
            for i, payload in enumerate(tfrecord_payloads(data)):
                try:
                    rid, x, target = _parse_example(payload, shape, f"{path}#{i}", transform)
                except RecordError as exc:
                    out.append(Record(f"{path}#{i}", error=str(exc)))
                    continue
                add(rid, lambda x=x: x, target)
        else:
            raise RecordError(f"unsupported file type {suffix!r}; expected one of {list(FILE_SUFFIXES)}")
    except RecordError as exc:
        out.append(Record(path, error=str(exc)))
    return out


def list_files(pattern) -> list[str]:
    """The sorted files of a glob pattern, a file, a folder (its supported files) or a list of those."""
    if isinstance(pattern, (list, tuple)):
        files = [f for p in pattern for f in list_files(p)]
        return sorted(set(files))
    pattern = str(pattern)
    if os.path.isdir(pattern):
        return sorted(str(p) for p in Path(pattern).iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
    if os.path.isfile(pattern):
        return [pattern]
    files = sorted(f for f in _glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r}")
    return files
