"""The scripts of benchmarks/ as modules, for the tests that check their numerical parts."""

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name):
    """``benchmarks/<name>.py`` executed as a module (its ``main`` not run); the scripts import each other
    as ``python benchmarks/<name>.py`` lets them, from their own folder."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
