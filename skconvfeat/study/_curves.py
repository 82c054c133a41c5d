"""Learning curves under one protocol: does a CNN with fixed kernels classify as well, at every data size?

Every arm -- fixed banks with a logistic head, the same network with its kernels frozen or trained in
PyTorch, raw pixels, and the wide data-derived preset with its ridge head -- is trained on the same
class-balanced subsets of the training images and chosen on data held out *from those subsets*:

* **Selection.** Each arm has the same number of candidate settings (``CurveProtocol.n_candidates``):
  the logistic head's ``C``, the Adam learning rate, the ridge penalty. A subset of at least
  ``cv_below`` images holds out a stratified ``validation_fraction``; every arm fits on the rest and
  is chosen, and stopped, on it. Smaller subsets (where a tenth is a handful of images) choose by
  stratified ``cv_folds``-fold cross-validation on the subset and refit the chosen setting on all of
  it -- for a network, for the number of optimiser steps the folds chose. With ``grid_extensions``
  a grid whose end wins grows past it (``follow_grid``), by the same rule for every arm.
* **Convergence.** A network trains with a constant learning rate and is scored on the held-out
  images every ``check_steps`` optimiser steps; it stops after ``patience`` checks without a score
  better than its best by more than ``min_improvement`` and keeps that best check. Its budget
  follows the data size (``budget_steps``): a network that reaches it still improving is *not
  converged*, and a comparison resting on it is judged only when
  that network is already significantly ahead (``_stats.is_judged``: more training keeps its best check).
* **Test.** Each final model scores the official test images once; the number of test evaluations
  is counted in the results.

Each finished (arm, size, seed) is written at once to ``cache_dir`` (one small JSON file, replaced
atomically), so a stopped run picks up where it stopped.
"""

import base64
import copy
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .._banks import list_banks
from .._heads import GramRidgeClassifier
from .._presets import PRESETS, make_preset
from .._fitted import resolved_preprocessing
from ._design import DEPTHS, description
from ._environment import environment, environment_counts
from ._stats import accuracy_interval, holm, is_judged, paired_holdout_test, wilson_interval

__all__ = ["CurveProtocol", "CURVE_KINDS", "balanced_subset", "curve_arms", "run_curves", "seeds_for_size"]

# What each kind of arm is: how its kernels are obtained and which head is trained.
CURVE_KINDS = {
    "raw": "raw pixels, logistic head (no convolution)",
    "fixed": "fixed bank, logistic head (scikit-learn)",
    "frozen": "random kernels frozen, linear head trained by Adam (the learned arm's network and optimiser)",
    "learned": "random start, kernels and linear head trained by Adam",
    "preset": "wide data-derived layer (make_preset), ridge head",
    "mixing": "the bank's spatial kernels frozen, a learned 1x1 recombination of each layer's maps and the linear "
              "head trained by Adam (LearnedConvClassifier(train='mixing'))",
}
# How each kind of network arm is trained (LearnedConvClassifier's ``train``).
_NETWORK_TRAIN = {"frozen": "head", "learned": "all", "mixing": "mixing"}
# Augmentations a network arm may train with: LearnedConvClassifier's ``augment`` (shifts of up to an
# eighth of the image by zero padding and a random crop; mirror images only where classes are mirror-symmetric,
# as CIFAR-10's and not digits').
AUGMENTATIONS = {"none": False, "crops": {"horizontal_flip": False}, "crops+flips": True}
# Heads a network arm may have: LearnedConvClassifier's ``head`` ("mlp": affine -> ReLU -> affine with
# MLP_HIDDEN_UNITS hidden units, the two-layer fully-connected head of a small CNN, as the study's MLP).
HEADS = ("linear", "mlp")
MLP_HIDDEN_UNITS = 100


