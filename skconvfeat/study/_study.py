"""The study: does a CNN with fixed kernels classify as well as one whose kernels are learned?

Every arm of a depth is the same CNN -- the one-layer network (convolution,
ReLU, average pooling) or the two-layer one (two convolutions, each ReLU and
max-pooled), then standardisation and a trained head -- built from one shared
description, and the arms differ only in where the kernels come from: a fixed
bank (Gaussian blurs, Gabor filters, sharpening, random, k-means centroids of
the data's patches), no convolution at all (raw pixels), or kernels trained end
to end in PyTorch (from random kernels, or frozen as a control). All arms are
scored on the same images, in one of two designs:

* ``"cv"`` (small datasets such as digits): the same repeated stratified
  k-fold splits, scores paired split by split and compared with the corrected
  repeated k-fold t-test;
* ``"holdout"`` (given ``test_images``: the official split of MNIST or
  CIFAR-10, where cross-validating learned arms on 50,000 images is
  unaffordable): every arm trains on the training set (once per seed) and
  predicts the same test images, compared image by image.

Either way every family of comparisons is Holm-corrected and each difference
also gets an equivalence test ("equal within +-margin").

A second experiment asks whether kernels learned on one task help another:
kernels learned on the first half of the classes are frozen and reused on the
second half, for several training-set sizes, against kernels learned from
scratch and random fixed kernels, in the study's deepest network.

:func:`run_study` returns the results dictionary described in
``docs/results-schema.md`` (and, on request, the ``extras`` arrays).
"""

