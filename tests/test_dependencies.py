"""Dependencies declared honestly: every private scikit-learn name the package uses still exists,
the installed scikit-learn is one that pyproject.toml allows, and the version is written once.

The package imports private scikit-learn names (``sklearn.utils._param_validation``, ...), which a new
scikit-learn may move without notice; pyproject.toml bounds scikit-learn from above for that reason.
This test finds every such import in the source and imports it, so that the release that drops one
fails here, by name, before the bound is raised.
"""

import ast
import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest
import sklearn

import skconvfeat

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(skconvfeat.__file__).parent


def _private_sklearn_imports():
    """``{(module, name)}`` of every ``from sklearn... import name`` with a private module or name."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sklearn":
                private_module = any(part.startswith("_") for part in node.module.split("."))
                found |= {(node.module, alias.name) for alias in node.names
                          if private_module or alias.name.startswith("_")}
            elif isinstance(node, ast.Import):
                found |= {(alias.name, None) for alias in node.names
                          if alias.name.startswith("sklearn.") and "._" in alias.name}
    return sorted(found, key=str)


PRIVATE = _private_sklearn_imports()


def test_the_scan_finds_the_private_names_we_know_of():
    assert ("sklearn.utils._param_validation", "Interval") in PRIVATE
    assert ("sklearn.base", "_fit_context") in PRIVATE


@pytest.mark.parametrize(("module", "name"), PRIVATE, ids=[f"{m}.{n}" for m, n in PRIVATE])
def test_private_sklearn_name_still_exists(module, name):
    imported = importlib.import_module(module)
    if name is not None:
        assert hasattr(imported, name), (
            f"scikit-learn {sklearn.__version__} has no {module}.{name}, which skconvfeat imports: "
            "replace it before raising the scikit-learn bound in pyproject.toml"
        )


PYPROJECT = (ROOT / "pyproject.toml").read_text()  # read as text: tomllib is not in Python 3.10


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def test_installed_scikit_learn_is_within_the_declared_bounds():
    lower, upper = re.search(r'^ *"scikit-learn>=([\d.]+),<([\d.]+)",', PYPROJECT, flags=re.M).groups()
    assert _version(lower) <= _version(sklearn.__version__) < _version(upper), (lower, upper, sklearn.__version__)


def test_version_is_written_once_and_read_by_the_metadata():
    assert re.search(r'^dynamic = \["version"\]', PYPROJECT, flags=re.M)
    assert re.search(r'^version = \{ attr = "skconvfeat.__version__" \}', PYPROJECT, flags=re.M)
    assert len(re.findall(r"^version =", PYPROJECT, flags=re.M)) == 1  # no static version in [project]
    assert importlib.metadata.version("skconvfeat") == skconvfeat.__version__


def test_version_flag_prints_the_one_version(capsys):
    from skconvfeat.study._cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"skconvfeat {skconvfeat.__version__}\n"
