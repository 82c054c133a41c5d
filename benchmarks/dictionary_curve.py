"""Held-out accuracy against dictionary size, past the ridge head's Gram matrix (issue 25), training images only.

    python benchmarks/dictionary_curve.py DATA/cifar10-jpeg.tar.gz [--filters 400,800,1600,3200,6400,12800]
        [--train-size 10000] [--validate 5000] [--alphas 0.03,0.1,0.3,1] [--out rows.jsonl]

Thiry et al. (2021) go from 82.3% to 85.6% on CIFAR-10 by growing their patch dictionary from 2,048 to
16,384. Our ridge head solves an ``n_features x n_features`` Gram matrix, which stops near 40,000 features
(2,200 filters on a 3x3 grid) on 24 GiB, so the question "where does the curve go?" is asked here on the
split the presets were chosen on (10,000 CIFAR-10 JPEG training images scored on 5,000 *other* training
images, seed 0; the test set is never loaded), with ``nearest-cifar10``'s recipe (k-means centroids, 0.25
of them marked nearest, 3x3 grid) and only the number of centroids changing.

The head is the same ridge as ``GramRidgeClassifier(standardize=True)``, solved in its dual form: with
fewer rows (10,000) than features (up to 230,400), ``W = Z^T (Z Z^T + alpha n I)^-1 Y`` needs the
``n x n`` kernel ``Z Z^T`` (0.8 GB) instead of the ``p x p`` Gram matrix, and the features are read a block
of columns at a time from one float16 matrix. ``tests/test_dictionary_curve.py`` checks it against
``GramRidgeClassifier``. The penalty is chosen as that head chooses it, on a random tenth of the 10,000
(the rest fitted), then refitted on all 10,000 and scored once on the 5,000; one difference, said here: the
per-feature scales come from all 10,000 training rows during the choice too (the tenth's included; the
5,000 held-out images never), where the head would take them from the nine tenths it fits.

Memory: the features of the training and held-out images as float16, ``2 * 18 * n_filters`` bytes an image
(6.9 GB for 15,000 images at 12,800 centroids), the two kernels in float64 (1.2 GB) and their solves' copies:
9.8 GiB at its peak for 12,800 centroids. Time on one core: 41 min for 3,200-12,800 centroids (docs/results.md).

One JSON line per dictionary size goes to ``--out`` as it finishes; a rerun skips the sizes already there
(a run stopped part-way keeps what it finished). Prints a table at the end.
"""

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.linalg

from fine_grid_probe import features  # run as `python benchmarks/dictionary_curve.py`: its own folder is on the path
from skconvfeat import make_preset
from skconvfeat.datasets import load_image_folder

CHUNK = 500  # images transformed at a time: the float32 scratch of a chunk stays under 0.5 GiB at 12,800 filters
BLOCK = 4096  # feature columns standardised (as float32) at a time for the kernel products
ROW_KEYS = {"filters", "features", "held_out", "alpha", "seconds"}  # what the table reads back from --out
SECONDS_KEYS = {"bank", "features", "kernels", "solves"}


def feature_scales(X):
    """Per-feature mean and standard deviation over the rows (float64), as GramRidgeClassifier(standardize=True):
    features of (nearly) zero variance keep a scale of 1."""
    mean, variance = np.empty(X.shape[1]), np.empty(X.shape[1])
    for j in range(0, X.shape[1], BLOCK):
        block = X[:, j : j + BLOCK].astype(np.float64)
        mean[j : j + BLOCK], variance[j : j + BLOCK] = block.mean(axis=0), block.var(axis=0)
    unscaled = variance <= 10 * np.finfo(np.float64).eps * (1 + mean**2)
    return mean, np.sqrt(np.where(unscaled, 1.0, variance))


