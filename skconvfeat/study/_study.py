"""The study: does a CNN with fixed kernels classify as well as one whose kernels are learned?

Every arm (see :mod:`._design`) is scored on the same images, in one of two
designs:

* ``"cv"`` (small datasets such as digits): the same repeated stratified
  k-fold splits, scores paired split by split and compared with the corrected
  repeated k-fold t-test;
* ``"holdout"`` (given ``test_images``: the official split of MNIST or
  CIFAR-10, where cross-validating learned arms on 50,000 images is
  unaffordable): every arm trains on the training set (once per seed) and
  predicts the same test images, compared image by image.

Either way every family of comparisons is Holm-corrected and each difference
also gets an equivalence test ("equal within +-margin"). The transfer
experiment (:mod:`._transfer`) runs on its own; given its results,
:func:`run_study` judges claim (c) from them.

:func:`run_study` returns the results dictionary described in
``docs/results-schema.md`` (and, on request, the ``extras`` arrays).
"""

import time
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import validate_params

from ._design import DEEP_BANKS, learned_arm_names, learned_training, load_learner, make_arms, suffix
from ._environment import environment
from ._evaluate import Evaluation, evaluate, n_features, run_parallel
from ._extras import extras as figure_arrays
from ._settings import StudySettings
from ._splits import as_images, cv_splits, holdout_splits, standardise_channels, validation_split, with_test_set
from ._verdicts import baseline, best_fixed_arm, comparisons, fixed_candidates, verdicts

__all__ = ["run_study"]