@dataclass(frozen=True)
class CurveProtocol:
    """The rules every arm of a learning curve is trained, chosen and stopped by.

    The defaults are the ones ``docs/results.md`` reports; each says why it is what it is.
    """

    #: Share of a subset held out to choose settings and stop training, for subsets of at least
    #: ``cv_below`` images (a fifth: 200 validation images at 1,000, enough to tell 1-point steps).
    validation_fraction: float = 0.2
    #: Below this many images a held-out fifth is too few to choose by: cross-validate instead.
    cv_below: int = 1000
    #: Folds of that cross-validation (3: every image validates once, at 3/5 of the cost of 5 folds).
    cv_folds: int = 3
    #: Inverse penalty of the logistic head on standardised features, a decade apart: a first run
    #: with (0.01, 0.1, 1) chose its edge, 1, on MNIST at 300 images.
    logistic_C: tuple = (0.01, 0.1, 1.0, 10.0)
    #: Adam step sizes (constant), half a decade apart around the study's 2e-3 and 1e-2 recipes
    #: (a first run with 1e-3..1e-2 chose its edge, 1e-2, at 300 images).
    learning_rates: tuple = (1e-3, 3e-3, 1e-2, 3e-2)
    #: Ridge penalty per training row of the preset's head (GramRidgeClassifier's scale).
    ridge_alphas: tuple = (1e-4, 1e-3, 1e-2, 1e-1)
    #: Optimiser steps between two validation checks of a network.
    check_steps: int = 100
    #: Checks without a better validation accuracy before a network stops: 1,000 steps at the
    #: default, or 10 epochs once an epoch is longer than ``check_steps`` (5 stopped 1,000-image
    #: networks after 400 steps on 200 validation images, where ties are common).
    patience: int = 10
    #: A network's budget: at least this many steps ...
    min_budget_steps: int = 3000
    #: ... or this many passes over its training images, whichever is more.
    min_budget_epochs: int = 60
    #: Images per Adam step, at most; small subsets take an eighth of their images a step.
    batch_size: int = 128
    #: Adam's L2 penalty (the study's recipe).
    weight_decay: float = 1e-4
    #: Smallest rise of the validation accuracy (a fraction) that counts as improving, for the patience
    #: rule and for the best check kept. 0 (any rise) is the rule of the recorded curves; there, on a few
    #: thousand validation images, the noise of a network already on its plateau sets a new best by an
    #: image or two often enough that a run reaching its budget reads "still improving" (a stationary
    #: curve of n checks has its maximum among the last ``patience`` with probability patience / n).
    min_improvement: float = 0.0
    #: Candidates a grid may grow by past the end it chose. When an arm's best setting is its grid's first
    #: or last, the value one step further out (the grid's own step there) is tried, and the next again
    #: while the newest wins, up to this many extra candidates per arm: the same rule for every grid (C,
    #: learning rate, ridge penalty), so the arms' budgets stay equal, and each extra candidate is
    #: recorded. 0 (fixed grids) is the rule of the recorded curves; from 3,000 CIFAR-10 images every
    #: 2-layer arm chose an end there (docs/results.md, "What the grids' ends cost").
    grid_extensions: int = 0

    @property
    def n_candidates(self):
        """Candidate settings per arm: the same for every arm (equal tuning budgets)."""
        return len(self.logistic_C)

    def check(self):
        """``self`` if it is a valid protocol, else a ValueError naming the field."""
        sizes = {len(self.logistic_C), len(self.learning_rates), len(self.ridge_alphas)}
        if len(sizes) != 1:
            raise ValueError(
                "CurveProtocol gives every arm the same tuning budget: logistic_C, learning_rates and "
                f"ridge_alphas must have the same length. Got {len(self.logistic_C)}, "
                f"{len(self.learning_rates)} and {len(self.ridge_alphas)}."
            )
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1). Got {self.validation_fraction!r}.")
        if not 0 <= self.min_improvement < 1:
            raise ValueError(f"min_improvement must be in [0, 1). Got {self.min_improvement!r}.")
        if not isinstance(self.grid_extensions, int) or isinstance(self.grid_extensions, bool) or self.grid_extensions < 0:
            raise ValueError(f"CurveProtocol.grid_extensions must be a non-negative integer. Got {self.grid_extensions!r}.")
        for name in ("logistic_C", "learning_rates", "ridge_alphas"):
            grid = getattr(self, name)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in grid):
                raise ValueError(f"CurveProtocol.{name} must hold positive numbers. Got {grid!r}.")
            if self.grid_extensions and list(grid) != sorted(set(grid)):
                raise ValueError(f"CurveProtocol.{name} must be in increasing order when grid_extensions grows "
                                 f"the grids past their ends. Got {grid!r}.")
        for name in ("cv_folds", "check_steps", "patience", "min_budget_steps", "min_budget_epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (2 if name == "cv_folds" else 1):
                raise ValueError(f"CurveProtocol.{name} must be a positive integer. Got {getattr(self, name)!r}.")
        return self

    def batch(self, n_fit):
        """Images per Adam step on ``n_fit`` training images: at least 8 steps an epoch."""
        return int(max(8, min(self.batch_size, n_fit // 8)))

    def budget_steps(self, n_fit):
        """The most optimiser steps a network may take on ``n_fit`` images."""
        epoch = math.ceil(n_fit / self.batch(n_fit))
        return max(self.min_budget_steps, self.min_budget_epochs * epoch)

    def digest(self):
        """A short hash of every rule: cached results of another protocol are never reused.

        A rule added after curves were recorded enters the hash only where it departs from what was
        done before it (``_RULES_ADDED_LATER``), so those records keep their digest.
        """
        rules = {name: value for name, value in asdict(self).items()
                 if _RULES_ADDED_LATER.get(name, _ABSENT) != value}
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:12]

    def best_check(self, curve):
        """Index of the check a run keeps: the last one that beat every earlier check by ``min_improvement``."""
        best = 0
        for i, score in enumerate(curve):
            if score > curve[best] + self.min_improvement:
                best = i
        return best


_ABSENT = object()
# Rules added to CurveProtocol after the recorded curves, with the value that behaves as before them.
_RULES_ADDED_LATER = {"min_improvement": 0.0, "grid_extensions": 0}


def seeds_for_size(size):
    """Seeds (repeats with another subset) at ``size`` images: 5 below 1,000, 3 up to 10,000, then 1."""
    return 5 if size < 1000 else 3 if size <= 10_000 else 1


def balanced_subset(target, size, seed):
    """Indices of ``size`` images with the classes as equal as they can be (extras to random classes).

    When a class has fewer images than an equal share, it gives all it has and the other classes share
    the rest equally (so ``size`` equal to the whole set is the whole set: MNIST's classes are unequal).
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(target, return_counts=True)
    if size > target.size:
        raise ValueError(f"Cannot draw {size} training images from {target.size}.")
    share = np.full(classes.size, size // classes.size)
    share[rng.choice(classes.size, size % classes.size, replace=False)] += 1
    if np.any(share > counts):
        share = _fill_classes(counts, size, rng)
    picked = [rng.choice(np.flatnonzero(target == c), k, replace=False) for c, k in zip(classes, share)]
    return np.sort(np.concatenate(picked))


def _fill_classes(counts, size, rng):
    """Images per class summing to ``size``, none above its count, the rest as equal as they can be."""
    share = np.zeros_like(counts)
    while True:
        room = np.flatnonzero(share < counts)
        left = size - int(share.sum())
        if left < room.size or left == 0:  # one more to ``left`` random classes with room
            share[rng.choice(room, left, replace=False)] += 1
            return share
        share[room] = np.minimum(counts[room], share[room] + left // room.size)


@dataclass(frozen=True)
class CurveArm:
    """One arm of the curves: where its kernels come from, its depth, and how it is trained."""

    name: str
    label: str
    kind: str
    depth: int
    bank: str = "random"
    preset: str = None
    #: Augmentation of the training batches, one of ``AUGMENTATIONS`` (networks only).
    augment: str = "none"
    #: The network's head, one of ``HEADS`` (networks only; the fixed arms' head is logistic regression).
    head: str = "linear"
    #: A batch normalisation after each layer (LearnedConvClassifier's ``batch_norm``; trained networks only).
    batch_norm: bool = False

    @property
    def variant(self):
        """How this network differs from the plain pair it is compared like ("augmented", "mlp", "bn"), or None."""
        if self.augment != "none":
            return "augmented"
        return "mlp" if self.head != "linear" else "bn" if self.batch_norm else None


def curve_arms(depths, banks=("random", "gabor", "kmeans"), preset=None, mixing=False, augment="none",
               head="linear", batch_norm=False):
    """The arms of a learning curve, at every depth of ``depths``.

    Per depth: each fixed bank with the logistic head, the same network with random kernels frozen
    (Adam head) and trained (the learned arm); raw pixels once; the wide ``preset`` once if given.
    With ``mixing``, per depth and bank that a torch network can start from (plain convolutions: not
    the whitened k-means layer), the bank's kernels frozen with a learned 1x1 mixing after each layer;
    ``mixing`` a sequence of banks instead of True: only those banks get the mixing arms.
    With ``augment`` (a key of ``AUGMENTATIONS`` other than "none"), per depth the frozen and the learned
    network once more, both trained on augmented batches: the logistic heads of the fixed arms see no
    augmentation, so these two are the pair that compares kernels under the same augmentation.
    With ``head="mlp"``, per depth the frozen and the learned network once more with an MLP head (not
    augmented): the pair that compares kernels under the same non-linear head.
    With ``batch_norm`` (and ``mixing``), the mixing arms have a batch normalisation after each layer's mixing,
    as the cited mixing networks, and are compared with the learned network given the same normalisation, an
    arm of its own.
    """
    if batch_norm and not mixing:
        raise ValueError("The 'batch_norm' parameter of curve_arms normalises the mixing arms: it needs mixing=True.")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"The 'augment' parameter of curve_arms must be one of {sorted(AUGMENTATIONS)}. "
                         f"Got {augment!r} instead.")
    if head not in HEADS:
        raise ValueError(f"The 'head' parameter of curve_arms must be one of {list(HEADS)}. Got {head!r} instead.")
    mixing_banks = _mixing_banks(mixing, banks)
    arms = [CurveArm("raw", "Raw pixels (no conv)", "raw", 0, "identity")]
    for depth in depths:
        suffix = f", {depth} layer{'s' if depth > 1 else ''}"
        arms += [CurveArm(f"fixed-{bank}-d{depth}", f"{bank.capitalize()}, fixed{suffix}", "fixed", depth, bank)
                 for bank in banks]
        arms.append(CurveArm(f"frozen-d{depth}", f"Random, frozen (Adam head){suffix}", "frozen", depth))
        arms.append(CurveArm(f"learned-d{depth}", f"Learned (random init){suffix}", "learned", depth))
        if mixing_banks:
            bn, bn_label = ("-bn", " + BN") if batch_norm else ("", "")
            if batch_norm:
                arms.append(CurveArm(f"learned-bn-d{depth}", f"Learned (random init, BN){suffix}", "learned", depth,
                                     batch_norm=True))
            arms += [CurveArm(f"mixing-{bank}{bn}-d{depth}", f"{bank.capitalize()}, frozen + learned mixing{bn_label}"
                              f"{suffix}", "mixing", depth, bank, batch_norm=batch_norm)
                     for bank in mixing_banks]
        if augment != "none":
            arms += _network_pair(depth, suffix, augment.replace("+", "-"), f"Adam head, {augment}", augment,
                                  augment=augment)
        if head != "linear":
            arms += _network_pair(depth, suffix, head, f"Adam {head.upper()} head", f"{head.upper()} head", head=head)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}; choose from {sorted(PRESETS)}.")
        arms.append(CurveArm(f"preset-{preset}", f"Preset {preset} (ridge head)", "preset", 1, preset=preset))
    return arms


def _network_pair(depth, suffix, tag, frozen_how, learned_how, **variant):
    """The frozen and the learned network of ``depth`` trained as ``variant`` (``augment``, ``head``), their
    names marked by ``tag`` and their labels by ``frozen_how`` and ``learned_how``."""
    return [CurveArm(f"frozen-{tag}-d{depth}", f"Random, frozen ({frozen_how}){suffix}", "frozen", depth, **variant),
            CurveArm(f"learned-{tag}-d{depth}", f"Learned (random init, {learned_how}){suffix}", "learned", depth,
                     **variant)]


def _mixing_banks(mixing, banks):
    """The banks whose frozen kernels get a learned mixing: with True every plain convolution of ``banks``, else
    the banks ``mixing`` names (none when it is False or empty)."""
    if mixing is True:
        return [bank for bank in banks if _plain_convolution(bank)]
    named = list(mixing or ())
    unknown = [bank for bank in named if bank not in banks]
    if unknown:
        raise ValueError(f"The 'mixing' parameter of curve_arms must name banks among the fixed banks "
                         f"{list(banks)}. Got {unknown!r} instead.")
    refused = [bank for bank in named if not _plain_convolution(bank)]
    if refused:
        raise ValueError(f"The 'mixing' parameter of curve_arms names {refused}, whose layer is not a plain "
                         "convolution a network can train (it whitens its patches); choose among banks like "
                         "'random' and 'gabor'.")
    return named


def _plain_convolution(bank):
    """Whether the study's layer of ``bank`` is a plain convolution, which a torch network can train."""
    return not any(resolved_preprocessing(description(bank, 1, 0).get_params(deep=False)))


# -- selection splits ----------------------------------------------------------


def selection_splits(target, protocol, seed):
    """``(splits, refit)``: (fit, validation) index pairs into ``target``, and whether to refit on all.

    One stratified hold-out at ``cv_below`` images and more (the model fitted on its fit part is the
    final one), else stratified k-fold cross-validation, after which the chosen setting is refitted.
    """
    indices = np.arange(target.size)
    if target.size >= protocol.cv_below:
        fit, valid = train_test_split(indices, test_size=protocol.validation_fraction, stratify=target,
                                      random_state=seed)
        return [(fit, valid)], False
    folds = min(protocol.cv_folds, int(np.unique(target, return_counts=True)[1].min()))
    if folds < 2:
        raise ValueError(f"{target.size} training images leave fewer than 2 of some class: nothing to validate on.")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(indices, target)), True


# -- the grid every arm chooses on ---------------------------------------------------------


def follow_grid(grid, score, extensions):
    """Score each value of ``grid`` (increasing), then grow it past the end that wins.

    ``score(value)`` is a value's held-out accuracy. While the best value so far is the first or the last
    tried and fewer than ``extensions`` values were added, the next value out is scored: the end times
    the grid's own step there (its first or last three values set it, so a grid alternating 1 and 3
    goes on alternating). It stays only if it beats every earlier score; otherwise the growth stops.
    Returns ``(values, scores, best)``: every value tried in increasing order, their scores, and the
    index of the chosen one (the first of equal bests, as ``np.argmax``).
    """
    values, scores = list(grid), [score(v) for v in grid]
    best = int(np.argmax(scores))
    for _ in range(extensions):
        if len(values) < 2 or best not in (0, len(values) - 1):  # one value has no step to follow
            break
        low = best == 0
        value = _next_out(values, low)
        new = score(value)
        at = 0 if low else len(values)
        values.insert(at, value)
        scores.insert(at, new)
        previous = best + 1 if low else best  # the old best, shifted when a value went in before it
        if new <= scores[previous]:
            return values, scores, previous
        best = 0 if low else len(values) - 1
    return values, scores, best


def _next_out(values, low):
    """The value one step past the first (``low``) or the last of ``values``: the step two places in, where
    there is one (3e-4 after 1e-3, 3e-3, 1e-2), else the one step there is; rounded to 12 digits."""
    ends = values[:3] if low else values[::-1][:3]
    step = ends[1] / ends[2] if len(ends) == 3 else ends[0] / ends[1]
    return float(f"{ends[0] * step:.12g}")


def _choose(grid, score, protocol, known):
    """``(chosen, selection)``: the value ``follow_grid`` chooses on ``grid`` and what a record keeps of the
    choice (``_selection_record``). Values in ``known`` (value -> held-out score measured before) are not
    scored again, so growing a record's grid on replays its choice and trains only the values past it;
    ``chosen`` is None when the choice is one of them (nothing new to fit)."""
    known = known or {}
    values, scores, best = follow_grid(grid, lambda v: known[v] if v in known else score(v), protocol.grid_extensions)
    return (None if values[best] in known else values[best]), _selection_record(grid, values, scores, best)


# -- the three ways of training an arm ---------------------------------------------


def _logistic(C, seed):
    # lbfgs on standardised features; 2,000 iterations converge on every arm of the curves.
    return LogisticRegression(C=C, max_iter=2000, random_state=seed)


def _features(description, X_fit, others):
    conv = clone(description)
    fitted = conv.fit_transform(X_fit)
    return conv, fitted, [conv.transform(x) for x in others]


def _select_logistic(description, X, y, splits, refit, protocol, seed, known=None):
    """Choose C on the splits; the final (conv, scaler, head) and what selection saw."""
    prepared = []  # per split: the layer, the scaler, and the standardised fit and held-out features
    for fit, valid in splits:
        conv, f_fit, (f_valid,) = _features(description, X[fit], [X[valid]])
        scaler = StandardScaler().fit(f_fit)
        prepared.append((conv, scaler, scaler.transform(f_fit), y[fit], scaler.transform(f_valid), y[valid]))
    heads = {}  # C -> the head fitted on the last split (the final one when there is no refit)

    def score(C):
        fitted = [_logistic(C, seed).fit(f_fit, y_fit) for _, _, f_fit, y_fit, _, _ in prepared]
        heads[C] = fitted[-1]
        return float(np.mean([h.score(f_valid, y_valid) for h, (*_, f_valid, y_valid) in zip(fitted, prepared)]))

    C, selection = _choose(protocol.logistic_C, score, protocol, known)
    if C is None:
        return None, selection
    if refit:
        prepared.clear()  # the folds' features are not needed for the refit on all
        conv, f_all, _ = _features(description, X, [])
        scaler = StandardScaler().fit(f_all)
        head = _logistic(C, seed).fit(scaler.transform(f_all), y)
    else:
        conv, scaler = prepared[-1][:2]
        head = heads[C]
    converged = bool(np.all(head.n_iter_ < head.max_iter))

    def predict(X_test):
        return head.predict(scaler.transform(conv.transform(X_test)))

    return predict, {"setting": {"C": C}, "n_features": int(head.coef_.shape[1]), "converged": converged, **selection}


def _selection_record(grid, values, scores, best):
    """What a record keeps of a choice on a grid: every candidate tried and its held-out score, the
    best score, whether the choice is at an end of what was tried, and how many values the grid grew by."""
    return {"validation_accuracy": float(scores[best]), "validation_scores": [float(v) for v in scores],
            "candidates": list(values), "extra_candidates": len(values) - len(grid),
            "at_grid_edge": best in (0, len(values) - 1)}


def _ridge_scorer(f_fit, y_fit, f_valid, y_valid):
    """``score(alpha) -> (accuracy, head)``: a ridge head with penalty ``alpha`` per training row, fitted on
    ``(f_fit, y_fit)`` and scored on the held-out rows.

    With fewer rows than features scikit-learn's ridge solves the small n x n dual per penalty;
    otherwise the Gram matrix is accumulated once and each penalty solved from it (the head returned is
    that one accumulator, set to the penalty scored last).
    """
    if f_fit.shape[0] <= f_fit.shape[1]:
        def score(alpha):
            head = _ridge_on_all(f_fit, y_fit, alpha)
            return float(head.score(f_valid, y_valid)), head
        return score
    gram = GramRidgeClassifier(standardize=True)  # the penalty is chosen below, one alpha at a time
    gram.partial_fit(f_fit, y_fit, classes=np.unique(y_fit))

    def score(alpha):
        gram.set_params(alphas=(alpha,)).select_alpha(f_valid, y_valid)
        return float(gram.validation_scores_[0]), gram
    return score


def _ridge_on_all(f_all, y, alpha):
    """A ridge head with penalty ``alpha`` per row fitted on every row of ``f_all`` (nothing held out): the dual
    of scikit-learn's ridge with fewer rows than features, else the accumulated Gram matrix."""
    if f_all.shape[0] <= f_all.shape[1]:
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha * len(y))).fit(f_all, y)
    return GramRidgeClassifier(alphas=(alpha,), standardize=True).partial_fit(f_all, y, classes=np.unique(y))


