"""The images every arm sees: input checks, the shared CV or holdout splits, and stratified subsamples."""

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

__all__ = ["as_images", "cv_splits", "holdout_splits", "standardise_channels", "subsample", "validation_split",
           "with_test_set"]

# The share of a training set held out to choose among arms (the best fixed arm): a fifth, as the curves do.
VALIDATION_FRACTION = 0.2


def as_images(images):
    """``(n, h, w, c)`` float32 images from ``(n, h, w)`` or ``(n, h, w, c)``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (n, h, w) or (n, h, w, c). Got shape {images.shape}.")
    return images


def subsample(train, target, train_size, seed):
    """``train`` subsampled (stratified) to ``train_size`` indices, sorted; all of it when None or larger."""
    if train_size is not None and train_size < len(train):
        train, _ = train_test_split(train, train_size=train_size, stratify=target[train], random_state=seed)
    return np.sort(train)


def cv_splits(target, n_splits, n_repeats, random_state, train_size):
    """The shared CV splits; training folds subsampled (stratified) to ``train_size``."""
    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=random_state)
    return [
        (subsample(train, target, train_size, random_state + i), test)
        for i, (train, test) in enumerate(cv.split(np.zeros(len(target)), target))
    ]


def validation_split(target, train, random_state):
    """``(fit, validation)`` indices: a stratified fifth of the training indices ``train`` held out.

    Stratified when every class has at least two training images, else a plain random fifth.
    """
    counts = np.unique(target[train], return_counts=True)[1]
    stratify = target[train] if counts.min() >= 2 else None
    fit, valid = train_test_split(train, test_size=VALIDATION_FRACTION, stratify=stratify,
                                  random_state=random_state)
    return np.sort(fit), np.sort(valid)


def holdout_splits(target, n_train, n_seeds, random_state, train_size):
    """One (training set, test set) per seed: the first ``n_train`` indices train, the rest test."""
    train, test = np.arange(n_train), np.arange(n_train, len(target))
    return [(subsample(train, target, train_size, random_state + i), test) for i in range(n_seeds)]


def standardise_channels(images, n_train):
    """Every channel to zero mean and unit variance, with the statistics of the ``n_train`` training images.

    As torchvision's ``Normalize`` before a CNN: the learned arms' large-data
    recipe was tuned on such inputs; the fixed arms standardise their features
    anyway. In place.
    """
    train = images[:n_train]
    mean = train.mean(axis=(0, 1, 2), dtype=np.float64)
    std = train.std(axis=(0, 1, 2), dtype=np.float64)
    images -= mean.astype(images.dtype)
    images /= np.where(std > 0, std, 1).astype(images.dtype)  # a constant channel stays zero
    return images


def with_test_set(images, target, test_images, test_target):
    """Training and test images in one array (training first), and the number of training images."""
    test_images, test_target = as_images(test_images), np.asarray(test_target)
    if len(test_images) != len(test_target):
        raise ValueError(f"test_images has {len(test_images)} images but test_target {len(test_target)} labels.")
    if test_images.shape[1:] != images.shape[1:]:
        raise ValueError(f"test images are {test_images.shape[1:]}, training images {images.shape[1:]}.")
    unseen = np.setdiff1d(test_target, target)
    if unseen.size:
        raise ValueError(f"test_target has classes that no training image has: {unseen.tolist()}.")
    return np.concatenate([images, test_images]), np.concatenate([target, test_target]), len(target)
