"""Workspace architecture: dependency direction (DESIGN.md §2) and declared imports.

Every ``import`` in a package's ``src`` must be the standard library, the package itself, or a
distribution that the package's own ``pyproject.toml`` declares. Sibling dependencies must follow
the allowed direction, so ``metaenvs`` stays reusable alone and ``seqmodels`` knows no env.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = {
    "icrl-metaenvs": ROOT / "packages/metaenvs",
    "icrl-histories": ROOT / "packages/histories",
    "icrl-seqmodels": ROOT / "packages/seqmodels",
    "icrl-ad-core": ROOT / "packages/ad-core",
    "icrl-baselines": ROOT / "packages/baselines",
    "icrl-apps": ROOT / "apps",
}
MODULE_OF = {
    "icrl-metaenvs": "icrl.metaenvs",
    "icrl-histories": "icrl.histories",
    "icrl-seqmodels": "icrl.seqmodels",
    "icrl-ad-core": "icrl.ad",
    "icrl-baselines": "icrl.baselines",
    "icrl-apps": "icrl.apps",
}
# The only sibling edges DESIGN.md §2 allows.
ALLOWED_SIBLINGS = {
    "icrl-metaenvs": set(),
    "icrl-seqmodels": set(),
    "icrl-histories": {"icrl-metaenvs"},
    "icrl-ad-core": {"icrl-metaenvs", "icrl-histories", "icrl-seqmodels"},
    "icrl-baselines": {"icrl-metaenvs", "icrl-histories"},
    "icrl-apps": set(MODULE_OF) - {"icrl-apps"},
}
# Optional kernels are imported lazily behind a guard and declared as extras.
OPTIONAL_BY_EXTRA = True


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(member: str) -> set[str]:
    meta = tomllib.loads((MEMBERS[member] / "pyproject.toml").read_text())["project"]
    reqs = list(meta.get("dependencies", []))
    if OPTIONAL_BY_EXTRA:
        for extra in meta.get("optional-dependencies", {}).values():
            reqs += extra
    return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _distributions_of(module: str) -> set[str]:
    """The distributions that provide an imported module name."""
    if module.startswith("icrl."):
        sub = ".".join(module.split(".")[:2])
        return {m for m, mod in MODULE_OF.items() if mod == sub}
    top = module.split(".")[0]
    return {_norm(d) for d in importlib.metadata.packages_distributions().get(top, [])}


@pytest.mark.parametrize("member", list(MEMBERS))
def test_every_import_is_declared(member: str) -> None:
    declared = _declared(member) | {member}
    problems = []
    for path in sorted((MEMBERS[member] / "src").rglob("*.py")):
        for module in sorted(_imports(path)):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            dists = _distributions_of(module)
            if not dists:
                where = path.relative_to(ROOT)
                problems.append(f"{where}: imports {module!r}, which no installed package provides")
            elif not dists & declared:
                problems.append(
                    f"{path.relative_to(ROOT)}: imports {module!r} from {sorted(dists)}, "
                    f"which {member}'s pyproject.toml does not declare"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("member", list(MEMBERS))
def test_sibling_dependencies_follow_design(member: str) -> None:
    siblings = _declared(member) & set(MEMBERS)
    extra = siblings - ALLOWED_SIBLINGS[member]
    assert not extra, f"{member} may not depend on {sorted(extra)} (DESIGN.md §2)"


@pytest.mark.parametrize("member", list(MEMBERS))
def test_namespace_layout(member: str) -> None:
    src = MEMBERS[member] / "src"
    assert not (src / "icrl" / "__init__.py").exists(), "icrl/ must stay a PEP 420 namespace"
    init = src / Path(*MODULE_OF[member].split(".")) / "__init__.py"
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{init} needs a module docstring"
    targets = [
        t
        for n in tree.body
        for t in (n.targets if isinstance(n, ast.Assign) else [getattr(n, "target", None)])
    ]
    assert any(getattr(t, "id", None) == "__all__" for t in targets), (
        f"{init} must define __all__ (the public API)"
    )
    assert (MEMBERS[member] / "README.md").exists()


def test_the_checker_catches_an_undeclared_import(tmp_path: Path) -> None:
    """The import check must be able to fail: gymnasium is not a seqmodels dependency."""
    bad = tmp_path / "bad.py"
    bad.write_text("import gymnasium\nfrom icrl.metaenvs import register_envs\n")
    found = {d for m in _imports(bad) for d in _distributions_of(m)}
    assert found == {"gymnasium", "icrl-metaenvs"}
    assert not found & _declared("icrl-seqmodels")
