"""How the coates-digits preset's settings were chosen: CV on the first 1,000 digits only.

    python benchmarks/tune_digits.py [--n-digits 1000]
    python benchmarks/tune_digits.py --nested    # the choice redone inside each of bench_accuracy's folds

The reported digits score (5-fold CV on all 1,797 digits, ``bench_accuracy.py``) is never used to
choose: candidates are scored by stratified 3-fold CV repeated twice (6 fits each, seed 0) on the
first ``--n-digits`` digits, features then StandardScaler then a ridge classifier whose penalty
(per training row, as GramRidgeClassifier's) is chosen by RidgeClassifierCV's leave-one-out on the
training folds: the same model as bench_accuracy's head, with a cheaper penalty choice
(``X X^T`` of a few hundred rows instead of a Gram matrix of thousands of features).
Prints every candidate's mean accuracy and errors, best first (ties: fewer features first).

Those first 1,000 digits also sit in bench_accuracy's test folds, so its digits score is not a
clean held-out estimate. ``--nested`` gives one: in each of bench_accuracy's 5 folds it picks the
candidate by the same CV on that fold's training digits only, then fits it there and scores the
held-out fold with bench_accuracy's own head.

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


def transformer(n_filters, **params):
    """The coates-digits preset with a candidate's settings."""
    return make_preset("coates-digits", random_state=0, bank_params={"n_filters": n_filters}, **params)


def model(n_train, **params):
    head = RidgeClassifierCV(alphas=[a * n_train for a in PENALTIES])
    return make_pipeline(transformer(**params), StandardScaler(), head)


def rank_candidates(X, y):
    """``(accuracy, -n_features, params)`` of every candidate by 3-fold CV x 2 on ``X``, best first."""
    cv = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)
    n_train = len(X) * 2 // 3
    rows = []
    for n_filters, nonlinearity, pool_grid in CANDIDATES:
        params = {"n_filters": n_filters, "nonlinearity": nonlinearity, "pool_grid": pool_grid}
        start = time.perf_counter()
        scores = cross_val_score(model(n_train, **params), X, y, cv=cv)
        n_features = transformer(**params).fit(X[:50]).n_features_out_
        rows.append((scores.mean(), -n_features, params))
        print(f"  {params}  {scores.mean():.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)


def nested():
    """bench_accuracy's digits score with the candidate chosen inside each fold's training digits."""
    from bench_accuracy import head, load  # a sibling script: the same folds and head

    images, labels, folds = load("digits", None)
    scores = []
    for i, (train, test) in enumerate(folds):
        print(f"fold {i}: choosing on its {len(train)} training digits", flush=True)
        _, _, params = rank_candidates(images[train], labels[train])[0]
        conv = transformer(**params).fit(images[train])  # unsupervised: no labels
        fitted = head().fit(conv.transform(images[train]), labels[train])
        scores.append(fitted.score(conv.transform(images[test]), labels[test]))
        print(f"fold {i}: chose {params} -> {scores[-1]:.4f} on its {len(test)} held-out digits", flush=True)
    print(f"\nnested 5-fold CV, {len(images):,} digits: {np.mean(scores):.2%} (folds: {', '.join(f'{s:.4f}' for s in scores)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-digits", type=int, default=1000, help="the first N digits are the tuning set")
    parser.add_argument("--nested", action="store_true", help="choose inside each of bench_accuracy's folds and score")
    args = parser.parse_args()
    if args.nested:
        return nested()
    digits = load_digits()
    X, y = digits.images[: args.n_digits, ..., None], digits.target[: args.n_digits]
    rows = rank_candidates(X, y)
    print(f"\nfirst {len(X)} digits, 3-fold x 2 repeats; best first:")
    for accuracy, n_features, params in rows:
        errors = round((1 - accuracy) * len(X) * 2)  # over the 2 repeats, each digit predicted twice
        print(f"{accuracy:.4f}  {errors:3d} errors / {2 * len(X)}  {-n_features:6d} features  {params}")


if __name__ == "__main__":
    main()
