"""A preset and its streamed ridge head on a whole training set, the test set scored once.

The recipe behind the README's preset numbers (99.43% on MNIST, 78.52% on the CIFAR-10 JPEG copy),
as a function of the installed package (``skconvfeat preset``) rather than a script in
``benchmarks/``. The model is ``make_preset(name)`` then ``GramRidgeClassifier(standardize=True)``
(the same model as ``StandardScaler`` + ``RidgeClassifier``), fed by ``partial_fit`` with the
features of ``chunk`` images at a time, so the feature matrix is never held whole: memory is the
head's ``8 * n_features**2``-byte Gram matrix plus one chunk. The penalty is chosen on a random
tenth of the training images, never on the test set; with ``flip`` every training image's mirror
is added, with ``shift`` its copies moved by that many pixels up, down, left and right, with ``rotate``
its copies turned by that many degrees each way; the held-out images' copies only after the penalty is
chosen. With ``checkpoint`` the head's sums are saved as the training rows stream in, and the same call
started again goes on from them.
"""

import os
import resource
import time
from numbers import Integral, Real

import numpy as np
from scipy import ndimage
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._heads import GramRidgeClassifier
from .._presets import PRESETS, make_preset
from ._checkpoint import Checkpoint, run_identity
from ._environment import environment

__all__ = ["PRESET_ALPHAS", "run_preset", "training_and_evaluation"]

# Ridge penalties per unit of weight: 1e-2 won on held-out CIFAR-10 rows at 400 and 800 filters,
# 1e-4 on MNIST (docs/results.md); the default grid spans both.
PRESET_ALPHAS = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)
HELD_OUT = 0.1  # of the training images, for the penalty


def training_and_evaluation(X, y, X_test, y_test, *, train_size=None, validate=None, seed=0):
    """``(X, y, X_eval, y_eval)``: a random ``train_size`` of the training images (all when None), scored on
    the test set, or, with ``validate``, on that many other training images (the test set stays unseen
    while settings are chosen)."""
    order = np.random.RandomState(seed).permutation(len(X))
    if validate:
        X_test, y_test, order = X[order[:validate]], y[order[:validate]], order[validate:]
    return X[order[:train_size]], y[order[:train_size]], X_test, y_test


def _views(flip, shift, rotate=0.0):
    """The training copies of each image, as ``(mirrored, (down, right), degrees)``; the image itself first.

    Moves and turns are separate copies (not combined), so each adds rows linearly: 1 + 4 + 2 per mirror.
    """
    copies = [((0, 0), 0.0)]
    if shift:
        copies += [(move, 0.0) for move in ((shift, 0), (-shift, 0), (0, shift), (0, -shift))]
    if rotate:
        copies += [((0, 0), degrees) for degrees in (float(rotate), -float(rotate))]
    return [(mirrored, move, degrees) for mirrored in ((False, True) if flip else (False,)) for move, degrees in copies]


def _view(images, mirrored=False, move=(0, 0), degrees=0.0):
    """``images`` (n, h, w[, c]) mirrored left-right, turned ``degrees`` anticlockwise about their centre,
    then moved ``move = (down, right)`` pixels; the edge rows and columns repeated into the space left
    behind (background, on digits: a zero fill)."""
    if mirrored:
        images = images[:, :, ::-1]
    if degrees:
        # Bilinear, in float32: an integer output would truncate the interpolated values.
        images = ndimage.rotate(np.asarray(images, dtype=np.float32), degrees, axes=(2, 1), reshape=False,
                                order=1, mode="nearest")
    down, right = move
    if not (down or right):
        return images
    h, w = images.shape[1:3]
    pad = [(0, 0), (max(down, 0), max(-down, 0)), (max(right, 0), max(-right, 0))] + [(0, 0)] * (images.ndim - 3)
    top, left = max(-down, 0), max(-right, 0)
    return np.pad(images, pad, mode="edge")[:, top : top + h, left : left + w]


def _features(transformer, images, view=(False, (0, 0), 0.0)):
    return transformer.transform(_view(images, *view))


def _stream(head, transformer, images, y, chunk, views, classes, start=0, after_chunk=None):
    """Add the features of ``images[start:]`` and their ``views`` to ``head``, ``chunk`` images at a time."""
    for first in range(start, len(images), chunk):
        rows = slice(first, first + chunk)
        for view in views:
            head.partial_fit(_features(transformer, images[rows], view), y[rows], classes=classes)
        if after_chunk is not None:
            after_chunk(min(first + chunk, len(images)))