def kernels(X, X_other, mean, scale):
    """``Z Z^T`` and ``Z_other Z^T`` for the standardised features ``Z``, one block of columns at a time.

    Each block's product runs in float32 (the features have 3 digits) and is summed in float64."""
    K, K_other = np.zeros((len(X), len(X))), np.zeros((len(X_other), len(X)))
    for j in range(0, X.shape[1], BLOCK):
        m, s = mean[j : j + BLOCK].astype(np.float32), scale[j : j + BLOCK].astype(np.float32)
        Z = (X[:, j : j + BLOCK].astype(np.float32) - m) / s
        K += Z @ Z.T
        K_other += ((X_other[:, j : j + BLOCK].astype(np.float32) - m) / s) @ Z.T
    return K, K_other


def dual_ridge_decision(K_fit, K_pred, Y, alpha):
    """Decision values of ridge with an unpenalised intercept, from kernels alone.

    ``K_fit`` is ``Z Z^T`` among the fitted rows, ``K_pred`` the predicted rows' ``Z`` against them; ``Y``
    the fitted rows' targets. The features are centred on the fitted rows' mean by centring the kernels,
    and the penalty is per row (``alpha * n``), as in GramRidgeClassifier.
    """
    n = len(K_fit)
    col_mean = K_fit.mean(axis=0)
    total_mean = col_mean.mean()
    centred = K_fit - col_mean[:, None] - col_mean[None, :] + total_mean
    centred[np.diag_indices(n)] += alpha * n
    y_mean = Y.mean(axis=0)
    dual = scipy.linalg.solve(centred, Y - y_mean, assume_a="pos", overwrite_a=True)
    pred_centred = K_pred - K_pred.mean(axis=1, keepdims=True) - col_mean[None, :] + total_mean
    return pred_centred @ dual + y_mean


def half_decade_out(alpha, up):
    """The neighbour of ``alpha`` in the penalties' series ..., 0.1, 0.3, 1, 3, 10, ... (above when ``up``)."""
    exponent = math.floor(math.log10(alpha) + 1e-9)
    first = round(alpha / 10.0**exponent) == 1  # 1, 10, 0.1 ... rather than 3, 30, 0.3 ...
    factor = (3 if first else 10) if up else (0.3 if first else 1)
    return round(factor * 10.0**exponent, 12)


def follow_grid(score, alphas, extensions=2):
    """``score`` (alpha -> accuracy) on every value of ``alphas`` and, where the best is an end, the next value
    out in the half-decade series, again while the newest wins, up to ``extensions`` more (the study's
    ``--grid-extensions`` rule: a larger dictionary wants a larger penalty, and a curve read at a grid's end
    would understate it). Returns ``(best alpha, {alpha: score})``; ties go to the smallest, as the first
    of GramRidgeClassifier's grid."""
    scores = {alpha: score(alpha) for alpha in alphas}

    def best():
        grid = sorted(scores)
        return max(grid, key=lambda a: (scores[a], -grid.index(a)))

    for _ in range(extensions):
        grid, chosen = sorted(scores), best()
        if len(grid) < 2 or chosen not in (grid[0], grid[-1]):
            break
        new = half_decade_out(chosen, up=chosen == grid[-1])
        scores[new] = score(new)
        if scores[new] <= scores[chosen]:
            break
    return best(), scores