import copy
import platform
import time
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import (
    RepeatedStratifiedKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._banks import list_banks
from .._hints import did_you_mean
from .._net import FixedConvNet
from .._transformer import FixedConvTransformer
from . import _format as fmt
from ._stats import (
    CV_TEST,
    IMAGE_TEST,
    MCNEMAR_TEST,
    accuracy_interval,
    claim_verdict,
    corrected_paired_ttest,
    judge,
    paired_holdout_test,
    wilson_interval,
)

__all__ = ["CLASSIFIERS", "DEFAULT_BANKS", "best_fixed_arm", "run_study"]

DEFAULT_BANKS = ("gaussian", "gabor", "sharpen", "random", "kmeans", "identity")

# The convolutional layer shared by every arm (fixed, learned, transferred).
# Chosen on digits (8x8 images, 0-16 grey levels), measured on one split with
# a logistic head. Unpooled maps (1024 features per 16-kernel bank) make the
# heads 5x slower and change the 16-kernel banks by <= 0.3 points, but help the
# 3-kernel banks (Gaussian +2.5, sharpen +7 points: 48 pooled features are few);
# a 2x2 grid (4 values per map) loses up to 30 points on those banks.
LAYER = {
    "kernel_size": 3,  # pixels: a stroke is 1-2 pixels wide on 8x8 digits; 5x5 spans most of the digit
    "padding": "same",  # zero padding keeps 8x8 maps, so strokes at the border count
    "nonlinearity": "relu",
    "pooling": "avg",
    "pool_grid": 4,  # 4x4 pooled map per kernel: 2x2 windows on digits, same layout on larger images
}
# "identity" (1x1 kernels copying each channel) is the "fully-connected layer
# on the image" baseline, so it skips pooling: the head sees the raw pixels.
RAW_LAYER = {**LAYER, "pool_grid": None, "pool_size": 1}
# Per-bank settings. "kmeans" (the data-derived arm) learns as many centroids
# as the layer has kernels from 20,000 whitened patches of the training fold:
# 0.5 s a fit on digits, against 4.6 s with the default 100,000, which would
# take the default run over a minute.
KMEANS_PATCHES = 20_000
BANK_SETTINGS = {"kmeans": {"bank_params": {"n_filters": 16}, "n_patches": KMEANS_PATCHES}}
# The deeper network shared by every arm of depth 2 (fixed, data-derived,
# learned, frozen): the plain CNN of issue 10's CIFAR-10 target, conv 5x5 (32
# kernels) -> ReLU -> max-pool 2 -> conv 3x3 (64) -> ReLU -> max-pool 2. Each
# fixed layer is fitted greedily on the previous layer's maps (FixedConvNet).
NET_LAYERS = (
    {"kernel_size": 5, "n_filters": 32, "padding": "same", "nonlinearity": "relu", "pooling": "max", "pool_size": 2},
    {"kernel_size": 3, "n_filters": 64, "padding": "same", "nonlinearity": "relu", "pooling": "max", "pool_size": 2},
)
DEPTHS = (1, len(NET_LAYERS))
# Banks with a deep arm (hand-crafted, random, data-derived), and the Gabor
# parameters giving each layer its width (orientations x frequencies x 2 phases).
DEEP_BANKS = ("gabor", "random", "kmeans")
GABOR_WIDTHS = {32: {"n_orientations": 8}, 64: {"n_orientations": 8, "frequencies": (0.1, 0.2, 0.3, 0.4)}}
BANK_LABELS = {"identity": "Raw pixels (no conv)", "kmeans": "K-means, fixed (data-derived)"}

# Heads, i.e. the trainable "fully-connected" part. Fitted on standardised features.
CLASSIFIERS = ("logistic", "linear_svm", "mlp")


def _make_head(classifier, random_state):
    """The scikit-learn head called ``classifier``."""
    if classifier == "logistic":
        return LogisticRegression(max_iter=1000)  # C=1; 1000 lbfgs steps converge on every arm
    if classifier == "linear_svm":
        return LinearSVC(C=0.01, max_iter=5000)  # small C: converges on ~250 standardised features
    if classifier == "mlp":
        # One hidden layer of 100 ReLU units: the two-layer FC head of a small CNN. It stops, as the
        # learned arms do, on the accuracy of a held-out tenth of its training set (patience 10
        # epochs); stopping on the training loss over-fits 4,096 features of 50,000 images.
        return MLPClassifier(hidden_layer_sizes=(100,), max_iter=600, early_stopping=True,
                             validation_fraction=0.1, random_state=random_state)
    raise ValueError(f"classifier must be one of {CLASSIFIERS}. Got {classifier!r}.")


# The learned arms train the same layers end to end (Adam in PyTorch), keeping
# the epoch with the best accuracy on a held-out tenth of their training set.
# Two recipes, by the amount of training data. This one is for small sets (the
# digits' CV folds, the transfer experiment's 20-300 images), budgeted so that
# the whole default study runs in about a minute on 2 CPU cores.
LEARNED = {
    "max_epochs": 30,  # passes over ~1300 training images, ~300 Adam steps
    "batch_size": 128,  # images per Adam step
    "learning_rate": 1e-2,  # Adam step size, suits unit-norm kernels
    "weight_decay": 1e-4,  # L2 on kernels and head weights, ~ LogisticRegression's 1/C
    "early_stopping": True,  # on the validation split, not the training loss
    "validation_fraction": 0.1,
    "n_iter_no_change": 5,
    "augment": False,  # no random crops or flips: the fixed arms see the images as given too
}
# The official split of a large dataset (tens of thousands of training images):
# the recipe of benchmarks/learned_cifar10.py, which took the 2-layer network to
# 75.1% on the CIFAR-10 JPEG copy. 10 epochs: 3,500 Adam steps on 45,000 images,
# where that run was still improving slowly (about 15 min a 2-layer fit on one core).
LEARNED_LARGE = {**LEARNED, "max_epochs": 10, "learning_rate": 2e-3, "lr_schedule": "cosine"}
# Datasets whose learned arms see random shifts (4 pixels) and mirror images:
# photographs keep their class under both; digits do not under mirroring. The
# fixed arms see the images as given, so "learned" is compared with
# "random_adam" (same network, optimiser and augmentation, kernels frozen) too.
AUGMENTED = frozenset({"cifar10", "cifar10-jpeg"})
DEVICES = ("cpu", "cuda", "auto")
# Accuracy a plain PyTorch CNN of the reference's size reaches on the full
# training set (issue 10: two conv layers, 15 epochs, about 75% on the
# CIFAR-10 JPEG copy). A learned reference below it is too weak a baseline
# for its verdicts to count as fair.
BASELINE_FLOORS = {"cifar10": 0.74, "cifar10-jpeg": 0.74}
# Arms trained in PyTorch: name -> (initial bank, kernels trained?). "random_adam"
# is the control: the learned arm's network and optimiser with its kernels
# frozen, so "learned vs random_adam" isolates what training the kernels adds.
LEARNED_ARMS = {
    "learned": ("random", True),
    "gabor_learned": ("gabor", True),
    "random_adam": ("random", False),
}
DEEP_LEARNED_ARMS = ("learned", "random_adam")

# Transfer experiment: total training images drawn from the target classes.
TRANSFER_SIZES = (20, 50, 100, 300)
TRANSFER_SEEDS = 5  # repeats; seed i tests on fold i of a 5-fold split of the target classes
SMALL_SIZES = 2  # claim (c) is judged on this many of the smallest sizes, pooled per seed


@dataclass
class Arm:
    """One way of getting the kernels, with the estimator that uses them."""

    name: str
    label: str
    kind: str  # fixed | raw | learned | transfer
    bank: object
    estimator: object
    depth: int = 1


def _layer_settings(bank, width):
    """Parameters giving ``bank`` ``width`` kernels in a layer of the deep network."""
    if bank == "gabor":
        return {"bank_params": GABOR_WIDTHS[width]}
    settings = {"bank_params": {"n_filters": width}}
    return {**settings, "n_patches": KMEANS_PATCHES} if bank == "kmeans" else settings


def _description(bank, depth, random_state):
    """The fixed network of an arm: a FixedConvTransformer (depth 1) or a FixedConvNet.

    ``bank`` is a bank name, or a list of kernel arrays, one per layer (kernels
    learned elsewhere, for the transfer experiment). Learned arms train this
    very description (``LearnedConvClassifier(description)``).
    """
    banks = [bank] * depth if isinstance(bank, str) else list(bank)
    if depth == 1:
        settings = BANK_SETTINGS.get(banks[0], {}) if isinstance(bank, str) else {}
        layer = RAW_LAYER if bank == "identity" else LAYER
        return FixedConvTransformer(banks[0], random_state=random_state, **layer, **settings)
    layers = []
    for i, (layer_bank, spec) in enumerate(zip(banks, NET_LAYERS)):
        spec = dict(spec)
        width = spec.pop("n_filters")
        settings = _layer_settings(layer_bank, width) if isinstance(layer_bank, str) else {}
        layers.append((f"conv{i + 1}", FixedConvTransformer(layer_bank, random_state=random_state + i, **spec,
                                                            **settings)))
    return FixedConvNet(layers)


def _fixed_pipeline(bank, depth, classifier, random_state):
    """The fixed description -> StandardScaler -> head."""
    conv = _description(bank, depth, random_state)
    return Pipeline([("conv", conv), ("scale", StandardScaler()), ("head", _make_head(classifier, random_state))])


def learned_recipe(design, dataset, overrides=None):
    """The training settings of the study's learned arms.

    Parameters
    ----------
    design : {"cv", "holdout"}
        ``"cv"`` (small data, cross-validated) trains with ``LEARNED``;
        ``"holdout"`` (the official split of a large dataset) with
        ``LEARNED_LARGE``, the recipe of the learned CIFAR-10 baseline.
    dataset : str
        The datasets of ``AUGMENTED`` (photographs) add random shifts and
        horizontal flips on an official split.
    overrides : dict, default=None
        :class:`~skconvfeat.LearnedConvClassifier` parameters replacing the
        recipe's (``run_study``'s ``learned_params``).

    Returns
    -------
    recipe : dict
        Keyword arguments of :class:`~skconvfeat.LearnedConvClassifier`.

    Examples
    --------
    >>> from skconvfeat.study import learned_recipe
    >>> recipe = learned_recipe("holdout", "cifar10-jpeg")
    >>> recipe["learning_rate"], recipe["lr_schedule"], recipe["augment"]
    (0.002, 'cosine', True)
    """
    recipe = dict(LEARNED if design == "cv" else LEARNED_LARGE)
    if design == "holdout" and dataset in AUGMENTED:
        recipe["augment"] = True
    return {**recipe, **(overrides or {})}


# LearnedConvClassifier parameters the study sets per arm, so learned_params may not
# (warm_start too: every arm is a fresh model).
_PER_ARM_PARAMS = frozenset({"conv", "head", "freeze_kernels", "random_state", "device", "warm_start"})


def _check_learned_params(learned_params):
    """``learned_params`` if every key is a LearnedConvClassifier training parameter the study leaves free."""
    if not learned_params:
        return learned_params
    from ..learned import LearnedConvClassifier  # no torch at import: the estimator's own parameter list

    free = set(LearnedConvClassifier._get_param_names()) - _PER_ARM_PARAMS
    bad = sorted(set(learned_params) - free)
    if bad:
        raise ValueError(
            f"The 'learned_params' parameter of run_study may set {sorted(free)}. Got {bad} instead "
            f"(the study sets {sorted(_PER_ARM_PARAMS)} per arm)."
        )
    return learned_params


def _learned_model(learner_cls, bank, depth, classifier, random_state, device, recipe, train_kernels=True):
    """LearnedConvClassifier training the description of ``bank`` at ``depth`` (frozen unless ``train_kernels``)."""
    head = "mlp" if classifier == "mlp" else "linear"
    conv = _description(bank, depth, random_state)
    return learner_cls(conv, head=head, freeze_kernels=not train_kernels, random_state=random_state, device=device,
                       **recipe)


def _load_learner():
    """``(LearnedConvClassifier, None)`` or ``(None, reason it is unavailable)``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "PyTorch is not installed (pip install 'skconvfeat[torch]')"
    try:
        from ..learned import LearnedConvClassifier
    except ImportError as exc:
        return None, f"skconvfeat.LearnedConvClassifier is not available ({exc})"
    return LearnedConvClassifier, None


def check_banks(banks):
    """Return ``banks`` as a tuple, raising ValueError naming the closest bank for a typo."""
    banks, names = tuple(banks), list_banks()
    for bank in banks:
        if bank not in names:
            raise ValueError(f"unknown bank {bank!r}; choose from {', '.join(names)}.{did_you_mean(bank, names)}")
    if not banks:
        raise ValueError(f"no bank given; choose from {', '.join(names)}.")
    return banks


def _suffix(depth):
    """Arm names of depth 2 end in ``"@2"``; those of depth 1 keep their plain names."""
    return "" if depth == 1 else f"@{depth}"


def _label(label, depth):
    return label if depth == 1 else f"{label}, {depth} layers"


def _bank_label(bank):
    """Display name of a fixed bank's arm."""
    return BANK_LABELS.get(bank, f"{bank.capitalize()}, fixed")


def _make_arms(banks, depths, classifier, learner_cls, recipe, random_state, device):
    """The arms of the main comparison, by depth: fixed banks first, then those trained in PyTorch.

    ``recipe``: the learned arms' training settings, or None for no learned arms.
    """
    arms = []
    for depth in depths:
        suffix = _suffix(depth)
        for bank in banks if depth == 1 else [b for b in banks if b in DEEP_BANKS]:
            kind = "raw" if bank == "identity" else "fixed"
            model = _fixed_pipeline(bank, depth, classifier, random_state)
            arms.append(Arm(bank + suffix, _label(_bank_label(bank), depth), kind, bank, model, depth))
        for name in (LEARNED_ARMS if depth == 1 else DEEP_LEARNED_ARMS) if recipe is not None else ():
            init, train_kernels = LEARNED_ARMS[name]
            if train_kernels:
                label, kind = f"Learned ({init} init)", "learned"
            else:
                label, kind = f"{init.capitalize()}, fixed (Adam head)", "fixed"
            model = _learned_model(learner_cls, init, depth, classifier, random_state, device, recipe, train_kernels)
            arms.append(Arm(name + suffix, _label(label, depth), kind, init, model, depth))
    return arms


def _subsample(train, target, train_size, seed):
    """``train`` subsampled (stratified) to ``train_size`` indices, sorted; all of it when None or larger."""
    if train_size is not None and train_size < len(train):
        train, _ = train_test_split(train, train_size=train_size, stratify=target[train], random_state=seed)
    return np.sort(train)


def _cv_splits(target, n_splits, n_repeats, random_state, train_size):
    """The shared CV splits; training folds subsampled (stratified) to ``train_size``."""
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=random_state)
    return [
        (_subsample(train, target, train_size, random_state + i), test)
        for i, (train, test) in enumerate(cv.split(np.zeros(len(target)), target))
    ]


