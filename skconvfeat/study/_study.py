"""The study: does a CNN with fixed kernels classify as well as one whose kernels are learned?

Every arm is the same one-layer CNN -- convolution, ReLU, average pooling,
standardisation, a trained head -- and the arms differ only in where the
kernels come from: a fixed bank (Gaussian blurs, Gabor filters, sharpening,
random), no convolution at all (raw pixels), or kernels trained end to end in
PyTorch. All arms are scored on the same repeated stratified k-fold splits, so
their scores are paired split by split and compared with the corrected
repeated k-fold t-test.

A second experiment asks whether kernels learned on one task help another:
kernels learned on the first half of the classes are frozen and reused on the
second half, for several training-set sizes, against kernels learned from
scratch and random fixed kernels.

:func:`run_study` returns the results dictionary described in
``docs/results-schema.md`` (and, on request, the ``extras`` arrays).
"""

import platform
import time
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
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

from .._banks import list_banks
from .._hints import did_you_mean
from ._stats import TEST_NAME, corrected_paired_ttest, mean_interval, verdict
from .._transformer import FixedConvTransformer

__all__ = ["CLASSIFIERS", "DEFAULT_BANKS", "run_study"]

DEFAULT_BANKS = ("gaussian", "gabor", "sharpen", "random", "identity")

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

# Heads, i.e. the trainable "fully-connected" part. Fitted on standardised features.
CLASSIFIERS = ("logistic", "linear_svm", "mlp")


def _make_head(classifier, random_state):
    """The scikit-learn head called ``classifier``."""
    if classifier == "logistic":
        return LogisticRegression(max_iter=1000)  # C=1; 1000 lbfgs steps converge on every arm
    if classifier == "linear_svm":
        return LinearSVC(C=0.01, max_iter=5000)  # small C: converges on ~250 standardised features
    if classifier == "mlp":
        # One hidden layer of 100 ReLU units: the two-layer FC head of a small CNN. Up to 600
        # epochs: on digits every arm stops on its tolerance by ~300 (sharpen, the slowest).
        return MLPClassifier(hidden_layer_sizes=(100,), max_iter=600, random_state=random_state)
    raise ValueError(f"classifier must be one of {CLASSIFIERS}. Got {classifier!r}.")


# The learned arms train the same layer end to end (Adam in PyTorch, stopping
# early when the training loss stalls). Budgeted so that the whole default
# study runs in about a minute and a half on 2 CPU cores.
LEARNED = {
    "max_epochs": 30,  # passes over ~1440 training images, ~340 Adam steps
    "batch_size": 128,  # images per Adam step
    "learning_rate": 1e-2,  # Adam step size, suits unit-norm kernels
    "weight_decay": 1e-4,  # L2 on kernels and head weights, ~ LogisticRegression's 1/C
    "device": "cpu",  # a few thousand parameters on 8x8 images: a GPU would not pay for its start-up
}
# Arms trained in PyTorch: name -> (initial bank, kernels trained?). "random_adam"
# is the control: the learned arm's network and optimiser with its kernels
# frozen, so "learned vs random_adam" isolates what training the kernels adds.
LEARNED_ARMS = {
    "learned": ("random", True),
    "gabor_learned": ("gabor", True),
    "random_adam": ("random", False),
}

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


def _fixed_pipeline(bank, layer, classifier, random_state):
    """FixedConvTransformer -> StandardScaler -> head."""
    conv = FixedConvTransformer(bank, random_state=random_state, **layer)
    return Pipeline([("conv", conv), ("scale", StandardScaler()), ("head", _make_head(classifier, random_state))])


def _learned_model(learner_cls, bank, classifier, random_state, train_kernels=True):
    """LearnedConvClassifier with the shared layer, initialised from ``bank``."""
    head = "mlp" if classifier == "mlp" else "linear"
    conv = FixedConvTransformer(bank, random_state=random_state, **LAYER)
    return learner_cls(conv, head=head, freeze_kernels=not train_kernels, random_state=random_state, **LEARNED)


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


def _bank_label(bank):
    """Display name of a fixed bank's arm."""
    return "Raw pixels (no conv)" if bank == "identity" else f"{bank.capitalize()}, fixed"


