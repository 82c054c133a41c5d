"""A preset and the recommended head on a full training set, scored once on the official test set.

    python benchmarks/bench_presets.py cifar10 --data-home ../shared/data
    python benchmarks/bench_presets.py mnist --data-home ../shared/data

The model is the one-liner a user would write:
``make_pipeline(make_preset(PRESET), StandardScaler(copy=False), GramRidgeClassifier())``; the ridge
penalty is chosen on 10% of the training rows (never on the test set), then refitted on all of them.
``--flip`` adds the horizontal mirror of every training image (Thiry et al.'s augmentation; CIFAR-10
only), doubling the rows: features of 100,000 CIFAR-10 images take 5.8 GB in float32, so it needs
about 16 GB of memory. Prints the fit and test times, the chosen penalty and the test accuracy.
"""

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import GramRidgeClassifier, make_preset
from skconvfeat.datasets import fetch_mnist, load_image_folder

PRESET = {"mnist": "coates-mnist", "cifar10": "coates-cifar10"}
ALPHAS = (3e-3, 1e-2, 3e-2)  # per row; 1e-2 won on held-out CIFAR-10 rows at 400 filters


def load(name, data_home):
    if name == "mnist":
        train, test = (fetch_mnist(data_home=data_home, subset=s, download_if_missing=False) for s in ("train", "test"))
    else:
        archive = Path(data_home) / "cifar10-jpeg.tar.gz"
        train, test = (load_image_folder(archive, subset=s) for s in ("train", "test"))
    return train.images, train.target, test.images, test.target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(PRESET))
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--flip", action="store_true", help="add mirrored training images (cifar10)")
    parser.add_argument("--alphas", type=float, nargs="+", default=ALPHAS, help="candidate penalties per row")
    args = parser.parse_args()
    X, y, X_test, y_test = load(args.dataset, args.data_home)
    if args.flip:
        X, y = np.concatenate([X, X[:, :, ::-1]]), np.concatenate([y, y])
    model = make_pipeline(
        make_preset(PRESET[args.dataset], random_state=0),
        StandardScaler(copy=False),  # the features are a fresh array: scale them in place
        GramRidgeClassifier(alphas=args.alphas, random_state=0),
    )
    print(f"{platform.machine()}; {args.dataset}: train {X.shape}, test {X_test.shape}; preset "
          f"{PRESET[args.dataset]}; flips: {args.flip}", flush=True)
    start = time.perf_counter()
    model.fit(X, y)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = model.score(X_test, y_test)
    test_seconds = time.perf_counter() - start
    head = model[-1]
    print(f"features {model[0].n_features_out_}; held-out accuracy per alpha "
          f"{ {alpha: round(float(score), 4) for alpha, score in zip(head.alphas, head.validation_scores_)} }; chosen alpha {head.alpha_}")
    print(f"fit {fit_seconds:.0f} s, test {test_seconds:.0f} s, peak memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    print(f"TEST ACCURACY {accuracy:.4f}")


if __name__ == "__main__":
    main()
