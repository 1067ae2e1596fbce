"""The public API named in __all__ exists."""

import importlib


def test_public_names_resolve() -> None:
    mod = importlib.import_module("icrl.seqmodels")
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"icrl.seqmodels.__all__ names missing attributes: {missing}"
