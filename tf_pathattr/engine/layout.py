"""Image layout: the one ``data_format`` rule every image method and metric follows.

``data_format`` is ``"channels_last"`` (``[B, H, W, C]``) or ``"channels_first"`` (``[B, C, H, W]``).
Grayscale images without a channel axis (``[B, H, W]``) are the same in both layouts. The layout
of a rank-4 batch is decided by :func:`resolve_image_layout`, which Blur IG, XRAI and every image
metric call (no copies of the rule):

1. an explicit ``data_format=`` wins, but contradicting what the model declares is an error;
2. otherwise the layout the model declares where it can be read: the ``data_format`` of its first
   image layer (``Conv2D``, pooling, padding, cropping, upsampling: :data:`IMAGE_LAYERS`) when that
   layer reads the model's inputs as given, and the model's declared input shape (``(None, None, C)``
   is channels-last, ``(C, None, None)`` channels-first);
3. a model whose layout cannot be read although it has image layers (a ``Permute`` / ``Reshape`` /
   ``Lambda`` before its first one, layers of both layouts, or the two sources disagreeing) is
   refused with a ``ValueError`` naming ``data_format=``: never a guess;
4. a model that declares nothing (a plain callable, a model without image layers) follows
   ``keras.config.image_data_format()``, the global Keras setting.
"""

from __future__ import annotations

import keras

__all__ = [
    "DATA_FORMATS",
    "IMAGE_LAYERS",
    "resolve_data_format",
    "model_data_format",
    "resolve_image_layout",
    "image_axes",
    "to_channels_last",
    "from_channels_last",
]

DATA_FORMATS = ("channels_last", "channels_first")

# Layers whose computation depends on the layout of 2-D images (their data_format says it). Flatten
# also carries a data_format, but it only orders the flattened features: it declares no image layout.
IMAGE_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.UpSampling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
)

AMBIGUOUS = "ambiguous"


def resolve_data_format(data_format: str | None, name: str = "data_format") -> str:
    """``data_format`` checked, with ``None`` read from ``keras.config.image_data_format()``."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{name} must be one of {list(DATA_FORMATS)} or None, got {data_format!r}")
    return data_format


def _image_layers(model, depth: int = 0):
    """The model's image layers in the order the model lists them (nested models expanded)."""
    if isinstance(model, IMAGE_LAYERS):
        yield model
        return
    if depth > 16:
        return
    for layer in getattr(model, "layers", None) or ():
        if isinstance(layer, IMAGE_LAYERS):
            if getattr(layer, "data_format", None) in DATA_FORMATS:
                yield layer
        elif isinstance(layer, keras.Model):
            yield from _image_layers(layer, depth + 1)