def _select_ridge(preset, X, y, splits, refit, protocol, seed, known=None):
    """The preset's features once per split, every penalty scored on the held-out part."""
    scorers = []
    for fit, valid in splits:
        conv, f_fit, (f_valid,) = _features(make_preset(preset, random_state=seed), X[fit], [X[valid]])
        scorers.append(_ridge_scorer(f_fit, y[fit], f_valid, y[valid]))
        n_features = int(f_valid.shape[1])

    def score(alpha):
        return float(np.mean([scorer(alpha)[0] for scorer in scorers]))

    alpha, selection = _choose(protocol.ridge_alphas, score, protocol, known)
    if alpha is None:
        return None, selection
    if refit:
        scorers.clear()
        conv, f_all, _ = _features(make_preset(preset, random_state=seed), X, [])
        head = _ridge_on_all(f_all, y, alpha)
    else:
        # fitted on the fit part with the chosen penalty, as every hold-out arm is (scored again: the Gram
        # accumulator holds the penalty scored last)
        head = scorers[-1](alpha)[1]

    def predict(X_test):
        return head.predict(conv.transform(X_test))

    return predict, {"setting": {"alpha": alpha}, "converged": True, "n_features": n_features,
                     **selection}


def train_to_plateau(model, X_fit, y_fit, X_valid, y_valid, protocol):
    """Train ``model`` (a LearnedConvClassifier) check by check until the validation score plateaus.

    Returns ``(best_model, curve, converged, steps_per_check)``: the model at its best check, the
    validation accuracy after each check, and whether it stopped on a plateau (``patience`` checks
    without improvement) rather than at its budget.
    """
    batch = protocol.batch(len(y_fit))
    epoch_steps = math.ceil(len(y_fit) / batch)
    epochs_per_check = max(1, round(protocol.check_steps / epoch_steps))
    steps_per_check = epochs_per_check * epoch_steps
    n_checks = math.ceil(protocol.budget_steps(len(y_fit)) / steps_per_check)
    model = clone(model).set_params(batch_size=batch, max_epochs=epochs_per_check, warm_start=True,
                                    early_stopping=False, lr_schedule="constant")
    curve, best = [], None
    for _ in range(n_checks):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the plateau rule below judges, not the loss
            model.fit(X_fit, y_fit)
        curve.append(float(model.score(X_valid, y_valid)))
        best_check = protocol.best_check(curve)
        if best_check == len(curve) - 1:
            best = copy.deepcopy(model)
        elif len(curve) - 1 - best_check >= protocol.patience:
            return best, curve, True, steps_per_check
    return best, curve, False, steps_per_check


