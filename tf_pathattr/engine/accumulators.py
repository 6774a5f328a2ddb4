"""Per-step reductions that path loops can use instead of their own gradient sum.

A discretised path method visits points ``z_0, z_1, ..., z_N`` (in the order its loop runs) and at
each point gets the explained scalar ``F_j = F(z_j)`` and the gradient ``g_j`` from one
:func:`tf_pathattr.engine.gradients.score_and_gradients` call. Its own attribution is
``sum_j g_j * (z_{j+1} - z_j)``. :class:`ImportantDirection` is the IDGI reduction of the same
``(F_j, g_j)`` pairs:

.. math::

    \\mathrm{IDGI}_i = \\sum_{j=0}^{N-1} (F_{j+1} - F_j)\\, \\frac{g_{j,i}^2}{\\sum_k g_{j,k}^2}

(the sum over ``k`` runs over every attributed element of the example, all inputs together). A
loop calls :meth:`ImportantDirection.update` once per chunk of consecutive points and
:meth:`ImportantDirection.finish` with ``F(z_N)`` (the path end, whose gradient is never used).
Telescoping gives ``sum_i IDGI_i + lost = F(z_N) - F(z_0)`` exactly, where ``lost`` is the output
change of the steps whose gradient is exactly zero (``zero_gradient="skip"``; the released code
returns NaN there, ``zero_gradient="nan"``).

Reference: R. Yang, B. Wang, M. Bilgic, "IDGI: A Framework to Eliminate Explanation Noise from
Integrated Gradients", CVPR 2023, arXiv 2303.14242 (released function: yangruo1226/IDGI ``idgi.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

__all__ = ["ImportantDirection", "IDGIState", "ZERO_GRADIENT"]

ZERO_GRADIENT = ("skip", "nan")


class IDGIState(NamedTuple):
    acc: list[tf.Tensor]  # [B, *S_i] per input
    g_prev: list[tf.Tensor]  # gradient at the last point seen
    f_prev: tf.Tensor  # [B] output at the last point seen
    lost: tf.Tensor  # [B] output change of skipped (zero-gradient) steps
    started: tf.Tensor  # scalar bool: a previous point exists


def _sq_norm(gs, lead: int):
    """Sum of squares over every non-leading axis of every tensor in ``gs`` -> ``[*lead dims]``."""
    parts = []
    for g in gs:
        axes = list(range(lead, g.shape.rank))
        parts.append(tf.reduce_sum(tf.square(g), axis=axes) if axes else tf.square(g))
    return tf.add_n(parts)


class ImportantDirection:
    """The IDGI step reduction (see the module docstring).

    Parameters
    ----------
    zero_gradient : {"skip", "nan"}
        What a step whose gradient is exactly zero contributes: nothing (its output change is
        reported as ``lost``), or NaN for the whole map as the released numpy function does.
    """

    def __init__(self, zero_gradient: str = "skip"):
        if zero_gradient not in ZERO_GRADIENT:
            raise ValueError(f"zero_gradient must be one of {list(ZERO_GRADIENT)}, got {zero_gradient!r}")
        self.zero_gradient = zero_gradient

    def init(self, like: list[tf.Tensor]) -> IDGIState:
        """Empty state for explicands shaped like ``like`` (a list of ``[B, *S_i]`` tensors)."""
        batch = tf.shape(like[0])[0]
        zeros = tf.zeros([batch], tf.float32)
        return IDGIState(
            [tf.zeros_like(t, tf.float32) for t in like],
            [tf.zeros_like(t, tf.float32) for t in like],
            zeros,
            zeros,
            tf.constant(False),
        )

    def _steps(self, state: IDGIState, g_left, d, valid_first):
        """Add the steps with left gradients ``g_left`` (list of ``[c, B, *S]``) and output changes ``d [c, B]``."""
        s = _sq_norm(g_left, 2)  # [c, B]
        c = tf.shape(d)[0]
        use = tf.concat([tf.fill([1], valid_first), tf.ones([c - 1], tf.bool)], 0)[:, None]  # row 0 needs a predecessor
        d = tf.where(use, d, tf.zeros_like(d))
        if self.zero_gradient == "nan":
            coef = d / s
            lost = state.lost
        else:
            ok = s > 0
            coef = tf.where(ok, d / tf.where(ok, s, tf.ones_like(s)), tf.zeros_like(s))
            lost = state.lost + tf.reduce_sum(tf.where(ok, tf.zeros_like(d), d), axis=0)
        acc = []
        for a, g in zip(state.acc, g_left):
            extra = g.shape.rank - 2
            cf = tf.reshape(coef, tf.concat([tf.shape(coef), tf.ones([extra], tf.int32)], 0)) if extra else coef
            acc.append(a + tf.reduce_sum(cf * tf.square(g), axis=0))
        return acc, lost

    def update(self, state: IDGIState, scores, grads) -> IDGIState:
        """Feed ``c`` consecutive path points: ``scores [c, B]`` and ``grads`` (list of ``[c, B, *S_i]``)."""
        scores = tf.cast(scores, tf.float32)
        grads = [tf.cast(g, tf.float32) for g in grads]
        f_all = tf.concat([state.f_prev[None], scores], axis=0)
        d = f_all[1:] - f_all[:-1]  # [c, B]: step into each new point
        g_left = [tf.concat([gp[None], g[:-1]], axis=0) for gp, g in zip(state.g_prev, grads)]
        acc, lost = self._steps(state, g_left, d, state.started)
        return IDGIState(acc, [g[-1] for g in grads], scores[-1], lost, tf.constant(True))

    def finish(self, state: IDGIState, f_end):
        """Close the path at ``F(z_N) = f_end [B]``; returns ``(attributions list, lost [B])``."""
        f_end = tf.cast(f_end, tf.float32)
        d = (f_end - state.f_prev)[None]
        acc, lost = self._steps(state, [g[None] for g in state.g_prev], d, state.started)
        return acc, lost


def as_accumulator(idgi, name: str = "idgi"):
    """``idgi`` option of the path methods -> ``None`` or an :class:`ImportantDirection`.

    ``False``/``None``: the method's own sum; ``True``: IDGI with ``zero_gradient="skip"``; an
    :class:`ImportantDirection` instance: IDGI with its policy.
    """
    if idgi is None or idgi is False:
        return None
    if idgi is True:
        return ImportantDirection("skip")
    if isinstance(idgi, ImportantDirection):
        return idgi
    raise TypeError(
        f"{name} must be a bool or tf_pathattr.engine.accumulators.ImportantDirection, "
        f"got {type(idgi).__name__} ({idgi!r})"
    )


def cache_token(acc):
    """What a compiled path loop depends on: ``None`` or ``("idgi", zero_gradient)``."""
    return None if acc is None else ("idgi", acc.zero_gradient)
