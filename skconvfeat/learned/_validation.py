"""What the torch-trained estimators share, torch-free: their training settings' constraints and the
early-stopping split."""

import math
import numbers

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, StrOptions

# The training settings of LearnedConvClassifier and LowRankHeadClassifier, one constraint each.
TRAINING_CONSTRAINTS = {
    "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
    "lr_schedule": [StrOptions({"constant", "cosine"})],
    "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


def validation_split(y, fraction, rng, owner):
    """Training and validation indices: ``ceil(fraction * n)`` rows held out, stratified when every
    class can give one row to each side; ``rng`` (a RandomState) draws the split's seed.
    A split that cannot be made raises a ``ValueError`` naming ``owner``'s parameters."""
    indices = np.arange(len(y))
    counts = np.unique(y, return_counts=True)[1]
    n_valid = math.ceil(fraction * len(y))
    stratify = y if counts.min() >= 2 and counts.size <= n_valid <= len(y) - counts.size else None
    seed = rng.randint(np.iinfo(np.int32).max)
    try:
        return train_test_split(indices, test_size=n_valid, stratify=stratify, random_state=seed)
    except ValueError as exc:
        raise ValueError(
            f"{owner} cannot hold out validation_fraction={fraction} of {len(y)} samples for early "
            f"stopping ({exc}). Pass more samples or early_stopping=False."
        ) from None
