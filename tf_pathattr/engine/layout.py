"""Image layout: the one ``data_format`` rule every image method and metric follows.

``data_format`` is ``"channels_last"`` (``[B, H, W, C]``) or ``"channels_first"`` (``[B, C, H, W]``);
``None`` means ``keras.config.image_data_format()``, so a project configured for channels-first
images gets them everywhere without passing the option. Grayscale images without a channel axis
(``[B, H, W]``) are the same in both layouts.
"""

from __future__ import annotations

from typing import Optional, Tuple

import keras

__all__ = ["DATA_FORMATS", "resolve_data_format", "image_axes", "to_channels_last", "from_channels_last"]

DATA_FORMATS = ("channels_last", "channels_first")


def resolve_data_format(data_format: Optional[str], name: str = "data_format") -> str:
    """``data_format`` checked, with ``None`` read from ``keras.config.image_data_format()``."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{name} must be one of {list(DATA_FORMATS)} or None, got {data_format!r}")
    return data_format


def image_axes(shape, data_format: str, name: str = "inputs") -> Tuple[int, int, Optional[int]]:
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