def choose_and_score(K, K_held, y, y_held, alphas, random_state=0):
    """The penalty chosen on a random tenth of the training rows (:func:`follow_grid`), then refitted on all
    and scored on the held-out rows: ``(alpha, {alpha: tenth accuracy}, held-out accuracy)``."""
    classes = np.unique(y)
    Y = np.where(y[:, None] == classes[None, :], 1.0, -1.0)  # RidgeClassifier's +-1 targets
    tenth = np.random.RandomState(random_state).permutation(len(y))[: len(y) // 10]
    part = np.setdiff1d(np.arange(len(y)), tenth)
    K_part, K_tenth = K[np.ix_(part, part)], K[np.ix_(tenth, part)]

    def tenth_score(alpha):
        decision = dual_ridge_decision(K_part, K_tenth, Y[part], alpha)
        return float(np.mean(classes[decision.argmax(axis=1)] == y[tenth]))

    alpha, scores = follow_grid(tenth_score, alphas)
    decision = dual_ridge_decision(K, K_held, Y, alpha)
    return alpha, scores, float(np.mean(classes[decision.argmax(axis=1)] == y_held))


def finished_rows(path):
    """The rows already in ``path``; a last line cut short by an interruption is dropped, any other damage refused."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write was interrupted
                break
            raise ValueError(f"{path}, line {number}: not a JSON row; move the file aside to start again.")
        if not (isinstance(row, dict) and ROW_KEYS <= row.keys() and isinstance(row["filters"], int)
                and isinstance(row["seconds"], dict) and SECONDS_KEYS <= row["seconds"].keys()):
            raise ValueError(f"{path}, line {number}: not a row of this script; move the file aside to start again.")
        rows.append(row)
    return rows


def _positive_list(parser, option, text, kind):
    """``text``, comma-separated, as positive ``kind`` values; a usage error naming ``option`` otherwise."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(v > 0 for v in values):
        parser.error(f"argument {option}: expected comma-separated positive {kind.__name__}s, got {text!r}")
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--filters", default="400,800,1600,3200,6400,12800")
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--validate", type=int, default=5_000)
    parser.add_argument("--alphas", default="0.03,0.1,0.3,1", help="the penalties per row of the preset table")
    parser.add_argument("--out", type=Path, default=Path("dictionary_curve.jsonl"))
    args = parser.parse_args(argv)
    alphas, filters = _positive_list(parser, "--alphas", args.alphas, float), _positive_list(
        parser, "--filters", args.filters, int)
    if not (args.train_size > 0 and args.validate > 0):
        parser.error(f"--train-size and --validate must be positive; got {args.train_size} and {args.validate}")
    rows = finished_rows(args.out)
    if rows:  # rewritten whole first, so that a line cut short by an interruption is not appended to
        scratch = args.out.with_suffix(".tmp")
        scratch.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(scratch, args.out)
    todo = [f for f in filters if f not in {r["filters"] for r in rows}]

    data = load_image_folder(args.archive, subset="train")
    order = np.random.RandomState(0).permutation(len(data.target))  # as `skconvfeat preset --validate`
    held, train = order[: args.validate], order[args.validate :][: args.train_size]
    y, y_held = data.target[train], data.target[held]
    for n_filters in todo:
        started = time.perf_counter()
        transformer = make_preset("nearest-cifar10", bank_params={"n_filters": n_filters}, random_state=0)
        transformer.fit(data.images[train])
        fitted = time.perf_counter()
        X, X_held = (features(transformer, data.images[subset], CHUNK) for subset in (train, held))
        featured = time.perf_counter()
        mean, scale = feature_scales(X)
        K, K_held = kernels(X, X_held, mean, scale)
        del X, X_held
        kernelled = time.perf_counter()
        alpha, tenth_scores, held_out = choose_and_score(K, K_held, y, y_held, alphas)
        row = {"filters": n_filters, "features": len(mean), "held_out": held_out, "alpha": alpha,
               "tenth_scores": {f"{a:g}": score for a, score in tenth_scores.items()},
               "seconds": {"bank": round(fitted - started), "features": round(featured - fitted),
                           "kernels": round(kernelled - featured), "solves": round(time.perf_counter() - kernelled)},
               "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)}
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{len(y):,} training / {len(y_held):,} held-out CIFAR-10 training images, nearest 0.25, 3x3 grid")
    print("| centroids | features | held-out accuracy | penalty | seconds (bank, features, kernels, solves) |")
    print("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["filters"]):
        s = r["seconds"]
        print(f"| {r['filters']:,} | {r['features']:,} | {100 * r['held_out']:.2f}% | {r['alpha']:g} | "
              f"{s['bank']}, {s['features']}, {s['kernels']}, {s['solves']} |")


if __name__ == "__main__":
    main()
