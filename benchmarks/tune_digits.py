"""How the coates-digits preset's settings were chosen: CV on the first 1,000 digits only.

    python benchmarks/tune_digits.py [--n-digits 1000]

The reported digits score (5-fold CV on all 1,797 digits, ``bench_accuracy.py``) is never used to
choose: candidates are scored by stratified 3-fold CV repeated twice (6 fits each, seed 0) on the
first ``--n-digits`` digits, features then StandardScaler then a ridge classifier whose penalty
(per training row, as GramRidgeClassifier's) is chosen by RidgeClassifierCV's leave-one-out on the
training folds: the same model as bench_accuracy's head, with a cheaper penalty choice
(``X X^T`` of a few hundred rows instead of a Gram matrix of thousands of features).
Prints every candidate's mean accuracy and errors, best first (ties: fewer features first).

Candidates vary the levers the issue names (filters, encoding, pooling grid) at a budget of at most
3,600 features, today's size: the reported head factorises an ``n_features``-square Gram matrix,
so a wider preset would cost its users (and bench_accuracy) several times more.
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifierCV
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import make_preset

PENALTIES = (1e-3, 1e-2, 1e-1)  # per training row, as bench_accuracy's head
TWO_SIDED, ONE_SIDED = "two_sided_soft_threshold", "soft_threshold"
# (filters, encoding, pooling grid): features = filters x (2 if two-sided) x grid^2 <= 3,600.
CANDIDATES = [
    (200, TWO_SIDED, 3),  # the preset before this tuning (now: 200, triangle, 4x4)
    (400, TWO_SIDED, 2),
    (100, TWO_SIDED, 4),
    (400, ONE_SIDED, 3),
    (800, ONE_SIDED, 2),
    (400, "triangle", 3),
    (800, "triangle", 2),
    (200, "triangle", 4),
]


def model(n_train, n_filters, **params):
    conv = make_preset("coates-digits", random_state=0, bank_params={"n_filters": n_filters}, **params)
    return make_pipeline(conv, StandardScaler(), RidgeClassifierCV(alphas=[a * n_train for a in PENALTIES]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-digits", type=int, default=1000, help="the first N digits are the tuning set")
    args = parser.parse_args()
    digits = load_digits()
    X, y = digits.images[: args.n_digits, ..., None], digits.target[: args.n_digits]
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)
    n_train = len(X) * 2 // 3
    rows = []
    for n_filters, nonlinearity, pool_grid in CANDIDATES:
        params = {"n_filters": n_filters, "nonlinearity": nonlinearity, "pool_grid": pool_grid}
        start = time.perf_counter()
        scores = cross_val_score(model(n_train, **params), X, y, cv=cv)
        n_features = model(n_train, **params)[0].fit(X[:50]).n_features_out_
        rows.append((scores.mean(), -n_features, params, time.perf_counter() - start))
        print(f"{params}  {scores.mean():.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\nfirst {len(X)} digits, 3-fold x 2 repeats; best first:")
    for accuracy, n_features, params, _ in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True):
        errors = round((1 - accuracy) * len(X) * 2)  # over the 2 repeats, each digit predicted twice
        print(f"{accuracy:.4f}  {errors:3d} errors / {2 * len(X)}  {-n_features:6d} features  {params}")


if __name__ == "__main__":
    main()
