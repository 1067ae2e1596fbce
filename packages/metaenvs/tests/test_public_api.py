"""The public API named in __all__ exists."""

import importlib


def test_public_names_resolve() -> None:
    mod = importlib.import_module("icrl.metaenvs")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"icrl.metaenvs.__all__ names missing attributes: {missing}"


def test_readme_python_examples_run() -> None:
    """Every ```python block of the package README runs as written (in order, one namespace)."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(readme), "exec"), namespace)
