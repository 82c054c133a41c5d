"""The settings of a study: one frozen object, checked once, passed to ``run_study`` and ``run_transfer``."""

import dataclasses
from dataclasses import dataclass, field
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

from .._banks import list_banks
from .._hints import did_you_mean
from .._presets import PRESETS

from ._design import (
    AUGMENTED,
    CLASSIFIERS,
    DEFAULT_BANKS,
    DEPTHS,
    DEVICES,
    LEARNED,
    LEARNED_LARGE,
    PER_ARM_PARAMS,
    SMALL_RECIPE_MAX_IMAGES,
)

__all__ = ["StudySettings", "learned_recipe"]

_CONSTRAINTS = {
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
    "device": [StrOptions(set(DEVICES))],
    "margin": [Interval(Real, 0, 0.5, closed="neither")],
    "alpha": [Interval(Real, 0, 0.5, closed="neither")],
    "learned_params": [dict, None],
    "small_recipe": [dict],
    "large_recipe": [dict],
    "transfer_sizes": ["array-like"],
    "transfer_seeds": [Interval(Integral, 2, None, closed="left")],
    "transfer_small_sizes": [Interval(Integral, 1, None, closed="left")],
    "preset": [StrOptions(set(PRESETS)), None],
}

# The arguments of learned_recipe: which design, and how many training images a model has.
_RECIPE_CONSTRAINTS = {
    "design": [StrOptions({"cv", "holdout"})],
    "n_train": [Interval(Integral, 1, None, closed="left"), None],
}


