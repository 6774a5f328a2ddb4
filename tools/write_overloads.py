"""Write the ``typing.overload`` declarations of every registered method from the registry.

A method whose ``return_convergence_delta`` / ``return_details`` flags change what it returns (the
registry's ``completeness`` and ``details``) gets one overload per combination of ``Literal`` flag
values plus a ``bool`` fallback. Every overload carries every keyword of the implementation with its
type (the implementation's annotation, else :data:`OPTION_TYPES`, else ``bool`` for a bool default, else ``Any``), so
editors complete ``n_steps``, ``rule``, ``baseline`` and a type checker rejects a misspelt keyword;
``**options: Any`` only where the implementation itself forwards options to another method (IDGI's
base method, the noise tunnel's wrapped method). Methods without flags need no overloads: their own
signature (kept by ``engine.planned``) is what type checkers read.

It also writes the block of ``tf_pathattr/__init__.py`` that makes every registered name and alias a
public name (``tpa.ig``, ``tpa.blur_ig``, ``tpa.smoothgrad``...): plain ``from ... import ... as ...``
lines that static tools (type checkers, IDEs) read, generated from the registry, the one source;
``tests/test_typing.py`` checks that the block is current and ``tests/test_contract.py`` that each
name is the registered function.

Run ``python tools/write_overloads.py`` after adding a method, a flag or an option (and after merging
a branch that changed one); ``tests/test_typing.py`` checks the result and ``mypy`` (pyproject.toml)
type-checks tests/typing/."""

from __future__ import annotations

import inspect
import itertools
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RETURNS = {"return_convergence_delta": "tf.Tensor", "return_details": "dict"}

#: types of unannotated options whose default says too little (``None`` or a number that also takes arrays)
OPTION_TYPES = {
    "baseline": "Any",  # scalar, array, per-example or stacked baselines, or a tpa.baselines recipe
    "layer": "Any",  # a layer, its name, callable(model) -> layer, or (layer, call_index)
    "seed": "int | None",
    "internal_batch_size": "int | None",
    "rule": "str | None",
    "method": "str | None",
    "data_format": "str | None",
    "n_steps": "int",
    "idgi": "Any",  # bool or an engine.accumulators.ImportantDirection
}
#: (method, option) pairs whose type is wider than the option's usual one
METHOD_OPTION_TYPES = {
    ("integrated_gradients", "n_steps"): 'int | Literal["auto"]',
}


def flags_of(spec):
    flags = []
    if spec.completeness is not None:
        flags.append("return_convergence_delta")
    if spec.details:
        flags.append("return_details")
    return flags


def public_function(spec):
    return inspect.unwrap(public_callable(spec))


def option_type(method, param):
    """The type expression of keyword ``param`` of ``method`` (see the module docstring)."""
    if (method, param.name) in METHOD_OPTION_TYPES:
        return METHOD_OPTION_TYPES[(method, param.name)]
    if param.annotation is not param.empty:
        ann = param.annotation
        return ann if isinstance(ann, str) else inspect.formatannotation(ann)
    if param.name in OPTION_TYPES:
        return OPTION_TYPES[param.name]
    # an unannotated number / string default may also take arrays or callables (noise_scale, objective):
    # only a bool default says the type
    return "bool" if isinstance(param.default, bool) else "Any"


def keyword_options(fn, flags):
    """``name: type = ...`` for every keyword-only option of ``fn`` that is not a return flag, and
    ``**name: Any`` when ``fn`` forwards options."""
    out = []
    for p in inspect.signature(inspect.unwrap(fn)).parameters.values():
        if p.kind == p.KEYWORD_ONLY and p.name not in flags:
            out.append(f"{p.name}: {option_type(fn.__name__, p)} = ...")
        elif p.kind == p.VAR_KEYWORD:
            out.append(f"**{p.name}: Any")
    return out


