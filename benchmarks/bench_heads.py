"""Linear heads for wide fixed features, side by side: fit time and test accuracy in one run.

    python benchmarks/bench_heads.py FEATURES_DIR --data-home ../shared/data [--timeout 600]
        [--memory-limit 3] [--heads ...]

FEATURES_DIR holds X_train.npy, y_train.npy, X_test.npy, y_test.npy: fixed features (rows = images)
of a training and a test set. When they are missing, they are made there first from the CIFAR-10
archive in --data-home with FEATURES (the coates-cifar10 preset with 800 filters pooled on quadrants:
800 x 2 signs x 4 = 6,400 features, 50,000 training rows, the size class the issue asks about); any
other features can be put there instead. They are standardised once, in place (StandardScaler fitted
on the training rows, as a Pipeline would), then every head is fitted on the same float32 matrix,
each in its own forked process so that a head past `--timeout` seconds is stopped and reported as
such instead of stalling the run, and a head whose process would grow past `--memory-limit` GiB
(the shared features included: RLIMIT_DATA in the child) stops with a MemoryError, reported as
"memory", instead of taking the machine's memory from other jobs. Threads: whatever BLAS and
scikit-learn get on the machine (2 cores for the numbers in docs/heads.md). Regularisation is
chosen on held-out training rows where the head can do that itself (GramRidgeClassifier,
RidgeClassifierCV); the others run with the settings a user would try first, listed in HEADS.
"""

import argparse
import multiprocessing
import platform
import resource
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV, SGDClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skconvfeat import GramRidgeClassifier, make_preset
from skconvfeat.datasets import load_image_folder

# Overrides of coates-cifar10, all the sizes spelled out so that a change to the preset does not
# change this benchmark's features: 800 filters x 2 signs x 2x2 regions = 6,400 features.
# 100,000 sampled patches (not the preset's 400,000) keep the k-means fit to a minute or two.
FEATURES = {"bank_params": {"n_filters": 800}, "pool_grid": 2, "n_patches": 100_000}
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)  # per training row, for standardised features (see GramRidgeClassifier)


def _heads(n_train):
    """name: (estimator factory, what the settings are). Factories, so that nothing is built unless run."""
    return {
        "gram_ridge": (
            lambda: GramRidgeClassifier(alphas=PENALTIES, random_state=0),
            f"alphas={PENALTIES} per row, 10% held out, refit on all",
        ),
        "ridge": (
            lambda: RidgeClassifier(alpha=1e-3 * n_train),
            "alpha=1e-3*n (one penalty, solver='auto')",
        ),
        "ridge_cv": (
            lambda: RidgeClassifierCV(alphas=[a * n_train for a in PENALTIES]),
            "same alphas, efficient leave-one-out",
        ),
        "logistic_lbfgs": (lambda: LogisticRegression(max_iter=300), "C=1, max_iter=300"),
        "logistic_saga": (lambda: LogisticRegression(solver="saga", max_iter=20, tol=1e-3), "C=1, max_iter=20"),
        "linear_svc": (lambda: LinearSVC(C=1e-3, max_iter=200), "C=1e-3, max_iter=200 (dual)"),
        "sgd_hinge": (
            lambda: SGDClassifier(alpha=1e-4, max_iter=20, tol=1e-3, random_state=0),
            "hinge, alpha=1e-4, max_iter=20 (also partial_fit)",
        ),
    }


def _fit_and_score(head, X_train, y_train, X_test, y_test, queue, memory_limit):
    resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    try:
        queue.put(_timed_fit(head, X_train, y_train, X_test, y_test))
    except MemoryError:
        queue.put("memory")


def _timed_fit(head, X_train, y_train, X_test, y_test):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model = head().fit(X_train, y_train)
        seconds = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return seconds, float(model.score(X_test, y_test)), converged


def run(head, data, timeout, memory_limit):
    """Fit in a forked child (it shares `data` without a copy); None if past `timeout` seconds."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_and_score, args=(head, *data, queue, memory_limit))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.terminate()
        child.join()
        return None
    return queue.get() if not queue.empty() else "failed"


def make_features(folder, data_home):
    archive = Path(data_home) / "cifar10-jpeg.tar.gz"
    train, test = (load_image_folder(archive, subset=s) for s in ("train", "test"))
    conv = make_preset("coates-cifar10", random_state=0, **FEATURES).fit(train.images)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in [("X_train", conv.transform(train.images)), ("y_train", train.target),
                        ("X_test", conv.transform(test.images)), ("y_test", test.target)]:
        np.save(folder / f"{name}.npy", array)


def load(folder, data_home):
    folder = Path(folder)
    if not (folder / "y_test.npy").exists():
        make_features(folder, data_home)
    arrays = [np.load(folder / f"{name}.npy") for name in ("X_train", "y_train", "X_test", "y_test")]
    X_train, y_train, X_test, y_test = arrays
    # In place: a copy of a 50,000 x 6,400 float32 matrix is 1.2 GiB more.
    scaler = StandardScaler(copy=False).fit(X_train)
    return scaler.transform(X_train), y_train, scaler.transform(X_test), y_test


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("features", help="folder with X_train.npy, y_train.npy, X_test.npy, y_test.npy")
    parser.add_argument("--data-home", default="../shared/data", help="where cifar10-jpeg.tar.gz is")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per head before it is stopped")
    parser.add_argument("--memory-limit", type=float, default=3.0,
                        help="GiB a head's process may hold, the shared features included (RLIMIT_DATA)")
    parser.add_argument("--heads", nargs="+", help="names from HEADS (default: all)")
    args = parser.parse_args()
    data = load(args.features, args.data_home)
    heads = _heads(len(data[0]))
    # OpenBLAS allocates its per-thread buffers on first use and, if that fails under a child's
    # memory limit, retries forever instead of raising: start it here, so children inherit them.
    np.dot(data[0][:2], data[0][:2].T)
    names = args.heads or list(heads)
    unknown = sorted(set(names) - set(heads))
    if unknown:
        parser.error(f"unknown heads {unknown}; choose from {sorted(heads)}")
    print(f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} cores; "
          f"train {data[0].shape}, test {data[2].shape}, float32, standardised")
    print(f"{'head':16} {'fit s':>8} {'test acc':>9}  converged  settings")
    for name in names:
        factory, settings = heads[name]
        result = run(factory, data, args.timeout, int(args.memory_limit * 2**30))
        if result is None:
            print(f"{name:16} {'>' + format(args.timeout, '.0f'):>8} {'-':>9}  -          {settings}", flush=True)
        elif result in ("failed", "memory"):
            print(f"{name:16} {result:>8} {'-':>9}  -          {settings}", flush=True)
        else:
            seconds, accuracy, converged = result
            print(f"{name:16} {seconds:8.1f} {accuracy:9.4f}  {str(converged):9}  {settings}", flush=True)


if __name__ == "__main__":
    main()