@dataclass(frozen=True)
class StudySettings:
    """Everything that decides a study's numbers, checked once when it is made.

    Pass one to :func:`~skconvfeat.study.run_study` and
    :func:`~skconvfeat.study.run_transfer`; change one with
    :func:`dataclasses.replace` (the copy is checked again). Bad values raise
    ValueError naming the field, as scikit-learn's parameter checks do.

    Parameters
    ----------
    dataset : str, default="digits"
        Name recorded in the results. ``"cifar10"`` and ``"cifar10-jpeg"``
        also set the accuracy the learned reference must reach for its verdict
        to count as fair, and augment the learned arms on an official split.
    banks : sequence of str, default=DEFAULT_BANKS
        Fixed banks to try (see :func:`skconvfeat.list_banks`); ``"identity"``
        is the raw-pixel baseline.
    depths : sequence of {1, 2, 3}, default=(1,)
        Networks to build every arm in: 1, the one-layer CNN; 2, the two-layer
        CNN (Gabor, random and k-means banks among ``banks``, learned and
        frozen arms). The deepest holds the reference, the best fixed arm and
        the transfer experiment's network.
    classifier : {"logistic", "linear_svm", "mlp", "ridge"}, default="logistic"
        The head. Learned arms use a linear head, or the same MLP for ``"mlp"``.
        ``"ridge"`` is :class:`~skconvfeat.GramRidgeClassifier`, its penalty
        chosen on a held-out tenth of each training set.
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
        Include the arms trained in PyTorch (skipped, with the reason, when
        PyTorch is missing).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the learned arms and the transfer experiment's models train;
        ``"cuda"`` raises ValueError at once when PyTorch is installed and
        sees no CUDA device.
    margin : float, default=0.01
        Equivalence margin: two arms are "equal within ±margin" when the
        (1 - 2 alpha) interval of their difference lies inside it (TOST).
    alpha : float, default=0.05
        Family-wise error rate of each Holm family of tests.
    learned_params : dict, default=None
        :class:`~skconvfeat.LearnedConvClassifier` parameters overriding the
        recipe the design chose (see :meth:`learned_recipe`); not those the
        study sets per arm (``conv``, ``head``, ``freeze_kernels``,
        ``random_state``, ``device``, ``warm_start``).
    small_recipe : dict, default=LEARNED
        Training of the learned arms on small data: the digits' CV folds, the
        transfer experiment's 20-300 target images and official splits
        subsampled to at most 10,000 training images (Adam 1e-2, at most 30
        epochs: the whole default study in about a minute on 2 cores).
    large_recipe : dict, default=LEARNED_LARGE
        Training on the official split of a large dataset, above 10,000 training
        images: the recipe of the learned CIFAR-10 baseline (Adam 2e-3, cosine
        schedule, at most 10 epochs).
    transfer_sizes : sequence of int, default=(20, 50, 100, 300)
        Training-set sizes of the transfer experiment's target task (sizes
        below the number of target classes or above a fold's pool are dropped).
    transfer_seeds : int, default=5
        Repeats of the transfer experiment; seed ``i`` tests on fold ``i`` of a
        ``transfer_seeds``-fold split of the target classes, so at least 2.
    transfer_small_sizes : int, default=2
        Claim (c) ("needs less data") is judged on this many of the smallest
        sizes, pooled per seed.
    preset : str, default=None
        Also run the wide data-derived preset of this name (a key of
        :data:`skconvfeat.PRESETS`) with its ridge head, as one more fixed arm
        of one layer.
    """

    dataset: str = "digits"
    banks: tuple = DEFAULT_BANKS
    depths: tuple = (1,)
    classifier: str = "logistic"
    n_splits: int = 5
    n_repeats: int = 5
    n_seeds: int = 1
    random_state: int = 0
    train_size: int = None
    learned: bool = True
    device: str = "cpu"
    margin: float = 0.01
    alpha: float = 0.05
    learned_params: dict = None
    small_recipe: dict = field(default_factory=lambda: dict(LEARNED))
    large_recipe: dict = field(default_factory=lambda: dict(LEARNED_LARGE))
    transfer_sizes: tuple = (20, 50, 100, 300)
    transfer_seeds: int = 5
    transfer_small_sizes: int = 2
    preset: str = None

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        validate_parameter_constraints(_CONSTRAINTS, values, caller_name=type(self).__name__)
        depths = tuple(sorted(set(self.depths)))
        if not depths or not set(depths) <= set(DEPTHS):
            raise ValueError(
                f"The 'depths' parameter of StudySettings must hold depths among {DEPTHS}. Got {self.depths!r}."
            )
        sizes = tuple(sorted(set(self.transfer_sizes)))
        if not sizes or any(not isinstance(n, Integral) or n < 1 for n in sizes):
            raise ValueError(
                f"The 'transfer_sizes' parameter of StudySettings must hold positive integers. "
                f"Got {self.transfer_sizes!r}."
            )
        normalised = {
            "banks": _check_banks(self.banks),
            "depths": depths,
            "transfer_sizes": sizes,
            # Copies: the caller's dicts may change later, these may not.
            "learned_params": _check_learned_params(self.learned_params),
            "small_recipe": dict(self.small_recipe),
            "large_recipe": dict(self.large_recipe),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        _check_device(self.device)

    def learned_recipe(self, design, n_train=None):
        """The :class:`~skconvfeat.LearnedConvClassifier` settings of the learned arms in ``design``.

        ``"cv"`` (small data) trains with ``small_recipe``, ``"holdout"`` (an
        official split) with ``large_recipe`` unless ``n_train``, the training
        images of a model, is at most ``SMALL_RECIPE_MAX_IMAGES`` (10,000: a
        ``train_size`` subsample), adding random shifts and flips for the
        photographs of CIFAR-10; ``learned_params`` override either.
        """
        validate_parameter_constraints(_RECIPE_CONSTRAINTS, {"design": design, "n_train": n_train},
                                       caller_name="learned_recipe")
        large = design == "holdout" and (n_train is None or n_train > SMALL_RECIPE_MAX_IMAGES)
        recipe = dict(self.large_recipe if large else self.small_recipe)
        if design == "holdout" and self.dataset in AUGMENTED:
            recipe["augment"] = True
        return {**recipe, **(self.learned_params or {})}


def learned_recipe(design, dataset, overrides=None, n_train=None):
    """The training settings of the study's learned arms.

    Parameters
    ----------
    design : {"cv", "holdout"}
        ``"cv"`` (small data, cross-validated) trains with ``LEARNED``;
        ``"holdout"`` (the official split of a large dataset) with
        ``LEARNED_LARGE``, the recipe of the learned CIFAR-10 baseline,
        unless ``n_train`` is small.
    dataset : str
        The photographs of CIFAR-10 (``"cifar10"``, ``"cifar10-jpeg"``) add
        random shifts and horizontal flips on an official split.
    overrides : dict, default=None
        :class:`~skconvfeat.LearnedConvClassifier` parameters replacing the
        recipe's (:class:`StudySettings`' ``learned_params``).
    n_train : int, default=None
        Training images of one model; at most ``SMALL_RECIPE_MAX_IMAGES``
        (10,000), an official split trains with ``LEARNED`` too (the large
        recipe's 10 epochs stop a small set's network still improving).
        None: the whole training set of an official split.

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
    return StudySettings(dataset=dataset, learned_params=overrides).learned_recipe(design, n_train)


def _check_banks(banks):
    """``banks`` as a tuple of bank names, or ValueError naming the closest bank for a typo."""
    banks, names = tuple(banks), list_banks()
    unknown = [bank for bank in banks if bank not in names]
    if unknown or not banks:
        got = f"unknown bank {unknown[0]!r}" if unknown else "no bank"
        hint = did_you_mean(unknown[0], names) if unknown else ""
        raise ValueError(
            f"The 'banks' parameter of StudySettings must name banks among {', '.join(names)}. Got {got}.{hint}"
        )
    return banks


def _check_learned_params(learned_params):
    """A copy of ``learned_params`` if every key is a LearnedConvClassifier training parameter left free."""
    if not learned_params:
        return None if learned_params is None else {}
    from ..learned import LearnedConvClassifier  # no torch at import: the estimator's own parameter list

    free = set(LearnedConvClassifier().get_params(deep=False)) - PER_ARM_PARAMS
    bad = sorted(set(learned_params) - free)
    if bad:
        raise ValueError(
            f"The 'learned_params' parameter of StudySettings may set {sorted(free)}. Got {bad} instead "
            f"(the study sets {sorted(PER_ARM_PARAMS)} per arm)."
        )
    return dict(learned_params)


def _check_device(device):
    """Fail at once when the learned models are asked to train on a GPU PyTorch does not see."""
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        return  # nothing trains in PyTorch: the learned arms are skipped, and say why
    if not torch.cuda.is_available():
        raise ValueError(
            "The 'device' parameter of StudySettings is 'cuda' but PyTorch sees no CUDA device "
            "(torch.cuda.is_available() is False). Use device='cpu' or 'auto'."
        )