def _mean_curve(curves):
    """Mean over folds of validation curves of different lengths (a stopped fold keeps its last score)."""
    longest = max(len(c) for c in curves)
    return np.mean([c + [c[-1]] * (longest - len(c)) for c in curves], axis=0)


def _select_network(model, X, y, splits, refit, protocol, known=None):
    """Choose the learning rate (and, when refitting, the number of steps) on the splits."""
    trained = {}  # learning rate -> (the folds' runs, the best check of their mean curve)

    def score(lr):
        candidate = clone(model).set_params(learning_rate=lr)
        runs = [train_to_plateau(candidate, X[fit], y[fit], X[valid], y[valid], protocol) for fit, valid in splits]
        curve = _mean_curve([run[1] for run in runs])
        trained[lr] = runs, protocol.best_check(curve)
        return float(curve[trained[lr][1]])

    lr, selection = _choose(protocol.learning_rates, score, protocol, known)
    if lr is None:
        return None, selection
    runs, best_check = trained[lr]
    converged = all(run[2] for run in runs)
    steps = (best_check + 1) * runs[0][3]
    refit_note = None
    if refit:
        final, refit_note = refit_network(model, X, y, lr, steps, selection["validation_accuracy"], runs, protocol)
    else:
        final = runs[0][0]
    budget = protocol.budget_steps(len(splits[0][0]))
    record = {"setting": {"learning_rate": lr}, "converged": converged, "steps": int(steps),
              "budget_steps": int(budget), "n_features": int(final.n_features_out_),
              **selection}
    if refit_note is not None:
        record["refit"] = refit_note
    return final.predict, record