def _holdout_splits(target, n_train, n_seeds, random_state, train_size):
    """One (training set, test set) per seed: the first ``n_train`` indices train, the rest test."""
    train, test = np.arange(n_train), np.arange(n_train, len(target))
    return [(_subsample(train, target, train_size, random_state + i), test) for i in range(n_seeds)]


def _fit_quietly(model, images, target):
    """Fit without ConvergenceWarnings: the results record ``converged`` and their caveats count it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(images, target)


def _evaluate(arm, images, target, train, test, keep_model=False, keep_pred=False):
    """Fit ``arm`` on ``train``, score it on ``test``, and time both steps.

    For pipelines the conv transform of the test fold is timed on its own;
    PyTorch models have no separate transform (``None``).
    """
    model = clone(arm.estimator)
    start = time.perf_counter()
    _fit_quietly(model, images[train], target[train])
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


def _run_parallel(tasks, n_jobs, progress, torch_tasks=False):
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


def _n_features(model):
    """Features entering the head's standardisation."""
    return model[0].n_features_out_ if isinstance(model, Pipeline) else model.n_features_out_


class _Evaluation:
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


def best_fixed_arm(arm_results):
    """The one "best fixed arm" of a study: highest mean accuracy among the fixed arms of the deepest network.

    The deepest network, because that is the one the learned reference has
    (a deeper fixed arm against a shallower learned one is no fair match).
    The confusion matrix, verdict (b) and the report all use this arm. Falls
    back to every arm of that depth (e.g. only the raw pixels) when no fixed
    arm ran; ``None`` when there are no arms. Ties go to the arm listed first.
    """
    depth = max((a.get("depth", 1) for a in arm_results), default=1)
    deepest = [a for a in arm_results if a.get("depth", 1) == depth]
    candidates = [a for a in deepest if a["kind"] == "fixed"] or deepest
    return max(candidates, key=lambda a: a["mean"], default=None)


