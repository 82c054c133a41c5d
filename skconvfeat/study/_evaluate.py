"""Fitting and scoring arms: one fit on one split, the parallel runner, and the design's intervals and tests."""

import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline

from ._stats import (
    CV_TEST,
    IMAGE_TEST,
    MCNEMAR_TEST,
    accuracy_interval,
    corrected_paired_ttest,
    paired_holdout_test,
    wilson_interval,
)

__all__ = ["Evaluation", "evaluate", "fit_quietly", "n_features", "run_parallel"]


def fit_quietly(model, images, target):
    """Fit without ConvergenceWarnings: the results record ``converged`` and their caveats count it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(images, target)


def evaluate(arm, images, target, train, test, keep_model=False, keep_pred=False):
    """Fit ``arm`` on ``train``, score it on ``test``, and time both steps.

    For pipelines the conv transform of the test fold is timed on its own;
    PyTorch models have no separate transform (``None``).
    """
    model = clone(arm.estimator)
    start = time.perf_counter()
    fit_quietly(model, images[train], target[train])
    fit_time = time.perf_counter() - start
    if not isinstance(model, Pipeline):
        transform_time = None
        pred = model.predict(images[test])
    else:
        start = time.perf_counter()
        features = model[0].transform(images[test])
        transform_time = time.perf_counter() - start
        pred = model[1:].predict(features)
    result = {"score": accuracy_score(target[test], pred), "fit_time": fit_time, "transform_time": transform_time,
              "converged": getattr(model, "converged_", None)}
    if keep_model:
        result["model"] = model
    if keep_model or keep_pred:
        result["pred"] = pred
    return result


def run_parallel(tasks, n_jobs, progress, torch_tasks=False):
    """Run ``(key, (func, args, kwargs))`` tasks, reporting each key as it completes.

    ``torch_tasks``: some tasks train in PyTorch (see :func:`_keyed`).
    Returns ``{key: func(*args, **kwargs)}``.
    """
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    results = {}
    for key, result in parallel(delayed(_keyed)(key, torch_tasks, *call) for key, call in tasks):
        results[key] = result
        if progress is not None:
            progress(key)
    return results


def _keyed(key, torch_tasks, func, args, kwargs):
    if torch_tasks:
        # joblib's loky workers take their memory after their first task as a reference and
        # restart when they grow 300 MB beyond it. Importing torch (about that much) in a later
        # task restarted the worker, and torch was imported again, for every learned fit.
        import torch  # noqa: F401
    return key, func(*args, **kwargs)


def n_features(model):
    """Features entering the head's standardisation."""
    return model[0].n_features_out_ if isinstance(model, Pipeline) else model.n_features_out_


class Evaluation:
    """The design that scores the arms: its splits, per-arm intervals and paired tests.

    ``"cv"``: one score per split, logit-scale corrected t-interval, corrected
    repeated k-fold t-test. ``"holdout"``: one score per seed on the same test
    images, Wilson interval on the mean number correct, tests on the images.
    """

    def __init__(self, design, splits, target, margin, **params):
        self.design, self.splits, self.target, self.margin, self.params = design, splits, target, margin, params
        self.n_train, self.n_test = len(splits[0][0]), len(splits[0][1])
        self.correct = {}  # holdout: arm name -> (n_seeds, n_test) bool, for the paired tests

    def describe(self):
        """The schema's ``evaluation`` entry."""
        if self.design == "cv":
            interval = "t-interval on the logit scale, corrected for overlapping CV training sets"
            test = CV_TEST
        else:
            interval = "Wilson interval on the test set (seed-to-seed spread not included)"
            test = MCNEMAR_TEST if len(self.splits) == 1 else IMAGE_TEST
        return {"design": self.design, "n_train": self.n_train, "n_test": self.n_test, **self.params,
                "interval": interval, "test": test}

    def summarise(self, arm, runs, n_features):
        """The schema's entry of one arm."""
        scores = [r["score"] for r in runs]
        if self.design == "cv":
            mean, low, high = accuracy_interval(
                scores, n_test=self.n_test, test_train_ratio=self.n_test / self.n_train
            )
        else:
            test = self.splits[0][1]
            self.correct[arm.name] = np.array([r["pred"] == self.target[test] for r in runs])
            mean = float(np.mean(scores))
            low, high = wilson_interval(mean * self.n_test, self.n_test)
        return {
            "name": arm.name, "label": arm.label, "kind": arm.kind, "bank": arm.bank, "depth": arm.depth,
            "n_features": int(n_features), "scores": scores,
            "fit_time": [r["fit_time"] for r in runs], "transform_time": [r["transform_time"] for r in runs],
            "converged": [r["converged"] for r in runs],
            "mean": mean, "ci_low": low, "ci_high": high,
        }

    def compare(self, arm_a, arm_b):
        """Paired test of ``arm_a - arm_b`` (two summarised arms); not yet Holm-adjusted."""
        if self.design == "cv":
            test = corrected_paired_ttest(arm_a["scores"], arm_b["scores"], n_train=self.n_train,
                                          n_test=self.n_test, margin=self.margin)
        else:
            test = paired_holdout_test(self.correct[arm_a["name"]], self.correct[arm_b["name"]], margin=self.margin)
        return {"arm": arm_a["name"], "reference": arm_b["name"], **test}
