"""Fine pooling grids with LowRankHeadClassifier, on held-out training images only (issue 25).

    python benchmarks/fine_grid_probe.py DATA/cifar10-jpeg.tar.gz [--grid 6] [--filters 1600]
        [--fraction 0.25] [--rank 64] [--learning-rates 1e-3,3e-3] [--max-epochs 40] [--train-size 10000]
        [--validate 5000] [--ridge]

Thiry et al. (2021) pool their nearest-patch maps on a 6x6 grid and read them with a low-rank head; our
presets pool on a 3x3 grid and solve a ridge head, which a 6x6 grid of 3,200 maps (115,200 features)
would need 99 GiB for. This script asks, on the split the presets were chosen on (10,000 CIFAR-10 JPEG
training images scored on 5,000 other training images, seed 0; the test set is never loaded), what the
finer grid gives with the head that fits it. Each learning rate is one fit with early stopping on a tenth
of the 10,000 (the head's own split); the 5,000 held-out images then score every rate, which is what
chooses one, as the penalties of the preset table were chosen. Features are computed once, stored as
float16 (values are window averages of 0/1 indicators: 16-bit floats hold them to 3 digits). ``--ridge``
adds GramRidgeClassifier on the same features (only where n_features allows its Gram matrix).
Prints one JSON line per fit, then a summary table.
"""

import argparse
import json
import resource
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skconvfeat import GramRidgeClassifier, LowRankHeadClassifier, make_preset
from skconvfeat.datasets import load_image_folder

CHUNK = 1000  # images transformed at a time: the float32 scratch of one chunk stays under 1 GiB at 6x6


def features(transformer, images, chunk=CHUNK):
    """float16 features of ``images``, ``chunk`` at a time (never a float32 copy of the whole matrix): the values
    are window averages of 0/1 indicators, which 16-bit floats hold to 3 digits."""
    first = transformer.transform(images[:chunk])
    out = np.empty((len(images), first.shape[1]), dtype=np.float16)
    out[:chunk] = first
    for start in range(chunk, len(images), chunk):
        out[start : start + chunk] = transformer.transform(images[start : start + chunk])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--grid", type=int, default=6)
    parser.add_argument("--filters", type=int, default=1600)
    parser.add_argument("--fraction", type=float, default=0.25, help="nearest_fraction (0.25 won at 3x3)")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--learning-rates", default="1e-3,3e-3")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--validate", type=int, default=5_000)
    parser.add_argument("--ridge", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    data = load_image_folder(args.archive, subset="train")
    order = np.random.RandomState(0).permutation(len(data.target))  # as `skconvfeat preset --validate`
    held, train = order[: args.validate], order[args.validate :][: args.train_size]
    transformer = make_preset("nearest-cifar10", bank_params={"n_filters": args.filters},
                              nearest_fraction=args.fraction, pool_grid=args.grid, random_state=0)
    transformer.fit(data.images[train])
    X, X_held = features(transformer, data.images[train]), features(transformer, data.images[held])
    y, y_held = data.target[train], data.target[held]
    print(json.dumps({"features": X.shape[1], "feature_seconds": round(time.perf_counter() - started)}), flush=True)

    results = []
    for rate in [float(r) for r in args.learning_rates.split(",")]:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            head = LowRankHeadClassifier(grid=args.grid, rank=args.rank, learning_rate=rate,
                                         max_epochs=args.max_epochs, random_state=0).fit(X, y)
        results.append({"head": f"low-rank {args.rank}, Adam {rate:g}", "held_out": head.score(X_held, y_held),
                        "epochs": head.n_iter_, "best_epoch": head.best_epoch_,
                        "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
                        "seconds": round(time.perf_counter() - start)})
        print(json.dumps(results[-1]), flush=True)
    if args.ridge:
        start = time.perf_counter()
        head = GramRidgeClassifier(alphas=(0.03, 0.1, 0.3, 1.0), standardize=True, random_state=0)
        head.fit(X.astype(np.float32), y)
        results.append({"head": f"ridge, penalty {head.alpha_:g}", "held_out": head.score(X_held.astype(np.float32),
                        y_held), "seconds": round(time.perf_counter() - start)})
        print(json.dumps(results[-1]), flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n{args.filters} filters, nearest {args.fraction}, {args.grid}x{args.grid} grid, {X.shape[1]:,} features; "
          f"{len(y):,} training / {len(y_held):,} held-out images; peak {peak:.1f} GiB, "
          f"{time.perf_counter() - started:.0f} s")
    print("| head | held-out accuracy | epochs (best) | seconds |\n|---|---|---|---|")
    for r in results:
        epochs = f"{r['epochs']} ({r['best_epoch']}){'' if r['converged'] else ', still rising'}" if "epochs" in r else "-"
        print(f"| {r['head']} | {100 * r['held_out']:.2f}% | {epochs} | {r['seconds']} |")


if __name__ == "__main__":
    main()