def _comparisons(arm_results, reference, evaluation, alpha):
    """Every arm against ``reference``, one Holm family."""
    ref = next(a for a in arm_results if a["name"] == reference)
    tests = [evaluation.compare(arm, ref) for arm in arm_results if arm["name"] != reference]
    return judge(tests, alpha=alpha)


def _baseline(results, reference):
    """Whether the learned reference reached the accuracy a plain CNN reaches here (None: no floor known)."""
    floor = BASELINE_FLOORS.get(results["dataset"])
    ref = next((a for a in results["arms"] if a["name"] == reference and a["kind"] == "learned"), None)
    if floor is None or ref is None:
        return None
    return {"arm": ref["name"], "label": ref["label"], "accuracy": ref["mean"], "floor": floor,
            "reached": bool(ref["mean"] >= floor)}


# -- transfer -----------------------------------------------------------------


def _fit_source(learner_cls, images, target, source_classes, depth, classifier, seed, train_size, device, recipe):
    """Learn every layer's kernels on the source classes (at most ``train_size`` images); return them and the time."""
    idx = _subsample(np.flatnonzero(np.isin(target, source_classes)), target, train_size, seed)
    model = _learned_model(learner_cls, "random", depth, classifier, seed, device, recipe)
    start = time.perf_counter()
    _fit_quietly(model, images[idx], target[idx])
    return {"filters": model.filters_, "fit_time": time.perf_counter() - start}


TRANSFER_LABELS = {
    "transfer": "Transferred kernels, fixed",
    "scratch": "Learned from scratch",
    "random": "Random, fixed",
}


def _transfer_arms(learner_cls, source_filters, depth, classifier, seed, device):
    """The three target-task arms of one seed; ``transfer`` uses the source kernels of every layer.

    Their 20-300 training images train with the small-data recipe (``LEARNED``).
    """
    estimators = {
        "transfer": ("transfer", _fixed_pipeline(source_filters, depth, classifier, seed)),
        "scratch": ("learned", _learned_model(learner_cls, "random", depth, classifier, seed, device, LEARNED)),
        "random": ("fixed", _fixed_pipeline("random", depth, classifier, seed)),
    }
    return {
        name: Arm(name, TRANSFER_LABELS[name], kind, name, estimator, depth)
        for name, (kind, estimator) in estimators.items()
    }


