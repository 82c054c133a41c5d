"""The comparison study: fixed against learned kernels, its statistics, report and command line.

This is the application built on the library: :func:`run_study` runs every
arm on shared splits and returns a JSON-serialisable results dict (see
``docs/results-schema.md``); :func:`write_report` turns it into files;
``skconvfeat`` (``python -m skconvfeat``) is the command line over both.
Importing :mod:`skconvfeat` does not import this package.
"""

from ._report import write_report
from ._study import learned_recipe, run_study

__all__ = ["learned_recipe", "run_study", "write_report"]