def _peak_memory_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@validate_params(
    {
        "preset": [StrOptions(set(PRESETS))],
        "X": ["array-like"],
        "y": ["array-like"],
        "X_test": ["array-like"],
        "y_test": ["array-like"],
        "flip": ["boolean"],
        "shift": [Interval(Integral, 0, None, closed="left")],
        "rotate": [Interval(Real, 0, 45, closed="both")],
        "alphas": ["array-like"],
        "chunk": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "progress": [callable, None],
        "checkpoint": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Real, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def run_preset(preset, X, y, X_test, y_test, *, flip=False, shift=0, rotate=0.0, alphas=PRESET_ALPHAS, chunk=2000,
               random_state=0, progress=None, checkpoint=None, checkpoint_every=600.0, **preset_params):
    """Fit ``make_preset(preset)`` and a streamed ridge head on ``(X, y)``; score ``(X_test, y_test)`` once.

    Parameters
    ----------
    preset : str
        A key of :data:`skconvfeat.PRESETS`.
    X, y : arrays
        Training images (as :class:`~skconvfeat.FixedConvTransformer` takes them) and labels.
    X_test, y_test : arrays
        The images scored once at the end (the official test set, or images held out of the
        training set while settings are being chosen).
    flip : bool, default=False
        Add every training image's left-right mirror (Thiry et al.'s augmentation).
    shift : int, default=0
        Add four copies of every training image (and mirror) moved this many pixels up, down, left and
        right (0: none), the edge repeated into the gap: small translations, the augmentation that suits
        digits, whose mirrors are other symbols.
    rotate : float, default=0.0
        Add two copies of every training image (and mirror) turned this many degrees (at most 45)
        anticlockwise and clockwise about its centre (0: none), bilinear, the edge repeated: the slant
        of handwriting. Copies are not both moved and turned.
    alphas : sequence of float, default=PRESET_ALPHAS
        Ridge penalties, one chosen on a random tenth of ``X`` (several), or the one used (one).
    chunk : int, default=2000
        Images transformed per ``partial_fit`` call: bounds the features held at once.
    random_state : int, default=0
        Seed of the preset's patches and of the held-out tenth.
    progress : callable, default=None
        Called as ``progress(stage_text)`` after each stage and each checkpoint saved.
    checkpoint : str or path-like, default=None
        A directory in which to keep the ridge head's sums while the training rows stream in (the
        longest stage: hours for the largest runs), so that the same call, started again after an
        interruption, goes on from the last save. Each save is ``8 * n_features**2`` bytes (6.6 GB at
        28,800 features), written beside the previous one and renamed onto it. A run with other
        settings or images is refused; a finished run deletes the files.
    checkpoint_every : float, default=600.0
        Seconds between saves (0: after every chunk); the end of the training rows is always saved.
    **preset_params
        Parameters overriding the preset's.

    Returns
    -------
    results : dict
        ``preset``, ``preset_params``, ``n_train``, ``n_test``, ``n_features``, ``flip``, ``shift``,
        ``rotate``, ``n_views`` (copies of each training image, itself included), ``alphas``, ``validation_scores``
        (per alpha; empty with one alpha), ``alpha``, ``test_accuracy``, ``test_evaluations`` (1),
        ``seconds`` (per stage), ``peak_memory_gib``, ``resumed_images`` (training images whose rows came
        from the checkpoint; 0 without one) and ``environment`` (package versions, BLAS and CPU).
    """
    say = progress or (lambda text: None)
    if shift and shift >= min(np.shape(X)[1:3]):
        raise ValueError(f"shift={shift} must be smaller than the images' height and width, "
                         f"{np.shape(X)[1]} x {np.shape(X)[2]}")
    start, seconds = time.perf_counter(), {}

    def stage(name, text):
        seconds[name] = time.perf_counter() - start - sum(seconds.values())
        say(text)

    order = np.random.RandomState(random_state).permutation(len(X))
    X, y = X[order], y[order]  # a random order: the held-out tenth is its first rows
    transformer = make_preset(preset, random_state=random_state, **preset_params).fit(X)
    stage("transformer_fit", f"transformer fitted: {transformer.n_features_out_:,} features")
    head = GramRidgeClassifier(alphas=list(alphas), standardize=True)
    n_held = int(len(X) * HELD_OUT) if len(alphas) > 1 else 0
    views, classes = _views(flip, shift, rotate), np.unique(y)
    n_stream, done, after_chunk = len(X) - n_held, 0, None
    if checkpoint is not None:
        identity = run_identity(preset, preset_params, X, y, flip, shift, rotate, chunk, random_state)
        saver = Checkpoint(checkpoint, identity, checkpoint_every)
        probe = transformer.transform(X[: Checkpoint.PROBE_IMAGES])
        done = saver.resume(head, probe, len(views), n_stream, chunk)
        if done:
            say(f"checkpoint: {done:,} of {n_stream:,} training images read from {checkpoint}")

        def after_chunk(images_done):
            if saver.save(head, force=images_done == n_stream):
                say(f"checkpoint: {images_done:,} of {n_stream:,} training images saved to {checkpoint}")

    _stream(head, transformer, X[n_held:], y[n_held:], chunk, views, classes, start=done, after_chunk=after_chunk)
    stage("training_rows", f"training rows added: {n_stream:,} images x {len(views)}")
    scores = []
    if n_held:
        held = _features(transformer, X[:n_held])
        head.select_alpha(held, y[:n_held])
        scores = [float(s) for s in head.validation_scores_]
        head.partial_fit(held, y[:n_held])
        del held
        _stream(head, transformer, X[:n_held], y[:n_held], chunk, views[1:], classes)
        stage("penalty", f"penalty chosen on {n_held:,} held-out training images: alpha {head.alpha_:g}")
    head.coef_  # solve now, so that the refit's time is its own
    stage("refit", "refitted on every training row")
    correct = sum(int(np.sum(head.predict(_features(transformer, X_test[i : i + chunk])) == y_test[i : i + chunk]))
                  for i in range(0, len(X_test), chunk))
    stage("test", "test set scored once")
    if checkpoint is not None:
        saver.remove()
    return {"preset": preset, "preset_params": preset_params, "n_train": int(len(X)), "n_test": int(len(X_test)),
            "n_features": int(transformer.n_features_out_), "flip": bool(flip), "shift": int(shift),
            "rotate": float(rotate), "n_views": len(views), "alphas": [float(a) for a in alphas],
            "validation_scores": scores, "alpha": float(head.alpha_), "test_accuracy": correct / len(X_test),
            "test_evaluations": 1, "seconds": seconds, "peak_memory_gib": _peak_memory_gib(), "resumed_images": done,
            "environment": environment()}
