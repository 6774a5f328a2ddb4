"""The method registry: one declaration per method, read by everything that iterates over methods.

Every attribution method module ends with a :class:`MethodSpec` called ``SPEC`` that says what the
method is and what it supports; :mod:`tf_pathattr.methods` registers them. ``tpa.METHODS``,
:func:`tf_pathattr.attribute`, the noise tunnel, the Keras callback, the SavedModel exporter, the
command line, the demo, the quality benchmark, the README method table and the contract tests
(``tests/test_contract.py``) all read this registry; none of them keeps its own list of methods or
guesses a capability from parameter names.

A capability is declared as ``True`` (supported), or as a string: the reason it is not supported,
which is also the error message a user gets when asking for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import tensorflow as tf

__all__ = [
    "MethodSpec",
    "TileContext",
    "register",
    "get",
    "names",
    "specs",
    "aliases_of",
    "wrapped_baseline_option",
    "supports",
    "require",
    "tile_batch_axis",
    "tile_per_input",
]

Capability = Union[bool, str]


@dataclass(frozen=True)
class TileContext:
    """What a per-example option needs to be tiled for a problem of ``reps * batch`` rows.

    Rows are point-major: row ``r * batch + b`` is a copy of example ``b``.
    """

    batch: int
    reps: int
    flat_x: tuple  # the clean inputs, one ``[B, *S_i]`` tensor per model input
    structure: Any  # tf_pathattr.engine.shapes.Structure of the inputs


@dataclass(frozen=True)
class MethodSpec:
    """What one attribution method is and what it supports.

    Parameters
    ----------
    name : str
        Canonical name (``tpa.METHODS`` entry, ``explain_<name>`` endpoint).
    function : callable
        ``function(model, inputs, target=None, *, **options)``.
    summary : str
        One line for the README table and ``tf-pathattr methods``.
    paper : str
        Authors, title, venue and year (or arXiv id).
    aliases : tuple of str
        Short names ``tpa.attribute`` also accepts; each alias means exactly this method.
    completeness : str or None
        The completeness target ``sum(attr) ≈ ...`` reported by ``return_convergence_delta=True``
        (``None``: the method has no completeness target and does not take that option).
    details : bool
        Takes ``return_details=True`` and then returns ``(attributions, dict)``.
    layer : bool or str
        Takes ``layer=`` (attribution to a layer's output, e.g. an ``Embedding``), or why not.
    multi_input : bool or str
        Explains list / dict inputs of multi-input models, or why not.
    stochastic : bool
        Draws random numbers with its default options; takes ``seed=`` (stateless: same seed, same
        result). Methods that take a ``baseline`` (IG, Split IG, Guided IG, IDG) also take ``seed=``,
        which seeds a random ``tpa.baselines`` recipe (``None``: the recipe's own seed), but they
        are deterministic without one, so they are not declared stochastic.
    exportable : bool or str
        Can be embedded in a SavedModel endpoint (``tpa.saved_model.export``) and the callback's
        compiled explain step, or why not.
    host_side : bool
        Runs (partly) on the host in numpy (XRAI's region search): not one ``tf.function``.
    image_only : bool or str
        Needs image inputs ``[B, H, W, C]`` / ``[B, C, H, W]`` (and follows ``data_format``).
    output : {"inputs", "pixels", "split"}
        ``"inputs"``: attributions shaped like the inputs; ``"pixels"``: one map ``[B, H, W]``;
        ``"split"``: a pair of maps shaped like the inputs (Split IG's left and right parts).
    wraps_method : bool
        Takes ``base_method=`` (a method name) and runs it (the noise tunnel).
    per_example_options : mapping of option name -> ``tile(value, TileContext) -> value``
        Options that may carry one entry per example, and how the noise tunnel (or anything that
        replicates the batch) tiles them to ``reps * B`` rows.
    batch_tolerance : float
        The largest relative difference ``max|batch - single| / max|single|`` between an
        example explained inside a batch and alone (0.0 = bit-identical up to float rounding of
        the model itself). Declared and tested; a nonzero value is documented with its cause.
    baseline_option : str or None
        The keyword option that takes the path's starting point(s) in the attributed space
        (``"baseline"``, ``"background"``, ``"references"``), or ``None`` when the method has none;
        :mod:`tf_pathattr.text` passes its padding / ``[MASK]`` embeddings through it. A wrapping
        method (``wraps_method``) declares its default base method's option and passes the value on;
        :func:`wrapped_baseline_option` gives the option of the base method a call actually runs.
    test_options : mapping
        Small, fast options for the contract tests, benchmarks and the demo; a value may be a
        callable ``f(x_numpy) -> value`` of the probe batch.
    """

    name: str
    function: Callable
    summary: str
    paper: str = ""
    aliases: tuple[str, ...] = ()
    completeness: str | None = None
    details: bool = False
    layer: Capability = True
    multi_input: Capability = True
    stochastic: bool = False
    exportable: Capability = True
    host_side: bool = False
    image_only: Capability = False
    output: str = "inputs"
    wraps_method: bool = False
    per_example_options: Mapping[str, Callable] = field(default_factory=dict)
    batch_tolerance: float = 0.0
    baseline_option: str | None = None
    test_options: Mapping[str, Any] = field(default_factory=dict)

    def options_for(self, x) -> dict[str, Any]:
        """``test_options`` with callables evaluated on the probe batch ``x``."""
        x_np = np.asarray(x) if not isinstance(x, (list, tuple, dict)) else x
        return {k: (v(x_np) if callable(v) else v) for k, v in self.test_options.items()}


_SPECS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (names and aliases must be new)."""
    for n in (spec.name,) + tuple(spec.aliases):
        if n in _SPECS or n in _ALIASES:
            raise ValueError(f"method name {n!r} is registered twice")
    if spec.output not in ("inputs", "pixels", "split"):
        raise ValueError(f"{spec.name}: output must be 'inputs', 'pixels' or 'split', got {spec.output!r}")
    _SPECS[spec.name] = spec
    for a in spec.aliases:
        _ALIASES[a] = spec.name
    return spec


def canonical(name) -> str:
    """The canonical name for a name or alias (``ValueError`` naming the known names otherwise)."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a method name (str) or an attribution function, got {type(name).__name__}")
    full = _ALIASES.get(name, name)
    if full not in _SPECS:
        known = sorted(set(_SPECS) | set(_ALIASES))
        raise ValueError(f"method: unknown method {name!r}; known methods are {known}")
    return full


def get(name) -> MethodSpec:
    """The spec of a method name or alias."""
    return _SPECS[canonical(name)]


def spec_of(method) -> MethodSpec | None:
    """The spec for a name, an alias or a registered function (``None`` for unregistered callables)."""
    if isinstance(method, str):
        return get(method)
    for spec in _SPECS.values():
        if spec.function is method:
            return spec
    return None


def names() -> tuple[str, ...]:
    """Canonical names, sorted."""
    return tuple(sorted(_SPECS))


def specs() -> tuple[MethodSpec, ...]:
    """Every spec, sorted by name."""
    return tuple(_SPECS[n] for n in names())


def aliases_of(name) -> tuple[str, ...]:
    full = canonical(name)
    return tuple(sorted(a for a, n in _ALIASES.items() if n == full))


def short_name(name) -> str:
    """The shortest name of a method (column titles), e.g. ``guided_ig`` for ``guided_integrated_gradients``."""
    full = canonical(name)
    return min(aliases_of(full) + (full,), key=len)


def wrapped_baseline_option(spec: MethodSpec, options: Mapping[str, Any]) -> str | None:
    """The baseline option a call of ``spec`` with ``options`` takes: a wrapping method (IDGI, the noise
    tunnel) passes its baseline to the base method it runs (``options["base_method"]``, else the
    function's default), so it takes exactly that method's ``baseline_option``."""
    if not spec.wraps_method:
        return spec.baseline_option
    base = options.get("base_method")
    if base is None:
        import inspect

        param = inspect.signature(spec.function).parameters.get("base_method")
        base = None if param is None else param.default
    if isinstance(base, str):
        return get(base).baseline_option
    inner = spec_of(base) if base is not None else None
    return inner.baseline_option if inner is not None else None


def supports(spec: MethodSpec, capability: str) -> bool:
    return getattr(spec, capability) is True


def require(spec: MethodSpec, capability: str, what: str) -> None:
    """Raise a clear error when ``spec`` does not support ``capability`` (``what`` = the user's request)."""
    value = getattr(spec, capability)
    if value is True:
        return
    reason = value if isinstance(value, str) else f"{spec.name} does not support it"
    raise ValueError(f"{what}: {reason}")


# --------------------------------------------------------------------------------------------
# tiling of per-example options (used by the noise tunnel)


def _tile_along(t, axis: int, reps: int):
    """Repeat the whole batch ``reps`` times along ``axis`` (point-major: ``[b0..bB, b0..bB, ...]``)."""
    multiples = [1] * t.shape.rank
    multiples[axis] = reps
    return tf.tile(t, multiples)


def tile_batch_axis(axis: int = 0, rank: Callable[[int], int] | None = None) -> Callable:
    """Tiler for an option whose axis ``axis`` is the batch axis.

    ``rank(input_rank) -> int`` says at which rank the value is per-example (e.g. ``lambda r: r + 1``
    for IG2's ``references [B, R, *S]`` against ``[R, *S]`` shared references); without it, any array
    with ``shape[axis] == B`` is per-example. Scalars, ``None`` and shared values pass unchanged.
    """

    def tile(value, ctx: TileContext):
        if value is None or callable(value) or isinstance(value, (str, bool, int, float)):
            return value
        t = tf.convert_to_tensor(value)
        if t.shape.rank is None or t.shape.rank <= axis:
            return value
        if rank is not None and t.shape.rank != rank(ctx.flat_x[0].shape.rank):
            return value
        if t.shape[axis] != ctx.batch:
            return value
        return _tile_along(t, axis, ctx.reps)

    return tile


def tile_per_input(tile_one: Callable) -> Callable:
    """Tiler for an option that mirrors the inputs' structure (a baseline per input of a list or
    dict model): ``tile_one(value, x, ctx)`` is applied to each input's entry."""

    def tile(value, ctx: TileContext):
        if value is None or hasattr(value, "draw"):
            return value
        if ctx.structure.kind == "single":
            return tile_one(value, ctx.flat_x[0], ctx)
        flat = ctx.structure.flatten(value, "option")
        return ctx.structure.pack([tile_one(v, x, ctx) for v, x in zip(flat, ctx.flat_x)])

    return tile


def _tile_baseline_one(value, x, ctx: TileContext):
    """A baseline for one input: ``[B, *S]`` -> tiled on axis 0; ``[K, B, *S]`` -> tiled on axis 1."""
    if value is None or hasattr(value, "draw") or np.isscalar(value):
        return value
    t = tf.convert_to_tensor(value)
    r = x.shape.rank
    if t.shape.rank == r and t.shape[0] == ctx.batch and ctx.batch > 1:
        return _tile_along(t, 0, ctx.reps)
    if t.shape.rank == r + 1 and t.shape[1] == ctx.batch and ctx.batch > 1:
        return _tile_along(t, 1, ctx.reps)
    return value


tile_baseline = tile_per_input(_tile_baseline_one)


# --------------------------------------------------------------------------------------------
# documentation


def _mark(value: Capability) -> str:
    return "yes" if value is True else "—"


def markdown_table() -> str:
    """The README's method table, written from the registry (a test keeps the README in sync)."""
    rows = [
        "| method (aliases) | what it is | paper | completeness target (`return_convergence_delta`) | "
        "`layer=` | multi-input | `seed` | export |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in specs():
        aliases = aliases_of(spec.name)
        name = f"`{spec.name}`" + (f" ({', '.join(f'`{a}`' for a in aliases)})" if aliases else "")
        target = spec.completeness or "—"
        rows.append(
            f"| {name} | {spec.summary} | {spec.paper} | {target} | {_mark(spec.layer)} | "
            f"{_mark(spec.multi_input)} | {'yes' if spec.stochastic else '—'} | {_mark(spec.exportable)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # python -m tf_pathattr.methods.registry: print the README table
    from tf_pathattr.methods import registry as _registered  # the package's instance, with every method

    print(_registered.markdown_table())