def _make_arms(banks, classifier, learner_cls, learned_arms, random_state):
    """The arms of the main comparison: fixed banks first, then those trained in PyTorch."""
    arms = [
        Arm(
            name=bank,
            label=_bank_label(bank),
            kind="raw" if bank == "identity" else "fixed",
            bank=bank,
            estimator=_fixed_pipeline(bank, RAW_LAYER if bank == "identity" else LAYER, classifier, random_state),
        )
        for bank in banks
    ]
    for name in learned_arms:
        init, train_kernels = LEARNED_ARMS[name]
        if train_kernels:
            label, kind = f"Learned ({init} init)", "learned"
        else:
            label, kind = f"{init.capitalize()}, fixed (Adam head)", "fixed"
        model = _learned_model(learner_cls, init, classifier, random_state, train_kernels)
        arms.append(Arm(name=name, label=label, kind=kind, bank=init, estimator=model))
    return arms


def _splits(target, n_splits, n_repeats, random_state, train_size):
    """The shared CV splits; training folds subsampled (stratified) to ``train_size``."""
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=random_state)
    splits = []
    for i, (train, test) in enumerate(cv.split(np.zeros(len(target)), target)):
        if train_size is not None and train_size < len(train):
            train, _ = train_test_split(
                train, train_size=train_size, stratify=target[train], random_state=random_state + i
            )
        splits.append((np.sort(train), test))
    return splits


def _evaluate(arm, images, target, train, test, keep_model=False):
    """Fit ``arm`` on ``train``, score it on ``test``, and time both steps.

    For pipelines the conv transform of the test fold is timed on its own;
    PyTorch models have no separate transform (``None``).
    """
    model = clone(arm.estimator)
    start = time.perf_counter()
    model.fit(images[train], target[train])
    fit_time = time.perf_counter() - start
    if not isinstance(model, Pipeline):
        transform_time = None
        pred = model.predict(images[test])
    else:
        start = time.perf_counter()
        features = model[0].transform(images[test])
        transform_time = time.perf_counter() - start
        pred = model[1:].predict(features)
    result = {"score": accuracy_score(target[test], pred), "fit_time": fit_time, "transform_time": transform_time}
    if keep_model:
        result.update(model=model, pred=pred)
    return result


def _run_parallel(tasks, n_jobs, progress):
    """Run ``(key, (func, args, kwargs))`` tasks, reporting each key as it completes.

    Returns ``{key: func(*args, **kwargs)}``.
    """
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    results = {}
    for key, result in parallel(delayed(_keyed)(key, *call) for key, call in tasks):
        results[key] = result
        if progress is not None:
            progress(key)
    return results


def _keyed(key, func, args, kwargs):
    return key, func(*args, **kwargs)


def _n_features(model):
    """Features entering the head's standardisation."""
    return model[0].n_features_out_ if isinstance(model, Pipeline) else model.n_features_out_


def _summarise_arm(arm, runs, n_features, ratio):
    """The schema's entry of one arm; its interval is widened for overlapping folds."""
    scores = [r["score"] for r in runs]
    mean, low, high = mean_interval(scores, test_train_ratio=ratio)
    return {
        "name": arm.name,
        "label": arm.label,
        "kind": arm.kind,
        "bank": arm.bank,
        "n_features": int(n_features),
        "scores": scores,
        "fit_time": [r["fit_time"] for r in runs],
        "transform_time": [r["transform_time"] for r in runs],
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
    }


def _comparisons(arm_results, reference, n_train, n_test):
    """Every arm against ``reference`` with the corrected repeated k-fold t-test."""
    ref = next(a for a in arm_results if a["name"] == reference)
    out = []
    for arm in arm_results:
        if arm["name"] == reference:
            continue
        res = corrected_paired_ttest(arm["scores"], ref["scores"], n_train=n_train, n_test=n_test)
        out.append(
            {
                "arm": arm["name"],
                "reference": reference,
                "mean_diff": res["mean_diff"],
                "ci_low": res["ci_low"],
                "ci_high": res["ci_high"],
                "p_value": res["p_value"],
                "test": TEST_NAME,
            }
        )
    return out


# -- transfer -----------------------------------------------------------------


def _fit_source(learner_cls, images, target, source_classes, classifier, seed, train_size):
    """Learn kernels on the source classes (at most ``train_size`` images); return them and the time."""
    idx = np.flatnonzero(np.isin(target, source_classes))
    if train_size is not None and train_size < len(idx):
        idx, _ = train_test_split(idx, train_size=train_size, stratify=target[idx], random_state=seed)
    model = _learned_model(learner_cls, "random", classifier, seed)
    start = time.perf_counter()
    model.fit(images[idx], target[idx])
    return {"filters": model.filters_[0], "fit_time": time.perf_counter() - start}


TRANSFER_LABELS = {
    "transfer": "Transferred kernels, fixed",
    "scratch": "Learned from scratch",
    "random": "Random, fixed",
}


