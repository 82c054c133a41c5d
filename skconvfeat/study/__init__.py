"""The comparison study: fixed against learned kernels, its statistics, report and command line.

This is the application built on the library: :func:`run_study` runs every
arm on shared splits and returns a JSON-serialisable results dict (see
``docs/results-schema.md``); :func:`write_report` turns it into files;
:func:`write_comparison` puts several report folders side by side on one
page. ``skconvfeat`` (``python -m skconvfeat``) is the command line over them
(``skconvfeat report DIR ... --out OUT`` for the comparison).
Importing :mod:`skconvfeat` does not import this package.
"""

from ._compare import read_results, write_comparison
from ._report import write_report
from ._study import learned_recipe, run_study

__all__ = ["learned_recipe", "read_results", "run_study", "write_comparison", "write_report"]