# A refitted network that fits its own training images this much worse than the chosen setting scored on
# held-out images has diverged (Adam at a high rate can end a fixed number of steps on a spike: one MNIST
# network validated at 87.7% and refitted to 49%). Sound refits fit their training images better than
# held-out ones, so the rule never fires on them.
_DIVERGED_BELOW_VALIDATION = 0.05


def refit_network(model, X, y, lr, steps, validation_accuracy, runs, protocol):
    """The chosen setting trained on the whole subset for the chosen number of steps: ``(model, note)``.

    A refit that diverged (see ``_DIVERGED_BELOW_VALIDATION``; judged on the training images only) is
    replaced by the cross-validation model with the best held-out score at its best check, and
    ``note`` says so; else ``note`` is None.
    """
    batch = protocol.batch(len(y))
    epochs = max(1, round(steps / math.ceil(len(y) / batch)))
    final = clone(model).set_params(learning_rate=lr, batch_size=batch, max_epochs=epochs,
                                    early_stopping=False, lr_schedule="constant")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            final.fit(X, y)
    except FloatingPointError:  # the loss became NaN or infinite: diverged too
        how = "a non-finite training loss"
    else:
        train_accuracy = float(final.score(X, y))
        if train_accuracy >= validation_accuracy - _DIVERGED_BELOW_VALIDATION:
            return final, None
        how = f"training accuracy {train_accuracy:.3f} against {validation_accuracy:.3f} validated"
    fold = max(range(len(runs)), key=lambda i: runs[i][1][protocol.best_check(runs[i][1])])
    return runs[fold][0], f"diverged ({how}): the cross-validation model of fold {fold + 1} kept"


# -- one (arm, size, seed) ---------------------------------------------------------------


def _description(arm, seed):
    """The study's one network description of ``arm`` (raw pixels: the 1x1 identity layer)."""
    return description(arm.bank, max(arm.depth, 1), seed)


def _network(arm, seed, device, protocol):
    from ..learned import LearnedConvClassifier

    return LearnedConvClassifier(_description(arm, seed), head=arm.head, hidden_units=MLP_HIDDEN_UNITS,
                                 train=_NETWORK_TRAIN[arm.kind],
                                 augment=AUGMENTATIONS[arm.augment], batch_norm=arm.batch_norm,
                                 weight_decay=protocol.weight_decay,
                                 random_state=seed, device=device)


def arm_grid(kind, protocol):
    """The grid an arm of ``kind`` chooses its setting on."""
    if kind in ("raw", "fixed"):
        return protocol.logistic_C
    return protocol.ridge_alphas if kind == "preset" else protocol.learning_rates


def fit_arm(arm, X, y, protocol, seed, device="cpu", known=None):
    """Choose and fit ``arm`` on ``(X, y)`` under ``protocol``: ``(predict, record)``.

    ``known`` (value -> held-out score) are candidates measured before, on the same splits: they are
    not trained again. When the choice is one of them, nothing new is fitted and ``predict`` is None
    (the record then holds the selection only).
    """
    splits, refit = selection_splits(y, protocol, seed)
    if arm.kind in ("raw", "fixed"):
        return _select_logistic(_description(arm, seed), X, y, splits, refit, protocol, seed, known)
    if arm.kind == "preset":
        return _select_ridge(arm.preset, X, y, splits, refit, protocol, seed, known)
    return _select_network(_network(arm, seed, device, protocol), X, y, splits, refit, protocol, known)


def _pack(correct):
    return base64.b64encode(np.packbits(correct)).decode("ascii")


def unpack_correct(text, n_test):
    """The per-test-image correctness a record stores (packed bits, base64)."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n_test].astype(bool)


def run_one(arm, images, target, test_images, test_target, size, seed, protocol, device="cpu", known=None):
    """Train ``arm`` on a balanced subset of ``size`` images (seed ``seed``) and score the test set once.

    With ``known`` (see ``fit_arm``) a choice among them returns the selection part only, marked
    ``SELECTION_ONLY``, for ``grow_record`` to merge: the test set is not scored again.
    """
    subset = balanced_subset(target, size, seed)
    X, y = images[subset], target[subset]
    wall, cpu = time.perf_counter(), time.process_time()
    predict, record = fit_arm(arm, X, y, protocol, seed, device, known)
    record.update(fit_wall=time.perf_counter() - wall, fit_cpu=time.process_time() - cpu)
    if predict is None:
        return {**record, SELECTION_ONLY: True}
    correct = predict(test_images) == test_target
    return {**record, "arm": arm.name, "size": int(size), "seed": int(seed), "test_accuracy": float(correct.mean()),
            "test_correct": _pack(correct), "n_test": int(correct.size), "protocol": protocol.digest(),
            "environment": environment()}


# -- the resumable store of finished records --------------------------------------------------


def _record_path(cache_dir, arm, size, seed):
    return Path(cache_dir) / arm / f"n{size}-s{seed}.json"


def read_record(path, field, value):
    """The JSON record at ``path`` if its ``field`` equals ``value`` and it holds test results, else None
    (absent, unreadable, foreign, or from another protocol or source): such a record is trained again."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get(field) == value
    ok = ok and isinstance(record.get("test_correct"), str) and isinstance(record.get("n_test"), int)
    return record if ok else None