def _transfer_arms(learner_cls, source_filters, classifier, seed):
    """The three target-task arms of one seed; ``transfer`` uses the source kernels."""
    estimators = {
        "transfer": ("transfer", _fixed_pipeline(source_filters, LAYER, classifier, seed)),
        "scratch": ("learned", _learned_model(learner_cls, "random", classifier, seed)),
        "random": ("fixed", _fixed_pipeline("random", LAYER, classifier, seed)),
    }
    return {
        name: Arm(name, TRANSFER_LABELS[name], kind, name, estimator)
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


def _transfer_study(learner_cls, images, target, classifier, random_state, train_size, n_jobs, progress):
    """Kernels learned on the first half of the classes, fixed, on the second half.

    The source model sees at most ``train_size`` images, like every model of the main comparison.
    """
    source_classes, target_classes, folds, sizes = _transfer_plan(target, random_state)
    seeds = range(random_state, random_state + TRANSFER_SEEDS)
    sources = _run_parallel(
        [(("source", s), (_fit_source, (learner_cls, images, target, source_classes, classifier, s, train_size), {}))
         for s in seeds],
        n_jobs,
        progress,
    )
    tasks = []
    for (pool, test), seed in zip(folds, seeds):
        arms = _transfer_arms(learner_cls, sources[("source", seed)]["filters"], classifier, seed)
        for size in sizes:
            train, _ = train_test_split(pool, train_size=size, stratify=target[pool], random_state=seed)
            for name, arm in arms.items():
                tasks.append(((name, size, seed), (_evaluate, (arm, images, target, train, test), {})))
    runs = _run_parallel(tasks, n_jobs, progress)
    return {
        "source_classes": source_classes.tolist(),
        "target_classes": target_classes.tolist(),
        "train_sizes": sizes,
        "n_seeds": TRANSFER_SEEDS,
        "source_fit_time": [sources[("source", s)]["fit_time"] for s in seeds],
        "arms": {
            name: {
                "label": label,
                "scores": [[runs[(name, n, s)]["score"] for s in seeds] for n in sizes],
                "fit_time": [[runs[(name, n, s)]["fit_time"] for s in seeds] for n in sizes],
            }
            for name, label in TRANSFER_LABELS.items()
        },
    }


def _n_transfer_tasks(target, random_state):
    """Models the transfer experiment fits (for the progress count)."""
    sizes = _transfer_plan(target, random_state)[3]
    return TRANSFER_SEEDS * (1 + len(TRANSFER_LABELS) * len(sizes))


# -- verdicts -----------------------------------------------------------------


def _pct(x):
    return f"{100 * x:.1f}%"


def _diff_text(res):
    """A paired difference in percentage points with its interval and p-value."""
    return (
        f"{100 * res['mean_diff']:+.1f} points (95% CI {100 * res['ci_low']:+.1f} to "
        f"{100 * res['ci_high']:+.1f}, p = {res['p_value']:.2g})"
    )


def _arm_text(arm):
    """An arm's mean accuracy with its interval."""
    return f"{_pct(arm['mean'])} [95% CI {_pct(arm['ci_low'])} to {_pct(arm['ci_high'])}]"


def _untestable(claim, missing):
    return {"claim": claim, "verdict": "inconclusive", "sentence": f"Not tested: {missing}."}


def _verdict_random(arms, learned, n_train, n_test):
    claim = "(a) Random kernels will work very poorly"
    random, raw = arms.get("random"), arms.get("identity")
    if random is None or raw is None:
        return _untestable(claim, "needs the 'random' and 'identity' (raw pixels) arms")
    vs_raw = corrected_paired_ttest(random["scores"], raw["scores"], n_train=n_train, n_test=n_test)
    outcome = verdict(vs_raw["ci_low"], vs_raw["ci_high"], claim="below")
    sentence = (
        f"Random fixed kernels reached {_arm_text(random)}. 'Very poorly' is judged against the same head "
        f"on the raw pixels ({_arm_text(raw)}), i.e. no convolution at all: the difference is "
        f"{_diff_text(vs_raw)}"
    )
    if learned is not None:
        vs_learned = corrected_paired_ttest(random["scores"], learned["scores"], n_train=n_train, n_test=n_test)
        sentence += f"; against learned kernels ({_pct(learned['mean'])}) it is {_diff_text(vs_learned)}"
    return {"claim": claim, "verdict": outcome, "sentence": sentence + "."}


def _verdict_fixed(arms, learned, n_classes, n_train, n_test):
    claim = "(b) Fixed kernels will learn, but certainly worse than learned kernels"
    fixed = [a for a in arms.values() if a["kind"] == "fixed"]
    if learned is None or not fixed:
        return _untestable(claim, "needs a learned arm and at least one fixed bank")
    best = max(fixed, key=lambda a: a["mean"])
    res = corrected_paired_ttest(best["scores"], learned["scores"], n_train=n_train, n_test=n_test)
    sentence = (
        f"The best fixed bank ({best['label']}) reached {_arm_text(best)} (chance: "
        f"{_pct(1 / n_classes)}), against {_arm_text(learned)} for learned kernels: a difference of "
        f"{_diff_text(res)}. The best bank is picked after seeing the scores, which favours the fixed side."
    )
    control = arms.get("random_adam")
    if control is not None:
        same = corrected_paired_ttest(learned["scores"], control["scores"], n_train=n_train, n_test=n_test)
        sentence += (
            f" Same network, same random start and same optimiser, training the kernels instead of "
            f"freezing them changes accuracy by {_diff_text(same)}."
        )
    return {"claim": claim, "verdict": verdict(res["ci_low"], res["ci_high"], claim="below"), "sentence": sentence}


def _verdict_transfer(transfer):
    claim = "(c) Kernels pretrained on another task and held fixed are highly effective and need less data and time"
    if transfer is None or not transfer["train_sizes"]:
        return _untestable(claim, "the transfer experiment did not run")
    arms, sizes = transfer["arms"], transfer["train_sizes"]
    small = slice(0, SMALL_SIZES)

    def per_seed(name, key="scores"):
        return np.mean(np.asarray(arms[name][key])[small], axis=0)  # one number per seed

    vs_scratch = corrected_paired_ttest(per_seed("transfer"), per_seed("scratch"))
    vs_random = corrected_paired_ttest(per_seed("transfer"), per_seed("random"))
    speedup = np.mean(per_seed("scratch", "fit_time")) / np.mean(per_seed("transfer", "fit_time"))
    curve = ", ".join(
        f"{n}: {_pct(np.mean(arms['transfer']['scores'][i]))} vs {_pct(np.mean(arms['scratch']['scores'][i]))}"
        for i, n in enumerate(sizes)
    )
    sentence = (
        f"With {' and '.join(map(str, sizes[small]))} training images of unseen classes, kernels learned on classes "
        f"{transfer['source_classes']} and then frozen differ from kernels learned from scratch by "
        f"{_diff_text(vs_scratch)} and from random fixed kernels by {_diff_text(vs_random)} (paired over "
        f"{transfer['n_seeds']} seeds, each with its own test fold); their head trains {speedup:.1f}x faster than "
        f"the whole network from scratch "
        f"(pretraining took {np.mean(transfer['source_fit_time']):.1f} s once). "
        f"Accuracy by training size, transferred vs scratch: {curve}."
    )
    outcome = verdict(vs_scratch["ci_low"], vs_scratch["ci_high"], claim="above")
    return {"claim": claim, "verdict": outcome, "sentence": sentence}


def _verdicts(results):
    arms = {a["name"]: a for a in results["arms"]}
    learned = arms.get("learned")
    n_train, n_test = results["cv"]["n_train"], results["cv"]["n_test"]
    return [
        _verdict_random(arms, learned, n_train, n_test),
        _verdict_fixed(arms, learned, results["n_classes"], n_train, n_test),
        _verdict_transfer(results["transfer"]),
    ]


# -- extras -------------------------------------------------------------------


def _extras(arms, first_runs, images, target, test):
    """Kernels, one image and its feature maps, and the best fixed arm's confusion matrix."""
    fixed = [arm for arm in arms if isinstance(arm.estimator, Pipeline)]
    sample = images[test[0]]
    extras = {
        "banks": {arm.label: first_runs[arm.name]["model"][0].filters_ for arm in fixed},
        "learned_before": None,
        "learned_after": None,
        "sample_image": sample,
        "feature_maps": {arm.label: _feature_maps(first_runs[arm.name]["model"][0], sample) for arm in fixed},
        "confusion": None,
    }
    if "learned" in first_runs:
        extras["learned_before"] = first_runs["learned"]["model"].initial_filters_[0]
        extras["learned_after"] = first_runs["learned"]["model"].filters_[0]
    candidates = [arm for arm in fixed if arm.kind == "fixed"] or fixed
    if candidates:
        best = max(candidates, key=lambda arm: first_runs[arm.name]["score"])
        labels = np.unique(target)
        matrix = confusion_matrix(target[test], first_runs[best.name]["pred"], labels=labels)
        extras["confusion"] = {"arm": best.label, "labels": labels.tolist(), "matrix": matrix}
    return extras


def _feature_maps(conv, image):
    """``image`` through the fitted ``conv`` before pooling, shaped ``(n_maps, H', W')``."""
    unpooled = clone(conv).set_params(pool_grid=None, pool_size=1).fit(image[None])
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


def run_study(
    images,
    target,
    *,
    dataset="digits",
    banks=DEFAULT_BANKS,
    classifier="logistic",
    n_splits=5,
    n_repeats=5,
    random_state=0,
    train_size=None,
    learned=True,
    transfer=True,
    n_jobs=None,
    progress=None,
    return_extras=False,
):
    """Compare fixed, raw-pixel and learned kernels on paired CV splits.

    Parameters
    ----------
    images : array-like of shape (n_samples, h, w) or (n_samples, h, w, c)
        The images.
    target : array-like of shape (n_samples,)
        Their classes.
    dataset : str, default="digits"
        Name recorded in the results.
    banks : sequence of str, default=DEFAULT_BANKS
        Fixed banks to try (see :func:`skconvfeat.list_banks`); ``"identity"``
        is the raw-pixel baseline.
    classifier : {"logistic", "linear_svm", "mlp"}, default="logistic"
        The head. Learned arms use a linear head, or the same MLP for ``"mlp"``.
    n_splits, n_repeats : int, default=5
        Repeated stratified k-fold shared by every arm.
    random_state : int, default=0
        Seed of the splits, the random bank and the learned arms.
    train_size : int, default=None
        Subsample each training fold (stratified) to this many images; the
        transfer experiment's source model gets at most as many.
    learned : bool, default=True
        Include the learned arms (needs PyTorch and ``skconvfeat.LearnedConvClassifier``).
    transfer : bool, default=True
        Run the transfer experiment (same needs).
    n_jobs : int, default=None
        joblib workers over splits (``-1``: all cores).
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
    """
    started = time.perf_counter()
    banks = check_banks(banks)
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}. Got {classifier!r}.")
    images, target = _as_images(images), np.asarray(target)
    learner_cls, unavailable = _load_learner()
    skipped = []
    learned_arms = list(LEARNED_ARMS) if learned and learner_cls else []
    if not learned or unavailable:
        reason = "turned off (--no-learned)" if not learned else unavailable
        skipped += [{"name": name, "reason": reason} for name in LEARNED_ARMS]
    n_classes = len(np.unique(target))
    run_transfer = transfer and learner_cls is not None and n_classes >= 4
    if not run_transfer:
        reason = (
            "turned off (--no-transfer)" if not transfer
            else unavailable or "needs at least 4 classes (2 source, 2 target)"
        )
        skipped.append({"name": "transfer", "reason": reason})

    arms = _make_arms(banks, classifier, learner_cls, learned_arms, random_state)
    splits = _splits(target, n_splits, n_repeats, random_state, train_size)
    total = len(arms) * len(splits) + (_n_transfer_tasks(target, random_state) if run_transfer else 0)
    done = []

    def report(key):
        done.append(key)
        if progress is not None:
            progress(len(done), total, " ".join(map(str, key)))

    tasks = [
        ((arm.name, i), (_evaluate, (arm, images, target, train, test), {"keep_model": i == 0}))
        for arm in arms
        for i, (train, test) in enumerate(splits)
    ]
    runs = _run_parallel(tasks, n_jobs, report)
    first = {arm.name: runs[(arm.name, 0)] for arm in arms}
    n_train, n_test = len(splits[0][0]), len(splits[0][1])
    ratio = n_test / n_train
    arm_results = [
        _summarise_arm(
            arm,
            [runs[(arm.name, i)] for i in range(len(splits))],
            _n_features(first[arm.name]["model"]),
            ratio,
        )
        for arm in arms
    ]
    fixed = [a for a in arm_results if a["kind"] == "fixed"] or arm_results
    reference = "learned" if learned_arms else max(fixed, key=lambda a: a["mean"])["name"]
    results = {
        "dataset": dataset,
        "n_samples": len(target),
        "n_classes": int(n_classes),
        "image_shape": list(images.shape[1:]),
        "classifier": classifier,
        "cv": {"n_splits": n_splits, "n_repeats": n_repeats, "random_state": random_state,
               "n_train": n_train, "n_test": n_test},
        "arms": arm_results,
        "comparisons": _comparisons(arm_results, reference, n_train, n_test),
        "transfer": (
            _transfer_study(learner_cls, images, target, classifier, random_state, train_size, n_jobs, report)
            if run_transfer else None
        ),
        "skipped_arms": skipped,
    }
    results["verdicts"] = _verdicts(results)
    results["elapsed_s"] = time.perf_counter() - started
    results["versions"] = _versions()
    if not return_extras:
        return results
    return results, _extras(arms, first, images, target, splits[0][1])
