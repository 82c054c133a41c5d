"""The transfer experiment: do kernels learned on one task, then frozen, help another task with few images?

Kernels learned on the first half of the classes are frozen and reused on the
second half, for several training-set sizes, against kernels learned from
scratch and random fixed kernels, in the settings' deepest network. Its
results are a dict of their own (``docs/results-schema.md``); claim (c) of
:func:`~skconvfeat.study.run_study` is judged from them.
"""

import time

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from ._design import Arm, fixed_pipeline, learned_model, load_learner
from ._evaluate import evaluate, fit_quietly, run_parallel
from ._settings import StudySettings
from ._splits import as_images, standardise_channels, subsample
from ._stats import accuracy_interval

__all__ = ["TRANSFER_LABELS", "run_transfer", "transfer_curve"]

TRANSFER_LABELS = {
    "transfer": "Transferred kernels, fixed",
    "scratch": "Learned from scratch",
    "random": "Random, fixed",
}
_MIN_CLASSES = 4  # 2 source and 2 target classes


def run_transfer(images, target, settings=None, *, design="cv", n_jobs=None, progress=None):
    """Kernels learned on the first half of the classes, frozen, on the second half.

    For each of ``settings.transfer_seeds`` seeds, a network (the deepest of
    ``settings.depths``) learns its kernels on the source classes (at most
    ``settings.train_size`` images); then, on ``settings.transfer_sizes``
    images of the target classes, a head is trained on those kernels frozen,
    against the same network trained from scratch and against frozen random
    kernels, all tested on that seed's fold of the target classes.

    Parameters
    ----------
    images : array-like of shape (n_samples, h, w) or (n_samples, h, w, c)
        Training images (never the test set of an official split).
    target : array-like of shape (n_samples,)
    settings : StudySettings, default=None
        ``None`` for the defaults.
    design : {"cv", "holdout"}, default="cv"
        The main study's design: ``"holdout"`` (the official training set of
        a large dataset) standardises every channel, as the study does, and
        trains the source model with the large-data recipe.
    n_jobs : int, default=None
        joblib workers (``-1``: all cores).
    progress : callable, default=None
        Called as ``progress(done, total, label)`` after each fitted model.

    Returns
    -------
    transfer : dict
        As described in ``docs/results-schema.md``; ``{"skipped": reason}``
        when it cannot run (no PyTorch, fewer than 4 classes).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat.study import StudySettings, run_transfer
    >>> digits = load_digits()
    >>> run_transfer(digits.images[:40], digits.target[:40] % 3)
    {'skipped': 'needs at least 4 classes (2 source, 2 target)'}
    """
    started = time.perf_counter()
    settings = StudySettings() if settings is None else settings
    if not isinstance(settings, StudySettings):
        raise TypeError(f"settings must be a StudySettings. Got {type(settings).__name__} instead.")
    images, target = as_images(images), np.asarray(target)
    if len(np.unique(target)) < _MIN_CLASSES:
        return {"skipped": "needs at least 4 classes (2 source, 2 target)"}
    learner_cls, unavailable = load_learner()
    if unavailable is not None:
        return {"skipped": unavailable}
    if design == "holdout":
        images = standardise_channels(images.copy(), len(images))
    source_classes, target_classes, folds, sizes = _plan(target, settings)
    seeds = range(settings.random_state, settings.random_state + settings.transfer_seeds)
    total, done = settings.transfer_seeds * (1 + len(TRANSFER_LABELS) * len(sizes)), []

    def report(key):
        done.append(key)
        if progress is not None:
            progress(len(done), total, " ".join(map(str, key)))

    depth = settings.depths[-1]
    source_images = int(np.isin(target, source_classes).sum())  # as many as _fit_source trains on
    source_images = source_images if settings.train_size is None else min(settings.train_size, source_images)
    source_recipe = settings.learned_recipe(design, n_train=source_images)
    sources = run_parallel(
        [(("source", s), (_fit_source, (learner_cls, images, target, source_classes, settings, s, source_recipe), {}))
         for s in seeds],
        n_jobs, report, torch_tasks=True,
    )
    tasks = []
    for (pool, test), seed in zip(folds, seeds):
        arms = _arms(learner_cls, sources[("source", seed)]["filters"], settings, seed)
        for size in sizes:
            train, _ = train_test_split(pool, train_size=size, stratify=target[pool], random_state=seed)
            for name, arm in arms.items():
                tasks.append(((name, size, seed), (evaluate, (arm, images, target, train, test), {})))
    runs = run_parallel(tasks, n_jobs, report, torch_tasks=True)
    n_test = min(len(test) for _, test in folds)
    arms = {}
    for name, label in TRANSFER_LABELS.items():
        scores = [[runs[(name, n, s)]["score"] for s in seeds] for n in sizes]
        arms[name] = {"label": label, "scores": scores,
                      "fit_time": [[runs[(name, n, s)]["fit_time"] for s in seeds] for n in sizes],
                      **transfer_curve(scores, n_test)}
    return {
        "skipped": None,
        "source_classes": source_classes.tolist(),
        "target_classes": target_classes.tolist(),
        "train_sizes": sizes,
        "n_seeds": settings.transfer_seeds,
        "n_test": n_test,
        "depth": depth,
        "source_fit_time": [sources[("source", s)]["fit_time"] for s in seeds],
        "arms": arms,
        "elapsed_s": time.perf_counter() - started,
    }