def write_atomic(path, write):
    """Call ``write(binary_handle)`` on a temporary file renamed over ``path`` once complete: the file
    is whole or absent, never half-written, whatever interrupts the write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path, record):
    """Write the JSON ``record`` at ``path`` whole or not at all."""
    write_atomic(path, lambda handle: handle.write(json.dumps(record).encode()))


# -- records made under a smaller growth budget ----------------------------------------------
#
# ``follow_grid`` is a sequence: under a budget of K extra candidates its first k growth steps are those a
# budget of k takes. So a record made under k < K (the same protocol otherwise) is what K makes when its
# grid stopped growing by itself, and otherwise K goes on from it, training only the values past those it
# measured. A whole study can thus be given a larger budget at the cost of the new candidates alone.

#: Marks the selection part that ``run_one`` returns when the choice stayed among the known candidates.
SELECTION_ONLY = "selection_only"


def latest_budget(protocol, find):
    """``(found, budget)``: ``find(p)`` for ``protocol`` or, failing that, for the same protocol under each
    smaller growth budget, largest first; ``(None, None)`` when none is found."""
    for budget in range(protocol.grid_extensions, -1, -1):
        found = find(replace(protocol, grid_extensions=budget))
        if found is not None:
            return found, budget
    return None, None


def growth_to_do(record, budget, protocol, grid):
    """None when ``record``, made under a growth budget of ``budget`` candidates on ``grid``, is what
    ``protocol`` makes; else the held-out score of each candidate it measured, to go on from.

    Its grid stopped growing by itself when the choice is an inner value (the newest value lost, or no
    end won). A record grown on since it was written carries its budget as ``grid_budget``; one from
    before candidates were recorded tried ``grid`` itself. A record whose selection does not add up
    (untrusted input) is measured afresh: ``{}``.
    """
    budget = record.get("grid_budget", budget)
    if not isinstance(budget, int) or budget >= protocol.grid_extensions:
        return None
    try:
        values = record.get("candidates") or list(grid)
        scores = record["validation_scores"]
        (chosen,) = record["setting"].values()
        best = values.index(chosen)
        consistent = len(values) == len(scores) and all(isinstance(v, (int, float)) for v in values + scores)
    except (KeyError, AttributeError, TypeError, ValueError):
        return {}
    if not consistent or [v for v in values if v in grid] != list(grid):
        return {}
    exhausted = best in (0, len(values) - 1) and len(values) - len(grid) == budget
    return dict(zip(values, scores)) if exhausted else None


def grow_record(old, new, protocol):
    """The record of a grid grown on from ``old``: ``new`` itself when a new value won (its model trained
    and tested), else ``old`` with ``new``'s selection and the larger budget. Either way the fit times add
    both runs', the cost of the choice as made."""
    cost = {key: old.get(key, 0.0) + new[key] for key in ("fit_wall", "fit_cpu")}
    if not new.pop(SELECTION_ONLY, False):
        return {**new, **cost}
    return {**old, **new, **cost, "grid_budget": protocol.grid_extensions}


def reuse_or_grow(protocol, grid, find, train):
    """One (arm, size, seed) under ``protocol``: ``(record, changed)``.

    ``find(p)`` is the stored record made under protocol ``p`` or None; ``train(known)`` is ``run_one``
    with those known candidates (None: from nothing). ``changed`` says the record must be stored.
    """
    old, budget = latest_budget(protocol, find)
    if old is None:
        return train(None), True
    known = growth_to_do(old, budget, protocol, grid)
    if known is None:
        return old, False
    if not known:
        return train(None), True
    return grow_record(old, train(known), protocol), True


def stored_record(path, protocol, grid, matches, train):
    """One (arm, size, seed)'s record: ``train(None)``, or with a cache ``path`` what ``reuse_or_grow`` gives,
    written back when it changed. A record made under protocol ``p`` carries ``matches(p)`` (field, value)."""
    if path is None:
        return train(None)
    record, changed = reuse_or_grow(protocol, grid, lambda p: read_record(path, *matches(p)), train)
    if changed:
        write_record(path, record)
    return record


# -- the whole curve ----------------------------------------------------------------------


@dataclass
class CurvePlan:
    """What a curve run trains: the arms, sizes and seeds per size."""

    arms: list
    sizes: list
    seeds: dict = field(default_factory=dict)

    def tasks(self):
        # Small sizes first: a stopped run has the cheap end of every curve.
        return [(size, seed, arm) for size in self.sizes for seed in self.seeds[size] for arm in self.arms]


def plan_curves(sizes, n_train, depths=(1, 2), banks=("random", "gabor", "kmeans"), preset=None, seeds=None,
                mixing=False, augment="none", head="linear", batch_norm=False):
    """The arms, and the seeds at each size (``seeds_for_size`` unless ``seeds`` says otherwise).

    ``seeds`` is one cap for every size (at most that many, never more than the default), or one count
    per entry of ``sizes``, taken as given: fewer than the default, so the largest sizes can lose seeds
    before a size is dropped, as a short run must, or more, to repeat a size the default runs once.
    """
    counts = _seed_counts(sizes, n_train, seeds)
    sizes = sorted({n_train if s == "all" else int(s) for s in sizes})
    if not sizes or sizes[0] < 10 or sizes[-1] > n_train:
        raise ValueError(f"Training sizes must lie in [10, {n_train}]. Got {sizes}.")
    if not depths or not set(depths) <= set(DEPTHS):
        raise ValueError(f"The 'depths' parameter of plan_curves must hold depths among {DEPTHS}. Got {depths!r}.")
    unknown = sorted(set(banks) - set(list_banks()))
    if unknown or not banks:
        raise ValueError(f"The 'banks' parameter of plan_curves must name registered banks {sorted(list_banks())}. "
                         f"Got {list(banks)!r} instead.")
    return CurvePlan(curve_arms(depths, banks, preset, mixing, augment, head, batch_norm), sizes,
                     {s: list(range(counts[s])) for s in sizes})


def _seed_counts(sizes, n_train, seeds):
    """``{size: seeds}``: the default rule, one cap on it for all sizes, or the count given per size."""
    given = isinstance(seeds, (list, tuple))
    per_size = list(seeds) if given else [seeds] * len(sizes)
    if len(per_size) != len(sizes) or not all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 1) for s in per_size):
        raise ValueError("The 'seeds' parameter of plan_curves must be a positive integer, None, or one positive "
                         f"integer per training size ({len(sizes)}). Got {seeds!r}.")
    counts = {}
    for size, n in zip((n_train if s == "all" else int(s) for s in sizes), per_size):
        counts[size] = seeds_for_size(size) if n is None else n if given else min(n, seeds_for_size(size))
    return counts


def run_curves(images, target, test_images, test_target, plan, protocol=None, *, cache_dir=None,
               device="cpu", margin=0.01, progress=None):
    """Train every arm of ``plan`` at every size and seed; the learning-curve results dictionary.

    Finished records are kept in ``cache_dir`` (if given) and reused by a later call with the same
    protocol, so an interrupted run continues; records made under a smaller ``grid_extensions`` are
    reused or grown on (``reuse_or_grow``). ``progress(done, total, label)`` is called after each.
    """
    protocol = (protocol or CurveProtocol()).check()
    tasks = plan.tasks()
    records, started = [], time.perf_counter()
    for done, (size, seed, arm) in enumerate(tasks, 1):
        def train(known, arm=arm, size=size, seed=seed):
            return run_one(arm, images, target, test_images, test_target, size, seed, protocol, device, known)

        path = None if cache_dir is None else _record_path(cache_dir, arm.name, size, seed)
        records.append(stored_record(path, protocol, arm_grid(arm.kind, protocol),
                                     lambda p: ("protocol", p.digest()), train))
        if progress is not None:
            progress(done, len(tasks), f"{arm.label} at {size} images, seed {seed}")
    return summarise_curves(plan, records, protocol, margin, time.perf_counter() - started)


