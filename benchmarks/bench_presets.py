"""A preset and the streaming ridge head on a full training set, scored once on the official test set.

    python benchmarks/bench_presets.py cifar10 --data-home ../shared/data --flip
    python benchmarks/bench_presets.py mnist --data-home ../shared/data

Since 2026-12-05 the run itself is ``skconvfeat.study.run_preset``, also the installed
command ``skconvfeat preset NAME --dataset D``; this script adds ``--npy`` and ``--set``.
The model is ``make_preset(PRESET)`` followed by ``GramRidgeClassifier(standardize=True)`` (the
same model as ``StandardScaler`` + ``RidgeClassifier``), fed by ``partial_fit`` with the features of
``--chunk`` images at a time, so the feature matrix is never held whole: memory is the head's
``8 * n_features**2``-byte Gram matrix (6.6 GB at 28,800 features) plus the held-out rows' features.
The transformer is fitted (unsupervised) on the training images. The penalty is chosen on a random
10% of the training images (seed 0), never on the test set; ``--flip`` adds the horizontal mirror of
every training image (Thiry et al.'s augmentation), the held-out images' mirrors only after the
penalty is chosen, then every row is refitted.

``--validate N`` scores on N training images held out from the training rows instead of the test
set (for choosing settings); ``--train-size`` subsamples the training images; ``--set`` overrides
preset parameters (JSON values), e.g. ``--set eps_zca=0.1 kernel_size=7 'bank_params={"n_filters": 1200}'``.
``--npy DIR`` reads decoded arrays ``X_train.npy``, ``y_train.npy``, ``X_test.npy``, ``y_test.npy``
(e.g. saved once from ``load_image_folder``) instead of decoding the archive.
Prints the time of each stage, the held-out accuracy per penalty, peak memory and the accuracy.
"""

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np

from skconvfeat.datasets import fetch_mnist, load_image_folder
from skconvfeat.study import run_preset
from skconvfeat.study._preset_run import training_and_evaluation

PRESET = {"mnist": "coates-mnist", "cifar10": "coates-cifar10"}
ALPHAS = (3e-3, 1e-2, 3e-2)  # per row; 1e-2 won on held-out CIFAR-10 rows at 400 and 800 filters


def load(name, data_home, npy):
    if npy:
        return tuple(np.load(Path(npy) / f"{part}.npy") for part in ("X_train", "y_train", "X_test", "y_test"))
    if name == "mnist":
        train, test = (fetch_mnist(data_home=data_home, subset=s, download_if_missing=False) for s in ("train", "test"))
    else:
        archive = Path(data_home) / "cifar10-jpeg.tar.gz"
        train, test = (load_image_folder(archive, subset=s) for s in ("train", "test"))
    return train.images, train.target, test.images, test.target


def parse_overrides(pairs):
    return {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(PRESET))
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--npy", help="folder of decoded X_train/y_train/X_test/y_test .npy arrays")
    parser.add_argument("--flip", action="store_true", help="add mirrored training images")
    parser.add_argument("--alphas", type=float, nargs="+", default=ALPHAS, help="candidate penalties per row")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="preset parameter overrides")
    parser.add_argument("--train-size", type=int, help="training images used (random, seed 0); default all")
    parser.add_argument("--validate", type=int, help="score on this many held-out training images, not the test set")
    parser.add_argument("--chunk", type=int, default=2000, help="images transformed per partial_fit call")
    args = parser.parse_args()
    start = time.perf_counter()

    def say(what):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"[{time.perf_counter() - start:7.0f} s, peak {peak:.1f} GiB] {what}", flush=True)

    X, y, X_test, y_test = load(args.dataset, args.data_home, args.npy)
    X, y, X_test, y_test = training_and_evaluation(X, y, X_test, y_test, train_size=args.train_size,
                                                   validate=args.validate)
    overrides = parse_overrides(args.set)
    print(f"{platform.machine()}; {args.dataset}: train {X.shape}, evaluated on {X_test.shape} "
          f"({'held-out training images' if args.validate else 'official test set'}); preset "
          f"{PRESET[args.dataset]} {overrides}; flips: {args.flip}", flush=True)
    results = run_preset(PRESET[args.dataset], X, y, X_test, y_test, flip=args.flip, alphas=args.alphas,
                         chunk=args.chunk, progress=say, **overrides)
    say(f"held-out accuracy per alpha {dict(zip(results['alphas'], results['validation_scores']))}; "
        f"chosen alpha {results['alpha']}")
    print(f"{'HELD-OUT' if args.validate else 'TEST'} ACCURACY {results['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
