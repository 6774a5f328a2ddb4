"""The README's method table is the registry's (one source of truth for what each method supports)."""

from pathlib import Path

from tf_pathattr.methods import registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_table_is_generated_from_the_registry():
    text = README.read_text(encoding="utf-8")
    begin, end = "<!-- methods:begin -->", "<!-- methods:end -->"
    assert begin in text and end in text, "README lost the generated method table markers"
    table = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert table == registry.markdown_table(), (
        "README method table is stale: regenerate it with `python -m tf_pathattr.methods.registry`"
    )