def _fit_source(learner_cls, images, target, source_classes, settings, seed, recipe):
    """Learn every layer's kernels on the source classes (at most ``train_size`` images); return them and the time."""
    idx = subsample(np.flatnonzero(np.isin(target, source_classes)), target, settings.train_size, seed)
    model = learned_model(learner_cls, "random", settings.depths[-1], settings.classifier, seed, settings.device,
                          recipe)
    start = time.perf_counter()
    fit_quietly(model, images[idx], target[idx])
    return {"filters": model.filters_, "fit_time": time.perf_counter() - start}


def _arms(learner_cls, source_filters, settings, seed):
    """The three target-task arms of one seed; ``transfer`` uses the source kernels of every layer.

    Their 20-300 training images train with the small-data recipe.
    """
    depth, classifier, device = settings.depths[-1], settings.classifier, settings.device
    estimators = {
        "transfer": ("transfer", fixed_pipeline(source_filters, depth, classifier, seed)),
        "scratch": ("learned", learned_model(learner_cls, "random", depth, classifier, seed, device,
                                             settings.small_recipe)),
        "random": ("fixed", fixed_pipeline("random", depth, classifier, seed)),
    }
    return {
        name: Arm(name, TRANSFER_LABELS[name], kind, name, estimator, depth)
        for name, (kind, estimator) in estimators.items()
    }


def _plan(target, settings):
    """Source and target classes, one (pool, test) fold of the target per seed, and the sizes."""
    classes = np.unique(target)
    source_classes, target_classes = classes[: len(classes) // 2], classes[len(classes) // 2 :]
    target_idx = np.flatnonzero(np.isin(target, target_classes))
    cv = StratifiedKFold(settings.transfer_seeds, shuffle=True, random_state=settings.random_state)
    folds = [(target_idx[pool], target_idx[test]) for pool, test in cv.split(target_idx, target[target_idx])]
    smallest_pool = min(len(pool) for pool, _ in folds)
    sizes = [n for n in settings.transfer_sizes if len(target_classes) <= n < smallest_pool]
    return source_classes, target_classes, folds, sizes


def transfer_curve(scores, n_test):
    """Mean and bounded 95% interval of each size's accuracies over seeds (disjoint test folds)."""
    mean, low, high = zip(*(accuracy_interval(per_seed, n_test=n_test) for per_seed in scores))
    return {"mean": list(mean), "ci_low": list(low), "ci_high": list(high)}