def _transfer_plan(target, random_state):
    """Source and target classes, one (pool, test) fold of the target per seed, and the sizes."""
    classes = np.unique(target)
    source_classes, target_classes = classes[: len(classes) // 2], classes[len(classes) // 2 :]
    target_idx = np.flatnonzero(np.isin(target, target_classes))
    cv = StratifiedKFold(TRANSFER_SEEDS, shuffle=True, random_state=random_state)
    folds = [(target_idx[pool], target_idx[test]) for pool, test in cv.split(target_idx, target[target_idx])]
    smallest_pool = min(len(pool) for pool, _ in folds)
    sizes = [n for n in TRANSFER_SIZES if len(target_classes) <= n < smallest_pool]
    return source_classes, target_classes, folds, sizes


def _transfer_curve(scores, n_test):
    """Mean and bounded 95% interval of each size's accuracies over seeds (disjoint test folds)."""
    mean, low, high = zip(*(accuracy_interval(per_seed, n_test=n_test) for per_seed in scores))
    return {"mean": list(mean), "ci_low": list(low), "ci_high": list(high)}


def _transfer_study(learner_cls, images, target, depth, classifier, random_state, train_size, device, n_jobs,
                    progress, recipe):
    """Kernels learned on the first half of the classes, fixed, on the second half, in the network of ``depth``.

    The source model sees at most ``train_size`` images, like every model of
    the main comparison, and trains with the main comparison's ``recipe``.
    """
    source_classes, target_classes, folds, sizes = _transfer_plan(target, random_state)
    seeds = range(random_state, random_state + TRANSFER_SEEDS)
    sources = _run_parallel(
        [(("source", s),
          (_fit_source, (learner_cls, images, target, source_classes, depth, classifier, s, train_size, device,
                         recipe), {}))
         for s in seeds],
        n_jobs,
        progress,
        torch_tasks=True,
    )
    tasks = []
    for (pool, test), seed in zip(folds, seeds):
        arms = _transfer_arms(learner_cls, sources[("source", seed)]["filters"], depth, classifier, seed, device)
        for size in sizes:
            train, _ = train_test_split(pool, train_size=size, stratify=target[pool], random_state=seed)
            for name, arm in arms.items():
                tasks.append(((name, size, seed), (_evaluate, (arm, images, target, train, test), {})))
    runs = _run_parallel(tasks, n_jobs, progress, torch_tasks=True)
    n_test = min(len(test) for _, test in folds)
    arms = {}
    for name, label in TRANSFER_LABELS.items():
        scores = [[runs[(name, n, s)]["score"] for s in seeds] for n in sizes]
        arms[name] = {"label": label, "scores": scores,
                      "fit_time": [[runs[(name, n, s)]["fit_time"] for s in seeds] for n in sizes],
                      **_transfer_curve(scores, n_test)}
    return {
        "source_classes": source_classes.tolist(),
        "target_classes": target_classes.tolist(),
        "train_sizes": sizes,
        "n_seeds": TRANSFER_SEEDS,
        "n_test": n_test,
        "depth": depth,
        "source_fit_time": [sources[("source", s)]["fit_time"] for s in seeds],
        "arms": arms,
    }


def _n_transfer_tasks(target, random_state):
    """Models the transfer experiment fits (for the progress count)."""
    sizes = _transfer_plan(target, random_state)[3]
    return TRANSFER_SEEDS * (1 + len(TRANSFER_LABELS) * len(sizes))


# -- verdicts -----------------------------------------------------------------


def _untestable(claim, missing):
    return {"claim": claim, "verdict": "inconclusive", "sentence": f"Not tested: {missing}.", "tests": []}


def _per_seed(transfer, name, key="scores"):
    """One number per seed: the mean over the smallest ``SMALL_SIZES`` training sizes."""
    return np.mean(np.asarray(transfer["arms"][name][key])[:SMALL_SIZES], axis=0)


def _learned_reference(results):
    """The learned arm the answers judge against (the deepest network's), or None."""
    arms = {a["name"]: a for a in results["arms"]}
    reference = arms.get(results["reference"])
    return reference if reference is not None and reference["kind"] == "learned" else None


def _cited_tests(results, evaluation, margin):
    """Every paired test the answers cite, keyed by (arm, reference); not yet adjusted."""
    arms = {a["name"]: a for a in results["arms"]}
    pairs = [("random", "identity")]
    learned = _learned_reference(results)
    if learned is not None:
        frozen = "random_adam" + _suffix(learned["depth"])
        pairs += [("random", learned["name"]), (learned["name"], frozen), (results["best_fixed"], learned["name"])]
    tests = {
        (a, b): evaluation.compare(arms[a], arms[b]) for a, b in pairs if a in arms and b in arms and a != b
    }
    transfer = results["transfer"]
    if transfer is not None and transfer["train_sizes"]:
        for other in ("scratch", "random"):
            test = corrected_paired_ttest(_per_seed(transfer, "transfer"), _per_seed(transfer, other), margin=margin)
            tests[("transfer", other)] = {"arm": "transfer", "reference": other, **test}
    return tests


def _verdict_random(arms, learned, tests):
    claim = "(a) Random kernels will work very poorly"
    if ("random", "identity") not in tests:
        return _untestable(claim, "needs the 'random' and 'identity' (raw pixels) arms")
    vs_raw = tests[("random", "identity")]
    sentence = (
        f"Random fixed kernels reached {fmt.accuracy(arms['random'])}. 'Very poorly' is judged against the same "
        f"head on the raw pixels ({fmt.accuracy(arms['identity'])}), i.e. no convolution at all: the difference "
        f"is {fmt.difference(vs_raw)}"
    )
    cited = [vs_raw]
    if learned is not None and ("random", learned["name"]) in tests:
        cited.append(tests[("random", learned["name"])])
        sentence += f"; against {learned['label']} ({fmt.percent(learned['mean'])}) it is {fmt.difference(cited[-1])}"
    return {"claim": claim, "verdict": claim_verdict(vs_raw["outcome"], "below"), "sentence": sentence + ".",
            "tests": cited}


def _verdict_fixed(results, arms, learned, tests):
    claim = "(b) Fixed kernels will learn, but certainly worse than learned kernels"
    best = arms.get(results["best_fixed"])
    if learned is None or best is None or (best["name"], learned["name"]) not in tests:
        return _untestable(claim, "needs a learned arm and at least one fixed bank")
    res = tests[(best["name"], learned["name"])]
    sentence = (
        f"The best fixed arm ({best['label']}) reached {fmt.accuracy(best)} (chance: "
        f"{fmt.percent(1 / results['n_classes'])}), against {fmt.accuracy(learned)} for {learned['label']}: a "
        f"difference of {fmt.difference(res)}. The best arm is picked after seeing the scores, which favours "
        "the fixed side."
    )
    cited = [res]
    frozen = (learned["name"], "random_adam" + _suffix(learned["depth"]))
    if frozen in tests:
        cited.append(tests[frozen])
        sentence += (
            " Same network, same random start and same optimiser, training the kernels instead of "
            f"freezing them changes accuracy by {fmt.difference(cited[-1])}."
        )
    outcome = claim_verdict(res["outcome"], "below")
    baseline = results["baseline"]
    if baseline is not None and not baseline["reached"]:
        outcome = "inconclusive"
        sentence = (
            f"Not judged: the learned baseline reached {fmt.percent(baseline['accuracy'])}, below the "
            f"{fmt.percent(baseline['floor'])} a plain two-layer CNN reaches on {results['dataset']}, so this "
            f"comparison is not a fair one. {sentence}"
        )
    return {"claim": claim, "verdict": outcome, "sentence": sentence, "tests": cited}


def _verdict_transfer(transfer, tests):
    claim = "(c) Kernels pretrained on another task and held fixed are highly effective and need less data and time"
    if ("transfer", "scratch") not in tests:
        return _untestable(claim, "the transfer experiment did not run")
    vs_scratch, vs_random = tests[("transfer", "scratch")], tests[("transfer", "random")]
    sizes, arms = transfer["train_sizes"], transfer["arms"]
    speedup = np.mean(_per_seed(transfer, "scratch", "fit_time")) / np.mean(_per_seed(transfer, "transfer", "fit_time"))
    curve = ", ".join(
        f"{n}: {fmt.percent(arms['transfer']['mean'][i])} vs {fmt.percent(arms['scratch']['mean'][i])}"
        for i, n in enumerate(sizes)
    )
    sentence = (
        f"With {' and '.join(map(str, sizes[:SMALL_SIZES]))} training images of unseen classes, kernels learned "
        f"on classes {transfer['source_classes']} and then frozen differ from kernels learned from scratch by "
        f"{fmt.difference(vs_scratch)} and from random fixed kernels by {fmt.difference(vs_random)} (paired over "
        f"{transfer['n_seeds']} seeds, each with its own test fold); their head trains {speedup:.1f}x faster than "
        f"the whole network from scratch (pretraining took {np.mean(transfer['source_fit_time']):.1f} s once). "
        f"Accuracy by training size, transferred vs scratch: {curve}."
    )
    return {"claim": claim, "verdict": claim_verdict(vs_scratch["outcome"], "above"), "sentence": sentence,
            "tests": [vs_scratch, vs_random]}


def _verdicts(results, evaluation, alpha):
    """The three answers; every test they cite is one Holm family."""
    cited = _cited_tests(results, evaluation, results["margin"])
    tests = dict(zip(cited, judge(list(cited.values()), alpha=alpha)))
    arms = {a["name"]: a for a in results["arms"]}
    learned = _learned_reference(results)
    return [
        _verdict_random(arms, learned, tests),
        _verdict_fixed(results, arms, learned, tests),
        _verdict_transfer(results["transfer"], tests),
    ]


# -- extras -------------------------------------------------------------------


def _extras(arms, first_runs, best, reference, images, target, test):
    """Arrays for the report's figures, from the first split or seed.

    Kernels and feature maps of the one-layer fixed arms; the first learned
    arm's first-layer kernels before and after training; every PyTorch arm's
    per-epoch history; the confusion matrix of ``best`` and the per-class
    accuracy of ``reference`` and ``best`` (summarised arm dicts).
    """
    fixed = [arm for arm in arms if isinstance(arm.estimator, Pipeline) and arm.depth == 1]
    sample = images[test[0]]
    extras = {
        "banks": {arm.label: first_runs[arm.name]["model"][0].filters_ for arm in fixed},
        "learned_arm": None,
        "learned_before": None,
        "learned_after": None,
        # The fixed arms trained in PyTorch ("random_adam") too: their curves show the head alone learning.
        "learning_curves": {arm.label: list(first_runs[arm.name]["model"].history_)
                            for arm in arms if hasattr(first_runs[arm.name]["model"], "history_")},
        "sample_image": sample,
        "feature_maps": {arm.label: _feature_maps(first_runs[arm.name]["model"][0], sample) for arm in fixed},
        "confusion": None,
        "per_class": None,
    }
    learned = next((arm for arm in arms if arm.kind == "learned"), None)  # depth 1 first: the smallest kernels
    if learned is not None:
        model = first_runs[learned.name]["model"]
        extras["learned_arm"] = learned.label
        extras["learned_before"] = model.initial_filters_[0]
        extras["learned_after"] = model.filters_[0]
    if best is not None:
        labels = np.unique(target)
        matrix = confusion_matrix(target[test], first_runs[best["name"]]["pred"], labels=labels)
        extras["confusion"] = {"arm": best["label"], "labels": labels.tolist(), "matrix": matrix}
        tested = np.unique(target[test])  # a class without test images has no accuracy
        extras["per_class"] = {
            "labels": tested.tolist(),
            "accuracy": {arm["label"]: _per_class_accuracy(target[test], first_runs[arm["name"]]["pred"], tested)
                         for arm in (reference, best)},  # one entry when they are the same arm
        }
    return extras


def _per_class_accuracy(true, pred, labels):
    """Recall of each class in ``labels``: the fraction of its test images predicted right."""
    matrix = confusion_matrix(true, pred, labels=labels)
    return np.diag(matrix) / matrix.sum(axis=1)


def _feature_maps(conv, image):
    """``image`` through the fitted ``conv`` before pooling, shaped ``(n_maps, H', W')``.

    A copy of the fitted layer, not a refit: a data-derived bank refitted on
    one image would be another bank.
    """
    unpooled = copy.deepcopy(conv).set_params(pool_grid=None, pool_size=1)
    flat = unpooled.transform(image[None])[0]  # map-major: map, then row, then column
    map_hw = unpooled._layer_spec().conv_shape(image.shape[:2], unpooled.filters_.shape[2:])
    return flat.reshape(-1, *map_hw)


# -- the study ----------------------------------------------------------------


def _as_images(images):
    """``(n, h, w, c)`` float32 images from ``(n, h, w)`` or ``(n, h, w, c)``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (n, h, w) or (n, h, w, c). Got shape {images.shape}.")
    return images


def _versions():
    import sklearn

    from .. import __version__

    versions = {"skconvfeat": __version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return versions


def _learned_training(recipe, device):
    """How the learned arms were trained, stated in every result (augmentation in words)."""
    augment = recipe["augment"]
    if isinstance(augment, dict):
        augmentation = ", ".join(f"{key} {value}" for key, value in augment.items()) or "none"
    else:
        augmentation = "random crop (shifts up to 1/8 of the image) and horizontal flip" if augment else "none"
    stop_rule = (
        f"best validation accuracy on {recipe['validation_fraction']:.0%} of the training images, "
        f"patience {recipe['n_iter_no_change']} epochs, at most {recipe['max_epochs']}"
        if recipe["early_stopping"] else f"{recipe['max_epochs']} epochs"
    )
    return {**recipe, "device": device, "augmentation": augmentation, "stop_rule": stop_rule}


def _check_device(device, learner_cls):
    """Fail before any work when the learned arms are asked to train on a GPU PyTorch does not see."""
    if device != "cuda" or learner_cls is None:
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            "The 'device' parameter of run_study is 'cuda' but PyTorch sees no CUDA device "
            "(torch.cuda.is_available() is False). Use device='cpu' or 'auto'."
        )


def _standardise_channels(images, n_train):
    """Every channel to zero mean and unit variance, with the statistics of the ``n_train`` training images.

    As torchvision's ``Normalize`` before a CNN: the learned arms' recipe (``LEARNED_LARGE``)
    was tuned on such inputs; the fixed arms standardise their features anyway. In place.
    """
    train = images[:n_train]
    mean = train.mean(axis=(0, 1, 2), dtype=np.float64)
    std = train.std(axis=(0, 1, 2), dtype=np.float64)
    images -= mean.astype(images.dtype)
    images /= np.where(std > 0, std, 1).astype(images.dtype)  # a constant channel stays zero
    return images


def _with_test_set(images, target, test_images, test_target):
    """Training and test images in one array (training first), and the number of training images."""
    test_images, test_target = _as_images(test_images), np.asarray(test_target)
    if len(test_images) != len(test_target):
        raise ValueError(f"test_images has {len(test_images)} images but test_target {len(test_target)} labels.")
    if test_images.shape[1:] != images.shape[1:]:
        raise ValueError(f"test images are {test_images.shape[1:]}, training images {images.shape[1:]}.")
    unseen = np.setdiff1d(test_target, target)
    if unseen.size:
        raise ValueError(f"test_target has classes that no training image has: {unseen.tolist()}.")
    return np.concatenate([images, test_images]), np.concatenate([target, test_target]), len(target)


def _skipped(learned, transfer, unavailable, n_classes, depths):
    """The ``skipped_arms`` entries, and whether the learned arms and the transfer experiment run."""
    skipped = []
    run_learned = learned and unavailable is None
    if not run_learned:
        reason = unavailable if learned else "turned off (learned=False)"
        names = [name + _suffix(d) for d in depths for name in (LEARNED_ARMS if d == 1 else DEEP_LEARNED_ARMS)]
        skipped += [{"name": name, "reason": reason} for name in names]
    run_transfer = transfer and unavailable is None and n_classes >= 4
    if not run_transfer:
        if not transfer:
            reason = "turned off (transfer=False)"
        else:
            reason = unavailable or "needs at least 4 classes (2 source, 2 target)"
        skipped.append({"name": "transfer", "reason": reason})
    return skipped, run_learned, run_transfer


@validate_params(
    {
        "images": ["array-like"],
        "target": ["array-like"],
        "test_images": ["array-like", None],
        "test_target": ["array-like", None],
        "dataset": [str],
        "banks": ["array-like"],
        "depths": ["array-like"],
        "classifier": [StrOptions(set(CLASSIFIERS))],
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "n_seeds": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "train_size": [Interval(Integral, 1, None, closed="left"), None],
        "learned": ["boolean"],
        "transfer": ["boolean"],
        "device": [StrOptions(set(DEVICES))],
        "margin": [Interval(Real, 0, 0.5, closed="neither")],
        "alpha": [Interval(Real, 0, 0.5, closed="neither")],
        "n_jobs": [Integral, None],
        "progress": [callable, None],
        "return_extras": ["boolean"],
        "learned_params": [dict, None],
    },
    prefer_skip_nested_validation=True,
)
def run_study(
    images,
    target,
    *,
    test_images=None,
    test_target=None,
    dataset="digits",
    banks=DEFAULT_BANKS,
    depths=(1,),
    classifier="logistic",
    n_splits=5,
    n_repeats=5,
    n_seeds=1,
    random_state=0,
    train_size=None,
    learned=True,
    transfer=True,
    device="cpu",
    margin=0.01,
    alpha=0.05,
    n_jobs=None,
    progress=None,
    return_extras=False,
    learned_params=None,
):
    """Compare fixed, raw-pixel and learned kernels on the same images.

    Without ``test_images`` every arm is scored on the same repeated
    stratified k-fold splits of ``images`` (design ``"cv"``); with them, every
    arm trains on ``images`` and is scored on the test images, once per seed
    (design ``"holdout"``: the official split of a large dataset). Each arm
    gets an interval inside [0, 1]; every arm is compared with the reference
    (the learned arm when present, else the best fixed arm), and the answers
    to the three claims are judged from Holm-corrected paired tests and an
    equivalence test at ``margin``. See ``docs/results-schema.md``.

    Parameters
    ----------
    images : array-like of shape (n_samples, h, w) or (n_samples, h, w, c)
        The images (the training images in the holdout design).
    target : array-like of shape (n_samples,)
        Their classes.
    test_images : array-like of shape (n_test, h, w) or (n_test, h, w, c), default=None
        Test images of the official split; ``None`` cross-validates ``images``.
    test_target : array-like of shape (n_test,), default=None
        Their classes; every one must occur in ``target``.
    dataset : str, default="digits"
        Name recorded in the results; ``"cifar10"`` and ``"cifar10-jpeg"``
        also set the accuracy the learned reference must reach for its
        verdict to count as fair (``BASELINE_FLOORS``).
    banks : sequence of str, default=DEFAULT_BANKS
        Fixed banks to try (see :func:`skconvfeat.list_banks`); ``"identity"``
        is the raw-pixel baseline.
    depths : sequence of {1, 2}, default=(1,)
        Networks to build every arm in: 1, the one-layer CNN (``LAYER``); 2,
        the two-layer CNN (``NET_LAYERS``), with the banks of ``DEEP_BANKS``
        among ``banks``, learned and frozen arms. The deepest network holds
        the reference, the best fixed arm and the transfer experiment.
    classifier : {"logistic", "linear_svm", "mlp"}, default="logistic"
        The head. Learned arms use a linear head, or the same MLP for ``"mlp"``.
    n_splits, n_repeats : int, default=5
        Repeated stratified k-fold shared by every arm (design ``"cv"``).
    n_seeds : int, default=1
        Repeats of every arm with seeds ``random_state + i`` (design
        ``"holdout"``; each also draws its own ``train_size`` subsample).
    random_state : int, default=0
        Seed of the splits, the random bank and the learned arms.
    train_size : int, default=None
        Subsample each training set (stratified) to this many images; ``None``
        uses all. The transfer experiment's source model gets at most as many.
    learned : bool, default=True
        Include the learned arms (needs PyTorch and ``skconvfeat.LearnedConvClassifier``).
    transfer : bool, default=True
        Run the transfer experiment (same needs).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the learned arms train; ``"cuda"`` raises ValueError at once
        when PyTorch sees no CUDA device.
    margin : float, default=0.01
        Equivalence margin: two arms are "equal within ±margin" when the
        (1 - 2 alpha) interval of their difference lies inside it (TOST).
    alpha : float, default=0.05
        Family-wise error rate of each Holm family of tests.
    n_jobs : int, default=None
        joblib workers over arms and splits (``-1``: all cores).
    progress : callable, default=None
        Called as ``progress(done, total, label)`` after each fitted model.
    return_extras : bool, default=False
        Also return the ``extras`` arrays (kernels, feature maps, confusion).
    learned_params : dict, default=None
        :class:`~skconvfeat.LearnedConvClassifier` parameters overriding the
        learned arms' recipe: ``LEARNED`` for design ``"cv"``,
        ``LEARNED_LARGE`` (with augmentation for the datasets of
        ``AUGMENTED``) for ``"holdout"``; see :func:`learned_recipe`. The
        recipe used is in ``results["learned_training"]``.

    Returns
    -------
    results : dict
        As described in ``docs/results-schema.md``.
    extras : dict
        Only when ``return_extras`` is True.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat.study import run_study
    >>> digits = load_digits()
    >>> results = run_study(digits.images, digits.target, banks=["gabor", "identity"],
    ...                     learned=False, transfer=False, n_splits=2, n_repeats=1)
    >>> [arm["label"] for arm in results["arms"]]
    ['Gabor, fixed', 'Raw pixels (no conv)']
    >>> 0 <= results["arms"][0]["ci_low"] <= results["arms"][0]["ci_high"] <= 1
    True
    """
    started = time.perf_counter()
    banks = check_banks(banks)
    depths = sorted(set(depths))
    if not depths or not set(depths) <= set(DEPTHS):
        raise ValueError(f"The 'depths' parameter of run_study must hold depths among {DEPTHS}. Got {depths!r}.")
    images, target = _as_images(images), np.asarray(target)
    if (test_images is None) != (test_target is None):
        raise ValueError("Give both test_images and test_target, or neither.")
    learner_cls, unavailable = _load_learner() if learned or transfer else (None, None)
    _check_device(device, learner_cls)
    n_classes = len(np.unique(target))
    skipped, run_learned, run_transfer = _skipped(learned, transfer, unavailable, n_classes, depths)

    if test_images is None:
        design, seeds = "cv", [random_state] * (n_splits * n_repeats)
        splits = _cv_splits(target, n_splits, n_repeats, random_state, train_size)
        params = {"n_splits": n_splits, "n_repeats": n_repeats}
        n_train_pool = len(target)
    else:
        images, target, n_train_pool = _with_test_set(images, target, test_images, test_target)
        images = _standardise_channels(images, n_train_pool)
        design, seeds = "holdout", [random_state + i for i in range(n_seeds)]
        splits = _holdout_splits(target, n_train_pool, n_seeds, random_state, train_size)
        params = {"n_seeds": n_seeds}
    evaluation = _Evaluation(design, splits, target, margin, random_state=random_state, **params)
    # CV: the same models on every split; holdout: one seed per repeat, or they would all agree.
    recipe = learned_recipe(design, dataset, _check_learned_params(learned_params))
    arm_sets = [_make_arms(banks, depths, classifier, learner_cls, recipe if run_learned else None, seed, device)
                for seed in seeds]
    arms = arm_sets[0]
    if not arms:
        raise ValueError(
            f"run_study has no arm to run: depth {depths[-1]} builds arms for the banks {DEEP_BANKS} only "
            f"(given {banks}) and learned=False."
        )
    train_images, train_target = images[:n_train_pool], target[:n_train_pool]
    total = len(arms) * len(splits) + (_n_transfer_tasks(train_target, random_state) if run_transfer else 0)
    done = []

    def report(key):
        done.append(key)
        if progress is not None:
            progress(len(done), total, " ".join(map(str, key)))

    tasks = [
        ((arm.name, i), (_evaluate, (arm, images, target, train, test),
                         {"keep_model": i == 0, "keep_pred": design == "holdout"}))
        for i, (train, test) in enumerate(splits)
        for arm in arm_sets[i]
    ]
    runs = _run_parallel(tasks, n_jobs, report, torch_tasks=run_learned)
    first = {arm.name: runs[(arm.name, 0)] for arm in arms}
    arm_results = [
        evaluation.summarise(arm, [runs[(arm.name, i)] for i in range(len(splits))],
                             _n_features(first[arm.name]["model"]))
        for arm in arms
    ]
    best = best_fixed_arm(arm_results)
    reference = "learned" + _suffix(depths[-1]) if run_learned else best["name"]
    results = {
        "dataset": dataset,
        "n_samples": len(target),
        "n_classes": int(n_classes),
        "image_shape": list(images.shape[1:]),
        "classifier": classifier,
        "evaluation": evaluation.describe(),
        "learned_training": _learned_training(recipe, device),
        "margin": margin,
        "alpha": alpha,
        "arms": arm_results,
        "best_fixed": best["name"],
        "reference": reference,
        "comparisons": _comparisons(arm_results, reference, evaluation, alpha),
        "transfer": (
            _transfer_study(learner_cls, train_images, train_target, depths[-1], classifier, random_state,
                            train_size, device, n_jobs, report, recipe)
            if run_transfer else None
        ),
        "skipped_arms": skipped,
    }
    results["baseline"] = _baseline(results, reference)
    results["verdicts"] = _verdicts(results, evaluation, alpha)
    results["elapsed_s"] = time.perf_counter() - started
    results["versions"] = _versions()
    if not return_extras:
        return results
    reference_arm = next(a for a in arm_results if a["name"] == reference)
    return results, _extras(arms, first, best, reference_arm, images, target, splits[0][1])