# -- summaries and verdicts ---------------------------------------------------------------


def _arm_size_summary(records):
    accuracies = np.array([r["test_accuracy"] for r in records])
    n_test = records[0]["n_test"]
    if len(records) == 1:
        low, high = wilson_interval(int(round(accuracies[0] * n_test)), n_test)
    else:
        _, low, high = accuracy_interval(accuracies, n_test=n_test)
    return {"accuracy": float(accuracies.mean()), "low": float(low), "high": float(high),
            "seeds": len(records), "accuracies": accuracies.tolist(),
            "validation_accuracy": float(np.mean([r["validation_accuracy"] for r in records])),
            "settings": [r["setting"] for r in records],
            "converged": all(r["converged"] for r in records),
            "refits": [f"seed {r['seed']}: {r['refit']}" for r in records if r.get("refit")],
            "at_grid_edge": sum(r["at_grid_edge"] for r in records),
            "extra_candidates": extra_candidates(records),
            "steps": [r.get("steps") for r in records], "budget_steps": [r.get("budget_steps") for r in records],
            "fit_wall": float(np.mean([r["fit_wall"] for r in records])),
            "fit_cpu": float(np.mean([r["fit_cpu"] for r in records])),
            "n_features": records[0]["n_features"]}


def extra_candidates(records):
    """Candidates tried past the grids' ends in ``records`` (none in records of fixed grids)."""
    return int(sum(r.get("extra_candidates") or 0 for r in records))


def _correct_matrix(records):
    return np.array([unpack_correct(r["test_correct"], r["n_test"]) for r in sorted(records, key=lambda r: r["seed"])])


def practical_outcome(test, alpha=0.05):
    """Outcome of a difference A - B: equal within the margin wins over significance (practical equality)."""
    if test["equivalence_p_value"] < alpha:
        return "equivalent"
    if test["p_value"] < alpha:
        return "higher" if test["mean_diff"] > 0 else "lower"
    return "inconclusive"


def _compare(by_arm, a, b, size, margin):
    test = paired_holdout_test(_correct_matrix(by_arm[a][size]), _correct_matrix(by_arm[b][size]), margin=margin)
    keys = ("mean_diff", "ci_low", "ci_high", "p_value", "equivalence_p_value", "test")
    return {"arm": a, "reference": b, "size": size, **{k: test[k] for k in keys}}


def best_fixed_on_validation(summary, depth, size, variant=None):
    """The fixed arm (any bank, frozen included) of ``depth`` with the best validation accuracy at ``size``,
    among the plain ones (no augmentation, linear head) and, if given, the frozen network named ``variant``."""
    candidates = [name for name, arm in summary.items() if arm["depth"] == depth
                  and arm["kind"] in ("fixed", "frozen") and size in arm["sizes"]
                  and (name == variant or (arm.get("augment", "none") == "none"
                                           and arm.get("head", "linear") == "linear"))]
    return max(candidates, key=lambda name: summary[name]["sizes"][size]["validation_accuracy"], default=None)


def _records_by_arm(records):
    by_arm = {}
    for r in records:
        by_arm.setdefault(r["arm"], {}).setdefault(r["size"], []).append(r)
    return by_arm


def summarise_arms(arms, sizes, records):
    """Per arm (a ``CurveArm``) and size: accuracy with its interval, settings, convergence, fit time."""
    by_arm = _records_by_arm(records)
    return {arm.name: {"label": arm.label, "kind": arm.kind, "depth": arm.depth, "augment": arm.augment,
                       "head": arm.head, "batch_norm": arm.batch_norm,
                       "sizes": {s: _arm_size_summary(by_arm[arm.name][s]) for s in sizes
                                 if s in by_arm.get(arm.name, {})}} for arm in arms}


def summarise_curves(plan, records, protocol, margin, wall):
    """Per arm and size: accuracy with its interval; per size: the comparisons and verdicts."""
    by_arm = _records_by_arm(records)
    summary = summarise_arms(plan.arms, plan.sizes, records)
    depths = sorted({arm.depth for arm in plan.arms if arm.kind == "learned"})
    comparisons = []
    for size in plan.sizes:
        family = []
        for depth in depths:
            learned = f"learned-d{depth}"
            best = best_fixed_on_validation(summary, depth, size)
            pairs = [(best, learned, "b"), (f"fixed-random-d{depth}", "raw", "a-raw"),
                     (f"fixed-random-d{depth}", learned, "a-learned"), (f"frozen-d{depth}", learned, "kernels")]
            pairs += [(arm.name, learned, "preset") for arm in plan.arms if arm.kind == "preset"]
            pairs += [(arm.name, f"learned-bn-d{depth}" if arm.batch_norm else learned, "mixing")
                      for arm in plan.arms if arm.kind == "mixing" and arm.depth == depth]
            pairs += _variant_pairs(plan, summary, depth, size)
            for a, b, role in pairs:
                if a in summary and b in summary and size in summary[a]["sizes"] and size in summary[b]["sizes"]:
                    family.append({**_compare(by_arm, a, b, size, margin), "role": role, "depth": depth})
        # One test per pair of arms: when the best fixed arm is the random one, claims (a) and (b) share
        # a test, which must count once in the size's Holm family.
        pairs = list(dict.fromkeys((c["arm"], c["reference"]) for c in family))
        adjusted = dict(zip(pairs, holm([next(c["p_value"] for c in family if (c["arm"], c["reference"]) == pair)
                                          for pair in pairs])))
        for comparison in family:
            p = adjusted[comparison["arm"], comparison["reference"]]
            comparison["holm_p"] = float(p)
            comparison["outcome"] = practical_outcome({**comparison, "p_value": p})
            converged = {name: summary[name]["sizes"][size]["converged"]
                         for name in (comparison["arm"], comparison["reference"])}
            comparison["judged"] = is_judged(comparison["outcome"], converged[comparison["arm"]],
                                             converged[comparison["reference"]])
            comparison["a_fortiori"] = comparison["judged"] and not all(converged.values())
        comparisons += family
    return {"kind": "learning_curves", "protocol": {**asdict(protocol), "digest": protocol.digest(),
                                                    "n_candidates": protocol.n_candidates},
            "sizes": plan.sizes, "seeds": {str(s): len(v) for s, v in plan.seeds.items()},
            "arms": summary, "comparisons": comparisons, "margin": margin,
            "test_evaluations": len(records), "extra_candidates": extra_candidates(records), "wall_seconds": wall,
            "environments": environment_counts(records),
            "verdicts": curve_verdicts(summary, comparisons, plan.sizes, depths, margin)}


