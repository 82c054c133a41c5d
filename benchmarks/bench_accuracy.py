"""Our presets, old and new, against kymatio's Scattering2D (fixed wavelets): same head, same splits, one table.

    python benchmarks/bench_accuracy.py --data-home ../shared/data --kymatio-python /tmp/kymatio-venv/bin/python
    python benchmarks/bench_accuracy.py ... --datasets cifar10 --presets nearest-cifar10   # a subset of rows

Why a second Python: kymatio 0.3.0 (the current release) imports ``scipy.special.sph_harm``, which
SciPy 1.15 removed, so it cannot share this environment. Make its own venv once:

    python3 -m venv /tmp/kymatio-venv && /tmp/kymatio-venv/bin/pip install kymatio "scipy<1.15" numpy

This script then writes each dataset's images to a temporary .npy file, runs ``KYMATIO_PROGRAM``
under ``--kymatio-python`` (a subprocess) to compute the scattering coefficients, and reads them
back; everything else (splits, head, scoring) runs here, identically for both feature sets.

Splits: digits, 5-fold stratified CV (seed 0); MNIST, 20,000 training images (a stratified random
subset, seed 0) / the official 10,000 test images; CIFAR-10 (the JPEG archive), 10,000 training
images likewise / the official test set. Head for both: StandardScaler + GramRidgeClassifier
(penalty per row among 1e-3, 1e-2, 1e-1, chosen on 10% of the training rows, never on the test set). Scattering: J=2, L=8 (kymatio's
defaults for its linear MNIST and CIFAR examples), colour channels scattered separately.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconvfeat import GramRidgeClassifier, make_preset
from skconvfeat.datasets import fetch_mnist, load_image_folder

# dataset: the presets made for it, the first one the default, the others its variants (more filters,
# Thiry et al.'s nearest encoding), so that every preset is scored on the same split as the scattering.
OURS = {"digits": ["coates-digits"], "mnist": ["coates-mnist", "coates-mnist-grid4"],
        "cifar10": ["coates-cifar10", "coates-cifar10-1600", "nearest-cifar10"]}
TRAIN_SIZE = {"mnist": 20_000, "cifar10": 10_000}
SCATTERING_J = 2
BATCH = 256  # images per kymatio call: bounds its memory

KYMATIO_PROGRAM = """
import sys
import numpy as np
from kymatio.numpy import Scattering2D
images = np.load(sys.argv[1])                              # (n, h, w, c) float32
n, h, w, c = images.shape
scattering = Scattering2D(J=int(sys.argv[3]), shape=(h, w))
planes = images.transpose(0, 3, 1, 2)                      # (n, c, h, w): channels scattered separately
out = [scattering(planes[i:i + {batch}]).reshape(min({batch}, n - i), -1) for i in range(0, n, {batch})]
np.save(sys.argv[2], np.concatenate(out).astype(np.float32))
""".format(batch=BATCH)


def head():
    return make_pipeline(StandardScaler(), GramRidgeClassifier(alphas=(1e-3, 1e-2, 1e-1), random_state=0))


def scattering_features(images, kymatio_python):
    """Scattering coefficients of images, computed by kymatio in its own Python (a subprocess)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "images.npy", Path(tmp) / "features.npy"
        # Scale is irrelevant after StandardScaler: the scattering modulus is positively homogeneous.
        np.save(src, images.astype(np.float32))
        subprocess.run([kymatio_python, "-c", KYMATIO_PROGRAM, src, dst, str(SCATTERING_J)], check=True)
        return np.load(dst)


def load(name, data_home):
    """All images ((n, h, w, c), their own pixel scale), their labels, and the (train rows, test rows) splits."""
    if name == "digits":
        digits = load_digits()
        images = digits.images[..., None]  # values 0-16, as the coates-digits preset expects
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(images, digits.target)
        return images, digits.target, list(folds)
    if name == "mnist":
        train, test = (fetch_mnist(data_home=data_home, subset=s, download_if_missing=False) for s in ("train", "test"))
    else:
        archive = Path(data_home) / "cifar10-jpeg.tar.gz"
        train, test = (load_image_folder(archive, subset=s) for s in ("train", "test"))
    X, _, y, _ = train_test_split(
        _images(train.images), train.target, train_size=TRAIN_SIZE[name], stratify=train.target, random_state=0
    )
    images = np.concatenate([X, _images(test.images)])
    labels = np.concatenate([y, test.target])
    return images, labels, [(np.arange(len(X)), np.arange(len(X), len(images)))]


def _images(images):
    return images[..., None] if images.ndim == 3 else images


def evaluate(labels, splits, features):
    """Mean test accuracy of the head over `splits`; `features(train_rows, test_rows)` gives both matrices."""
    scores = []
    for train, test in splits:
        train_features, test_features = features(train, test)
        scores.append(head().fit(train_features, labels[train]).score(test_features, labels[test]))
    return float(np.mean(scores))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--kymatio-python", required=True, help="python of a venv with kymatio and scipy<1.15")
    parser.add_argument("--datasets", nargs="+", default=list(OURS), choices=list(OURS))
    parser.add_argument("--presets", nargs="+", default=None, choices=sorted({p for ps in OURS.values() for p in ps}),
                        help="only these of each dataset's presets (default: all of them)")
    args = parser.parse_args()
    print(f"{'dataset':9} {'split':30} {'ours':>8} {'kymatio':>8}  preset (s ours / s kymatio)")
    for name in args.datasets:
        images, labels, splits = load(name, args.data_home)
        start = time.perf_counter()
        scattered = scattering_features(images, args.kymatio_python)  # a fixed transform: once for all rows
        acc_kymatio = evaluate(labels, splits, lambda train, test: (scattered[train], scattered[test]))
        t_kymatio = time.perf_counter() - start
        del scattered
        train, test = splits[0]
        split = f"5-fold CV, {len(images):,} images" if len(splits) > 1 else f"{len(train):,} train / {len(test):,} test"
        for preset in (p for p in OURS[name] if args.presets is None or p in args.presets):

            def ours(train, test, preset=preset):
                conv = make_preset(preset, random_state=0).fit(images[train])  # unsupervised: no labels
                return conv.transform(images[train]), conv.transform(images[test])

            start = time.perf_counter()
            acc_ours = evaluate(labels, splits, ours)
            t_ours = time.perf_counter() - start
            print(f"{name:9} {split:30} {acc_ours:8.2%} {acc_kymatio:8.2%}  {preset} ({t_ours:.0f} / {t_kymatio:.0f})",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
