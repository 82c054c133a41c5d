"""No module of the package (or benchmark) uses another module's private names (issue 22).

A name with a leading underscore is its module's own: importing it from elsewhere, or reaching it
through an imported module or class (``_layer._tile_positions``, ``Estimator._get_param_names``),
ties two modules' internals together. Private *modules* (``from . import _layer``) are the package's
layout and are fine; so are the dunder names.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("skconvfeat/**/*.py"), *ROOT.glob("benchmarks/*.py")])
OURS = ("skconvfeat",)


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(module, name):
    """``from <module> import <name>``: is ``name`` a module (a file or package) of ours?"""
    base = ROOT.joinpath(*module.split(".")) if module else None
    return base is not None and ((base / f"{name}.py").is_file() or (base / name / "__init__.py").is_file())


def _absolute(parts, node):
    """The absolute module of a ``from`` import in the module ``parts`` (e.g. ``("skconvfeat", "_net")``)."""
    if not node.level:
        return node.module or ""
    return ".".join([*parts[: -node.level], *([node.module] if node.module else [])])


def private_uses(path):
    """``(line, text)`` of each use of another module's private name in the file ``path``."""
    return uses_in(path.read_text(), path.relative_to(ROOT).with_suffix("").parts)


def uses_in(source, parts):
    """:func:`private_uses` of the ``source`` of the module ``parts``."""
    tree = ast.parse(source)
    ours = {}  # local name -> the module of ours it was imported from (or is)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(parts, node)
            if not module.startswith(OURS):
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                ours[local] = module
                if _private(alias.name) and not _is_module(module, alias.name):
                    uses.append((node.lineno, f"from {module} import {alias.name}"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                and _private(node.attr)):
            uses.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return uses


def test_the_scan_sees_a_private_use():
    source = "from . import _layer\nfrom ._heads import _check_gram_memory\n_layer._grid_pool\n"
    assert [text for _, text in uses_in(source, ("skconvfeat", "_probe"))] == [
        "from skconvfeat._heads import _check_gram_memory", "_layer._grid_pool"]


def test_no_module_uses_another_modules_private_names():
    found = [f"{path.relative_to(ROOT)}:{line}: {text}" for path in SOURCES for line, text in private_uses(path)]
    assert not found, "\n".join(found)


def test_the_readme_layout_table_names_every_module_and_folder():
    """A newcomer finds each part from the README's table: every top-level module and every subpackage."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):].split("\n## ", 1)[0]
    package = ROOT / "skconvfeat"
    parts = [f"{p.name}" for p in package.glob("_*.py") if not p.name.startswith("__")]
    parts += [f"skconvfeat/{p.parent.name}/" for p in package.glob("*/__init__.py")]
    missing = [part for part in parts if f"`{part}`" not in table and f"`skconvfeat/{part}`" not in table]
    assert not missing, f"README's layout table does not name {missing}"
