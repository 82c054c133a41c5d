"""The release artefacts: ``python -m build`` makes an sdist and a wheel that carry the LICENSE and the
metadata; the wheel installs in a fresh environment without extras (its dependencies from the package
index) and runs; the sdist carries everything its own tests need.

Slow (about a minute: a build, a fresh virtual environment and an install, each under a time limit) and
needs the ``build`` package (the ``test`` extra) and the package index. Skipped when ``build`` is not
installed, except in CI (``CI`` set), where the README's command installs the ``test`` extra and a skip
would hide a broken release. Everything is written under a temporary folder, the checkout untouched.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import skconvfeat
from skconvfeat._doc_link import DOCS_URL

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VERSION = skconvfeat.__version__
# What a checkout holds that is not source: environments, caches and build outputs.
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              "_build", "generated", "auto_examples", "out", "data")
# Files the sdist's tests read beside the test modules.
SDIST_FILES = ("LICENSE", "CHANGELOG.md", "README.md", ".ci/run", "tests/reference.py", "tests/fake_cupy.py",
               "docs/conf.py", "docs/changelog.md", "examples/plot_quick_start.py")


def _run(command, timeout, **kwargs):
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """``(sdist, wheel)`` built by ``python -m build`` from a copy of the source (the wheel from the sdist)."""
    if importlib.util.find_spec("build") is None:
        message = "the 'build' package is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("release")
    shutil.copytree(ROOT, tmp / "src", ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(tmp / "src")], timeout=600)
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    (wheel,) = (tmp / "dist").glob("*.whl")
    return sdist, wheel


def test_both_carry_the_license_and_the_one_version(dists):
    sdist, wheel = dists
    assert sdist.name == f"skconvfeat-{VERSION}.tar.gz" and wheel.name == f"skconvfeat-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        license_text = archive.read(f"skconvfeat-{VERSION}.dist-info/licenses/LICENSE").decode()
        metadata = archive.read(f"skconvfeat-{VERSION}.dist-info/METADATA").decode()
    assert license_text == (ROOT / "LICENSE").read_text() and "BSD 3-Clause" in license_text
    headers = metadata.split("\n\n", 1)[0]
    assert f"\nVersion: {VERSION}\n" in headers
    assert "\nLicense-Expression: BSD-3-Clause\n" in headers and "\nLicense-File: LICENSE\n" in headers
    urls = dict(re.findall(r"^Project-URL: (\w+), (\S+)$", headers, flags=re.M))
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    assert urls["Documentation"] == DOCS_URL  # where the estimators' HTML diagrams link (skconvfeat/_doc_link.py)
    assert re.search(r"^Classifier: Programming Language :: Python :: 3$", headers, flags=re.M)


def test_the_sdist_carries_what_its_tests_read(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    tests = {f"tests/{path.name}" for path in (ROOT / "tests").glob("*.py")}
    assert not (set(SDIST_FILES) | tests) - names
    assert not {name for name in names if "__pycache__" in name or name.startswith("docs/_build")}


def test_the_unpacked_sdist_collects_its_tests(dists, tmp_path):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (source,) = tmp_path.iterdir()
    env = {**os.environ, "PYTHONPATH": str(source)}  # the sdist's skconvfeat, not the checkout's
    where = _run([sys.executable, "-c", "import skconvfeat; print(skconvfeat.__file__)"], timeout=60, cwd=source, env=env)
    assert Path(where.strip()).is_relative_to(source)
    out = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
               timeout=300, cwd=source, env=env)
    assert re.search(r"^\d{4,} tests collected", out, flags=re.M), out[-2000:]


def test_the_wheel_runs_in_a_fresh_environment_without_extras(dists, tmp_path):
    _, wheel = dists
    venv.create(tmp_path / "env", with_pip=True)
    bin_dir = tmp_path / "env" / ("Scripts" if os.name == "nt" else "bin")
    python, command = bin_dir / "python", bin_dir / "skconvfeat"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # numpy, scipy, scikit-learn and joblib come from the package index, as for a user.
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], timeout=600, env=env)
    imported = _run([python, "-c", "import skconvfeat, importlib.util as u; print(skconvfeat.__version__, "
                     "skconvfeat.__file__, [m for m in ('torch', 'matplotlib', 'rich', 'dask') if u.find_spec(m)])"],
                    timeout=120, env=env, cwd=tmp_path)
    version, location, extras = imported.split(" ", 2)
    assert version == VERSION and str(tmp_path / "env") in location and extras.strip() == "[]"
    assert _run([command, "--version"], timeout=60, env=env).strip() == f"skconvfeat {VERSION}"
    # The main command, kept short: without the torch extra the learned arms name the extra to install.
    out = _run([command, "--banks", "gaussian,random", "--repeats", "1", "--folds", "2", "--n-jobs", "1"],
               timeout=300, env=env, cwd=tmp_path)
    assert "Gaussian, fixed" in out and "pip install 'skconvfeat[torch]'" in out