def block(name, leading, flags, options):
    """The overload declarations for ``name`` with positional parameters ``leading``."""
    head = ", ".join(leading)
    tail = "".join(f", {o}" for o in options)
    out = []
    for values in itertools.product((False, True), repeat=len(flags)):
        kw = ", ".join(f"{f}: Literal[{v}]" + (" = ..." if not v else "") for f, v in zip(flags, values))
        extra = [RETURNS[f] for f, v in zip(flags, values) if v]
        ret = "Attributions" if not extra else f"tuple[{', '.join(['Attributions'] + extra)}]"
        out.append(f"@overload\ndef {name}({head}, *, {kw}{tail}) -> {ret}: ...\n")
    kw = ", ".join(f"{f}: bool = ..." for f in flags)
    out.append(f"@overload\ndef {name}({head}, *, {kw}{tail}) -> Any: ...\n")
    return "\n\n".join(out) + "\n\n"


def leading_params(fn):
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        ann = {"model": "Model", "inputs": "Inputs", "target": "Target"}.get(p.name, "Any")
        params.append(f"{p.name}: {ann}" + (" = ..." if p.default is not p.empty else ""))
        if p.name == "target":  # every option after target is keyword-only (tests/methods/test_signatures.py)
            break
    return params


def rewrite(path: Path, name: str, text: str) -> None:
    src = path.read_text()
    src = re.sub(rf"@overload\ndef {name}\((?:.|\n)*?\) -> [^\n]*: \.\.\.\n\n\n", "", src)
    m = re.search(rf"\n((?:@[\w.]+\n)*)def {name}\(", src)
    if m is None:
        raise SystemExit(f"{path}: no def {name}(")
    src = src[: m.start() + 1] + text + src[m.start() + 1 :]
    for needed in ("from typing import", "from .._typing import"):
        if needed not in src:
            raise SystemExit(f"{path}: add the typing imports ({needed} ...)")
    path.write_text(src)


BEGIN = "# --- public method names: generated by tools/write_overloads.py from the registry; do not edit ---\n"
END = "# --- end of the generated method names ---\n"
INIT = ROOT / "tf_pathattr" / "__init__.py"


def public_callable(spec):
    """The function a user calls under ``spec``'s names: the registered one, or, when the registry holds a
    private by-name adapter (``_noise_tunnel_by_name``), the module's public function of the method's name."""
    import importlib

    fn = spec.function
    if fn.__name__.startswith("_"):
        return getattr(importlib.import_module(fn.__module__), spec.name)
    return fn


def public_names_block() -> str:
    """``from .methods.<module> import <function> as <name>`` for every registered name and alias."""
    from tf_pathattr.methods import registry

    lines = []
    for spec in registry.specs():
        fn = public_callable(spec)
        module = fn.__module__.removeprefix("tf_pathattr")
        for name in (spec.name,) + registry.aliases_of(spec.name):
            alias = "" if name == fn.__name__ else f" as {name}"
            lines.append(f"from {module} import {fn.__name__}{alias}  # noqa: F401\n")
    return BEGIN + "".join(lines) + "\n" + END  # the blank line ruff format puts before a comment


def rewrite_public_names(path: Path = INIT) -> bool:
    """Replace the generated block of ``path``; True when the file changed."""
    src = path.read_text()
    start, end = src.find(BEGIN), src.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{path}: no generated block (add the two marker lines {BEGIN.strip()!r} / {END.strip()!r})")
    new = src[:start] + public_names_block() + src[end + len(END) :]
    if new != src:
        path.write_text(new)
    return new != src


def main():
    from tf_pathattr.methods import registry

    if rewrite_public_names():
        print(f"{INIT.relative_to(ROOT)}: public method names rewritten")

    for spec in registry.specs():
        flags = flags_of(spec)
        if not flags:
            continue
        fn = public_function(spec)
        path = Path(inspect.getsourcefile(fn))
        rewrite(path, fn.__name__, block(fn.__name__, leading_params(fn), flags, keyword_options(fn, flags)))
        print(f"{path.relative_to(ROOT)}: {fn.__name__} ({', '.join(flags)})")


if __name__ == "__main__":
    main()
