"""Write the ``typing.overload`` declarations of every registered method from the registry.

A method whose ``return_convergence_delta`` / ``return_details`` flags change what it returns (the
registry's ``completeness`` and ``details``) gets one overload per combination of ``Literal`` flag
values plus a ``bool`` fallback; every other option is ``**options: Any``, so the declarations never
go stale when options are added. Run ``python tools/write_overloads.py`` after adding a method or a
flag; ``tests/test_typing.py`` checks the result.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RETURNS = {"return_convergence_delta": "tf.Tensor", "return_details": "dict"}


def flags_of(spec):
    flags = []
    if spec.completeness is not None:
        flags.append("return_convergence_delta")
    if spec.details:
        flags.append("return_details")
    return flags


def public_function(spec):
    import tf_pathattr

    fn = spec.function
    return getattr(tf_pathattr, spec.name) if fn.__name__.startswith("_") else inspect.unwrap(fn)


def block(name, leading, flags):
    """The overload declarations for ``name`` with positional parameters ``leading``."""
    head = ", ".join(leading)
    out = []
    for values in itertools.product((False, True), repeat=len(flags)):
        kw = ", ".join(f"{f}: Literal[{v}]" + (" = ..." if not v else "") for f, v in zip(flags, values))
        extra = [RETURNS[f] for f, v in zip(flags, values) if v]
        ret = "Attributions" if not extra else f"Tuple[{', '.join(['Attributions'] + extra)}]"
        out.append(f"@overload\ndef {name}({head}, *, {kw}, **options: Any) -> {ret}: ...\n")
    kw = ", ".join(f"{f}: bool = ..." for f in flags)
    out.append(f"@overload\ndef {name}({head}, *, {kw}, **options: Any) -> Any: ...\n")
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


def main():
    from tf_pathattr.methods import registry

    for spec in registry.specs():
        flags = flags_of(spec)
        if not flags:
            continue
        fn = public_function(spec)
        path = Path(inspect.getsourcefile(fn))
        rewrite(path, fn.__name__, block(fn.__name__, leading_params(fn), flags))
        print(f"{path.relative_to(ROOT)}: {fn.__name__} ({', '.join(flags)})")


if __name__ == "__main__":
    main()
