"""The learned 2-layer baseline on CIFAR-10 JPEG: full training set, official test set.

    python benchmarks/learned_cifar10.py --data ../shared/data/cifar10-jpeg.tar.gz --cache /tmp/cifar

Trains ``LearnedConvClassifier`` on a FixedConvNet description (random
banks as the starting point): conv 5x5 (32) -> ReLU -> max-pool 2 -> conv 3x3
(64) -> ReLU -> max-pool 2 -> MLP head, Adam with a cosine schedule, random
crop + flip augmentation, early stopping on a 10% validation split. Prints
every epoch and the test accuracy.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from skconvfeat import FixedConvNet, FixedConvTransformer, LearnedConvClassifier
from skconvfeat.datasets import load_image_folder


def load(data, cache):
    """Train and test images (uint8) and labels, decoded once and cached as .npy files."""
    cache = Path(cache)
    names = ["X_train", "y_train", "X_test", "y_test"]
    if not all((cache / f"{n}.npy").exists() for n in names):
        cache.mkdir(parents=True, exist_ok=True)
        bunch = load_image_folder(data, subset="all")
        train, test = bunch.split == "train", bunch.split == "test"
        arrays = [bunch.images[train], bunch.target[train], bunch.images[test], bunch.target[test]]
        for n, a in zip(names, arrays):
            np.save(cache / f"{n}.npy", a)
    return [np.load(cache / f"{n}.npy") for n in names]


def network(widths, kernel_sizes):
    """conv -> ReLU -> max-pool 2, twice, from random banks."""
    layer = dict(padding="same", pooling="max", pool_size=2)
    return FixedConvNet([
        (f"conv{i + 1}", FixedConvTransformer("random", bank_params={"n_filters": width}, kernel_size=k,
                                              random_state=i, **layer))
        for i, (width, k) in enumerate(zip(widths, kernel_sizes))
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--cache", default="/tmp/cifar10-jpeg-npy")
    parser.add_argument("--train-size", type=int, default=None, help="N random training images (default all)")
    parser.add_argument("--widths", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--kernel-sizes", type=int, nargs=2, default=(5, 3))
    parser.add_argument("--hidden-units", type=int, default=256)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()

    X_train, y_train, X_test, y_test = load(args.data, args.cache)
    if args.train_size:
        keep = np.random.default_rng(0).permutation(len(X_train))[: args.train_size]
        X_train, y_train = X_train[keep], y_train[keep]
    # Per-channel standardisation with training statistics, as torchvision's Normalize.
    mean = X_train.mean(axis=(0, 1, 2)) / 255
    std = X_train.std(axis=(0, 1, 2)) / 255
    X_train = ((X_train / 255 - mean) / std).astype(np.float32)
    X_test = ((X_test / 255 - mean) / std).astype(np.float32)

    clf = LearnedConvClassifier(
        network(args.widths, args.kernel_sizes),
        head="mlp",
        hidden_units=args.hidden_units,
        max_epochs=args.max_epochs,
        learning_rate=args.learning_rate,
        lr_schedule="cosine",
        weight_decay=1e-4,
        augment=not args.no_augment,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=5,
        random_state=0,
        verbose=1,
    )
    print(clf, flush=True)
    print(f"training images {len(X_train)} (10% held out for early stopping), test images {len(X_test)}", flush=True)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = clf.score(X_test, y_test)
    print(
        f"epochs run {clf.n_iter_}, best epoch {clf.best_epoch_}, converged {clf.converged_}, "
        f"augmentation {clf.augmentation_}"
    )
    print(f"fit {fit_s:.0f} s, test {time.perf_counter() - start:.0f} s")
    print(f"TEST ACCURACY {accuracy:.4f} on {len(X_test)} official test images")


if __name__ == "__main__":
    main()