@validate_params(
    {
        "images": ["array-like"],
        "target": ["array-like"],
        "settings": [StudySettings, None],
        "test_images": ["array-like", None],
        "test_target": ["array-like", None],
        "transfer": [dict, None],
        "n_jobs": [Integral, None],
        "progress": [callable, None],
        "return_extras": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def run_study(images, target, settings=None, *, test_images=None, test_target=None, transfer=None, n_jobs=None,
              progress=None, return_extras=False):
    """Compare fixed, raw-pixel and learned kernels on the same images.

    Without ``test_images`` every arm is scored on the same repeated
    stratified k-fold splits of ``images`` (design ``"cv"``); with them, every
    arm trains on ``images`` and is scored on the test images, once per seed
    (design ``"holdout"``: the official split of a large dataset). Each arm
    gets an interval inside [0, 1]; every arm is compared with the reference
    (the learned arm when present, else the best fixed arm), and the answers
    to the three claims are judged from Holm-corrected paired tests and an
    equivalence test at ``settings.margin``. See ``docs/results-schema.md``.

    Parameters
    ----------
    images : array-like of shape (n_samples, h, w) or (n_samples, h, w, c)
        The images (the training images in the holdout design).
    target : array-like of shape (n_samples,)
        Their classes.
    settings : StudySettings, default=None
        What to run and how to judge it; ``None`` for the defaults.
    test_images : array-like of shape (n_test, h, w) or (n_test, h, w, c), default=None
        Test images of the official split; ``None`` cross-validates ``images``.
    test_target : array-like of shape (n_test,), default=None
        Their classes; every one must occur in ``target``.
    transfer : dict, default=None
        The results of :func:`run_transfer` on these training images, from
        which claim (c) is judged (its tests join the answers' Holm family);
        ``None``: claim (c) is not tested.
    n_jobs : int, default=None
        joblib workers over arms and splits (``-1``: all cores).
    progress : callable, default=None
        Called as ``progress(done, total, label)`` after each fitted model.
    return_extras : bool, default=False
        Also return the ``extras`` arrays (kernels, feature maps, confusion).

    Returns
    -------
    results : dict
        As described in ``docs/results-schema.md``.
    extras : dict
        Only when ``return_extras`` is True.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat.study import StudySettings, run_study
    >>> digits = load_digits()
    >>> settings = StudySettings(banks=["gabor", "identity"], learned=False, n_splits=2, n_repeats=1)
    >>> results = run_study(digits.images, digits.target, settings)
    >>> [arm["label"] for arm in results["arms"]]
    ['Gabor, fixed', 'Raw pixels (no conv)']
    >>> 0 <= results["arms"][0]["ci_low"] <= results["arms"][0]["ci_high"] <= 1
    True
    """
    started = time.perf_counter()
    settings = StudySettings() if settings is None else settings
    images, target = as_images(images), np.asarray(target)
    if (test_images is None) != (test_target is None):
        raise ValueError("Give both test_images and test_target, or neither.")
    learner_cls, unavailable = load_learner() if settings.learned else (None, None)
    skipped = _skipped(settings, unavailable)
    run_learned = settings.learned and unavailable is None

    if test_images is None:
        design, seeds = "cv", [settings.random_state] * (settings.n_splits * settings.n_repeats)
        splits = cv_splits(target, settings.n_splits, settings.n_repeats, settings.random_state, settings.train_size)
        params = {"n_splits": settings.n_splits, "n_repeats": settings.n_repeats}
    else:
        images, target, n_train_pool = with_test_set(images, target, test_images, test_target)
        images = standardise_channels(images, n_train_pool)
        design, seeds = "holdout", [settings.random_state + i for i in range(settings.n_seeds)]
        splits = holdout_splits(target, n_train_pool, settings.n_seeds, settings.random_state, settings.train_size)
        params = {"n_seeds": settings.n_seeds}
    evaluation = Evaluation(design, splits, target, settings.margin, random_state=settings.random_state, **params)
    # CV: the same models on every split; holdout: one seed per repeat, or they would all agree.
    recipe = settings.learned_recipe(design, n_train=len(splits[0][0]))
    arm_sets = [make_arms(settings.banks, settings.depths, settings.classifier, learner_cls,
                          recipe if run_learned else None, seed, settings.device, settings.preset)
                for seed in seeds]
    arms = arm_sets[0]
    if not arms:
        raise ValueError(
            f"run_study has no arm to run: depth {settings.depths[-1]} builds arms for the banks {DEEP_BANKS} only "
            f"(given {settings.banks}) and learned=False."
        )
    total, done = len(arms) * len(splits), []

    def report(key):
        done.append(key)
        if progress is not None:
            progress(len(done), total, " ".join(map(str, key)))

    tasks = [
        ((arm.name, i), (evaluate, (arm, images, target, train, test),
                         {"keep_model": i == 0, "keep_pred": design == "holdout"}))
        for i, (train, test) in enumerate(splits)
        for arm in arm_sets[i]
    ]
    # The best fixed arm is chosen on images held out of the first split's training images, never on test.
    candidates = fixed_candidates(arms)
    fit_part, valid_part = validation_split(target, splits[0][0], settings.random_state)
    tasks += [((arm.name, "validation"), (evaluate, (arm, images, target, fit_part, valid_part), {}))
              for arm in candidates]
    total += len(candidates)
    runs = run_parallel(tasks, n_jobs, report, torch_tasks=run_learned)
    first = {arm.name: runs[(arm.name, 0)] for arm in arms}
    arm_results = [
        evaluation.summarise(arm, [runs[(arm.name, i)] for i in range(len(splits))],
                             n_features(first[arm.name]["model"]))
        for arm in arms
    ]
    for arm in arm_results:
        if (arm["name"], "validation") in runs:
            arm["validation_accuracy"] = runs[(arm["name"], "validation")]["score"]
    best = best_fixed_arm(arm_results)
    reference = "learned" + suffix(settings.depths[-1]) if run_learned else best["name"]
    results = {
        "dataset": settings.dataset,
        "n_samples": len(target),
        "n_classes": int(len(np.unique(target))),
        "image_shape": list(images.shape[1:]),
        "classifier": settings.classifier,
        "evaluation": evaluation.describe(),
        "learned_training": learned_training(recipe, settings.device),
        "margin": settings.margin,
        "alpha": settings.alpha,
        "arms": arm_results,
        "best_fixed": best["name"],
        "best_fixed_chosen_on": (f"validation: {len(valid_part):,} images held out of the first split's "
                                 f"{len(splits[0][0]):,} training images, each candidate refitted on the rest"),
        "reference": reference,
        "comparisons": comparisons(arm_results, reference, evaluation, settings.alpha),
        "skipped_arms": skipped,
    }
    results["baseline"] = baseline(results, reference)
    results["verdicts"] = verdicts(results, evaluation, transfer, settings.alpha, settings.transfer_small_sizes)
    results["elapsed_s"] = time.perf_counter() - started
    results["versions"] = environment()
    if not return_extras:
        return results
    reference_arm = next(a for a in arm_results if a["name"] == reference)
    return results, figure_arrays(arms, first, best, reference_arm, images, target, splits[0][1])


def _skipped(settings, unavailable):
    """The ``skipped_arms`` entries: the arms trained in PyTorch, when they do not run."""
    if settings.learned and unavailable is None:
        return []
    reason = unavailable if settings.learned else "turned off (learned=False)"
    return [{"name": name, "reason": reason} for name in learned_arm_names(settings.depths)]