def _model_input_shape(model):
    """The model's per-example input shape as a tuple (``None``: several inputs, or not known)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not inputs or len(inputs) != 1 or getattr(inputs[0], "shape", None) is None:
        return None
    return tuple(inputs[0].shape[1:])


def _layer_input_shape(layer):
    """The per-example shape ``layer`` is called on: a tuple; ``None`` when it was never called
    symbolically (a subclassed model); ``AMBIGUOUS`` when it is shared and called on different shapes."""
    shapes = set()
    for node in getattr(layer, "_inbound_nodes", None) or ():
        tensors = getattr(node, "input_tensors", None) or ()
        if len(tensors) != 1 or getattr(tensors[0], "shape", None) is None:
            return AMBIGUOUS
        shapes.add(tuple(tensors[0].shape[1:]))
    if not shapes:
        return None
    return shapes.pop() if len(shapes) == 1 else AMBIGUOUS


def _shape_says(shape) -> str | None:
    """The layout a declared per-example image shape states: ``(None, None, C)`` channels-last,
    ``(C, None, None)`` channels-first (free spatial axes, a fixed channel count); else None."""
    if shape is None or len(shape) != 3:
        return None
    if shape[0] is None and shape[1] is None and shape[2] is not None:
        return "channels_last"
    if shape[0] is not None and shape[1] is None and shape[2] is None:
        return "channels_first"
    return None


def model_data_format(model) -> tuple[str | None, str]:
    """The image layout ``model`` declares: ``(data_format, where it was read)``, ``(None, "")`` when the
    model declares none, or ``("ambiguous", why)`` when it has image layers whose layout cannot be read."""
    if not isinstance(model, keras.layers.Layer):
        return None, ""
    model_shape = _model_input_shape(model) if isinstance(model, keras.Model) else None
    by_shape = _shape_says(model_shape)
    layers = list(_image_layers(model))
    by_layer, where = None, ""
    if layers:
        first = layers[0]
        label = f"its first image layer {first.name!r} ({type(first).__name__}, data_format={first.data_format!r})"
        seen = _layer_input_shape(first)
        if seen == AMBIGUOUS:
            return AMBIGUOUS, f"{label} is shared and called on inputs of different shapes"
        if seen is not None and model_shape is not None:
            if seen != model_shape:
                return AMBIGUOUS, (
                    f"{label} does not read the model's inputs as given (it sees per-example shape {seen}, "
                    f"the model takes {model_shape}: a Permute, Reshape or Lambda before it)"
                )
            by_layer, where = first.data_format, label
        else:
            formats = sorted({layer.data_format for layer in layers})
            if len(formats) > 1:
                return AMBIGUOUS, f"its image layers use both layouts ({', '.join(formats)}) and their order is unknown"
            by_layer, where = formats[0], f"all its image layers ({len(layers)}) use data_format={formats[0]!r}"
    if by_layer is not None and by_shape is not None and by_layer != by_shape:
        return AMBIGUOUS, f"{where}, but its input shape {model_shape} states {by_shape}"
    if by_layer is not None:
        return by_layer, where
    if by_shape is not None:
        return by_shape, f"its input shape {model_shape} (free height and width, a fixed channel count)"
    return None, ""


def resolve_image_layout(model, shape, data_format: str | None = None, what: str = "inputs") -> str:
    """The layout of a batch of images of ``shape`` (batch axis included) explained on ``model``.

    The rule of the module doc: an explicit ``data_format`` (checked against the model), else the
    model's declared layout (:func:`model_data_format`), else ``keras.config.image_data_format()``.
    Rank-3 ``[B, H, W]`` batches have no channel axis: only the value of ``data_format`` is checked.

    Raises
    ------
    ValueError
        Naming ``data_format=``: an unknown value, a value that contradicts the model, or a model with
        image layers whose layout cannot be read (pass ``data_format=``).
    """
    if data_format is not None:
        resolve_data_format(data_format)
    if len(shape) != 4:
        return resolve_data_format(data_format)
    declared, where = model_data_format(model)
    if declared == AMBIGUOUS:
        if data_format is not None:
            return data_format
        raise ValueError(
            f"data_format: the layout of {what} of shape {tuple(shape)} cannot be read from the model: {where}. "
            "Pass data_format='channels_last' ([B, H, W, C]) or data_format='channels_first' ([B, C, H, W])"
        )
    if data_format is not None:
        if declared is not None and declared != data_format:
            raise ValueError(
                f"data_format={data_format!r} contradicts the model: {where}. Pass data_format={declared!r} "
                "or leave it out (the model's layout is used)"
            )
        return data_format
    if declared is not None:
        return declared
    return resolve_data_format(None)


def image_axes(shape, data_format: str, name: str = "inputs") -> tuple[int, int, int | None]:
    """``(height_axis, width_axis, channel_axis or None)`` of a batch of images with ``shape``.

    ``shape`` includes the batch axis: rank 3 is ``[B, H, W]`` (no channel axis), rank 4 is
    ``[B, H, W, C]`` or ``[B, C, H, W]`` by ``data_format``. Other ranks are refused.
    """
    rank = len(shape)
    if rank == 3:
        return 1, 2, None
    if rank == 4:
        return (2, 3, 1) if data_format == "channels_first" else (1, 2, 3)
    raise ValueError(
        f"{name} must be images [B, H, W], [B, H, W, C] or [B, C, H, W] (data_format), got shape {tuple(shape)}"
    )


def to_channels_last(x, data_format: str):
    """A rank-4 ``[B, C, H, W]`` batch transposed to ``[B, H, W, C]`` (others unchanged); numpy or TF."""
    if data_format != "channels_first" or len(x.shape) != 4:
        return x
    return _transpose(x, (0, 2, 3, 1))


def from_channels_last(x, data_format: str):
    """The inverse of :func:`to_channels_last`."""
    if data_format != "channels_first" or len(x.shape) != 4:
        return x
    return _transpose(x, (0, 3, 1, 2))


def _transpose(x, perm):
    if hasattr(x, "numpy") or type(x).__module__.startswith("tensorflow"):
        import tensorflow as tf

        return tf.transpose(x, perm)
    return x.transpose(perm)