def _variant_pairs(plan, summary, depth, size):
    """Per network variant (augmented batches, the MLP head, or batch normalisation): frozen against learned
    kernels, both of the variant ("kernels-augmented", "kernels-mlp"), and the best fixed arm chosen on
    validation, the variant's frozen network among the candidates, against them ("b-augmented", "b-mlp").
    The normalised learned network has no frozen twin (a normalisation after frozen kernels and before a linear
    head is no network of the fixed kind): the plain frozen network stands in ("kernels-bn", "b-bn"), so
    claim (b) is also asked against the stronger learned baseline."""
    pairs = []
    for learned in (a for a in plan.arms if a.kind == "learned" and a.depth == depth and a.variant):
        frozen = next((a.name for a in plan.arms if a.kind == "frozen" and a.depth == depth
                       and (a.augment, a.head) == (learned.augment, learned.head)), None)
        pairs += [(frozen, learned.name, f"kernels-{learned.variant}"),
                  (best_fixed_on_validation(summary, depth, size, frozen), learned.name, f"b-{learned.variant}")]
    return pairs


def crossover(comparisons, sizes, role="b", depth=1):
    """``(low, high)``: learned kernels beat fixed from ``high`` images on (at every larger size), and not
    at ``low``, the size before (None when never, or when already at the smallest size)."""
    outcomes = {c["size"]: c for c in comparisons if c["role"] == role and c["depth"] == depth}
    tested = [s for s in sizes if s in outcomes]
    start = None
    for size in reversed(tested):
        c = outcomes[size]
        if c["judged"] and c["outcome"] == "lower":  # fixed arm - learned < 0: learned better
            start = size
        else:
            break
    if start is None:
        return None
    before = [s for s in tested if s < start]
    return (before[-1] if before else None, start)


def _sizes_text(sizes):
    return ", ".join(f"{s:,}" for s in sizes)


def outcomes_text(outcomes, reference, margin):
    """``outcomes`` ({outcome: [sizes]}) as a sentence, naming only the outcomes that occurred."""
    phrases = {"higher": f"above {reference} at {{}} images", "lower": f"below {reference} at {{}} images",
               "equivalent": f"equal to {reference} within ±{margin * 100:g} points at {{}} images",
               "inconclusive": f"undecided against {reference} at {{}} images",
               "not judged": f"not judged against {reference} at {{}} images (a network had not converged)"}
    parts = [phrase.format(_sizes_text(outcomes[key])) for key, phrase in phrases.items() if outcomes.get(key)]
    return "; ".join(parts) if parts else f"not compared with {reference}"


def curve_verdicts(summary, comparisons, sizes, depths, margin):
    """One verdict a claim and depth, naming the sizes at which each outcome holds."""
    verdicts = []
    for depth in depths:
        by = {}
        for c in (c for c in comparisons if c["depth"] == depth):
            key = "not judged" if not c["judged"] else c["outcome"]
            by.setdefault(c["role"], {}).setdefault(key, []).append(c["size"])
        cross = crossover(comparisons, sizes, "b", depth)
        cross_text = ("no size was found from which learned kernels beat the best fixed arm at every larger size "
                      "tested" if cross is None else f"learned kernels beat the best fixed arm from {cross[1]:,} "
                      "images on" + (f" (not at {cross[0]:,})" if cross[0] else " (at every size tested)"))
        verdicts.append({
            "claim": "b", "depth": depth, "crossover": cross,
            "text": (f"Depth {depth}: the best fixed arm (chosen on validation) is "
                     f"{outcomes_text(by.get('b', {}), 'learned kernels', margin)}. So {cross_text}."),
        })
        verdicts.append({
            "claim": "a", "depth": depth,
            "text": (f"Depth {depth}: random fixed kernels are {outcomes_text(by.get('a-raw', {}), 'raw pixels', margin)}"
                     f"; they are {outcomes_text(by.get('a-learned', {}), 'learned kernels', margin)}."),
        })
        verdicts += _mixing_verdicts(summary, comparisons, depth, margin)
        verdicts += _variant_verdicts(summary, by, depth, margin)
    return verdicts


def _variant_verdicts(summary, by, depth, margin):
    """Claims (a) and (b) once more per network variant: both networks on augmented batches, both with the
    MLP head, or against the learned network with batch normalisation."""
    verdicts = []
    if "kernels-augmented" in by or "b-augmented" in by:
        augment = next(arm["augment"] for arm in summary.values()
                       if arm["kind"] == "learned" and arm["depth"] == depth and arm.get("augment", "none") != "none")
        verdicts.append(_variant_verdict(
            by, depth, margin, "augmented", f"both networks trained on augmented batches ({augment})",
            f"learned kernels trained with the same augmentation ({augment})", "the augmented frozen network"))
    if "kernels-mlp" in by or "b-mlp" in by:
        verdicts.append(_variant_verdict(
            by, depth, margin, "mlp", f"both networks with an MLP head (one hidden layer of {MLP_HIDDEN_UNITS} ReLU units)",
            "learned kernels with the same MLP head", "the frozen network with the MLP head"))
    if "kernels-bn" in by or "b-bn" in by:
        verdicts.append(_variant_verdict(
            by, depth, margin, "bn", "against the learned network given a batch normalisation after each layer "
            "(the fixed and frozen arms have none)", "normalised learned kernels", "the frozen network"))
    return verdicts


def _variant_verdict(by, depth, margin, variant, how, reference, frozen):
    return {
        "claim": variant, "depth": depth,
        "text": (f"Depth {depth}, {how}: frozen random kernels are "
                 f"{outcomes_text(by.get(f'kernels-{variant}', {}), reference, margin)}; the best fixed arm (chosen "
                 f"on validation, {frozen} among them) is {outcomes_text(by.get(f'b-{variant}', {}), reference, margin)}."),
    }


def _mixing_verdicts(summary, comparisons, depth, margin):
    """Per mixing arm of ``depth``: are frozen spatial kernels enough once their wiring is learned?"""
    verdicts = []
    for name in sorted({c["arm"] for c in comparisons if c["role"] == "mixing" and c["depth"] == depth}):
        by = {}
        for c in comparisons:
            if c["role"] == "mixing" and c["arm"] == name:
                by.setdefault("not judged" if not c["judged"] else c["outcome"], []).append(c["size"])
        bank = name.split("-")[1]
        # Records written before batch_norm existed have no such key: no normalisation.
        how, reference = (("a learned 1x1 mixing and a batch normalisation", "learned kernels with the same "
                           "normalisation") if summary[name].get("batch_norm") else ("a learned 1x1 mixing",
                                                                                      "learned kernels"))
        verdicts.append({
            "claim": "mixing", "depth": depth, "arm": name,
            "text": (f"Depth {depth}, the question of the wiring: with {how} after each layer, frozen "
                     f"{bank} spatial kernels are {outcomes_text(by, reference, margin)}."),
        })
    return verdicts
