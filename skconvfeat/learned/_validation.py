"""The early-stopping split, one rule for every torch-trained estimator (torch-free)."""

import math

import numpy as np
from sklearn.model_selection import train_test_split


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
