"""The comparison study: fixed against learned kernels, its statistics, report and command line.

This is the application built on the library. A :class:`StudySettings`
holds everything that decides a study's numbers; :func:`run_transfer` runs
the transfer experiment (kernels learned on some classes, frozen, on the
others) and :func:`run_study` every arm on shared splits, judging the claims
(claim (c) from the transfer results), each returning a JSON-serialisable
results dict (see ``docs/results-schema.md``); :func:`write_report` turns
them into files; :func:`write_comparison` puts several report folders side
by side on one page. ``skconvfeat`` (``python -m skconvfeat``) is the command
line over them (``skconvfeat report DIR ... --out OUT`` for the comparison).
:func:`run_curves` is the study at every data size under one protocol (every arm tuned on held-out
training images with equal budgets, networks trained to a validation plateau), ``skconvfeat curves``
its command line, and :func:`write_curves` its report; :func:`run_transfer_pair` is claim (c) across
datasets under the same protocol (``skconvfeat transfer``), its report written by :func:`write_curves` too.
:func:`run_preset` fits a wide data-derived preset and its streamed ridge head on a whole training set
(``skconvfeat preset``), the recipe behind the README's preset numbers, resumable from a checkpoint.
Importing :mod:`skconvfeat` does not import this package.
"""

from ._compare import read_results, write_comparison
from ._curve_report import write_curves
from ._curves import CurveProtocol, plan_curves, run_curves
from ._preset_run import run_preset
from ._report import write_report
from ._settings import StudySettings, learned_recipe
from ._study import run_study
from ._transfer import run_transfer
from ._transfer_curves import TRANSFER_PAIRS, run_transfer_pair

__all__ = [
    "CurveProtocol",
    "StudySettings",
    "TRANSFER_PAIRS",
    "learned_recipe",
    "plan_curves",
    "read_results",
    "run_curves",
    "run_preset",
    "run_study",
    "run_transfer",
    "run_transfer_pair",
    "write_comparison",
    "write_curves",
    "write_report",
]
