"""GramRidgeClassifier: a closed-form ridge head whose penalty is chosen on held-out rows, in one pass.

Fixed features are wide (thousands of columns) and under-fitted by a linear head, so the head that
pays is the cheapest one that fits them exactly: ridge regression on +-1 targets, solved in closed
form from the Gram matrix ``X^T X``. The Gram matrix is accumulated a chunk of rows at a time, first
over the training rows, then (after the penalty is chosen on the held-out rows) over the held-out
rows, so choosing the penalty and refitting on all the rows costs one pass over ``X``, one
``n_features``-square float64 matrix and one Cholesky factorisation per candidate penalty. The same
sums, fed by ``partial_fit``, stream features that never fit in memory at once.
"""

import contextlib
import math
import numbers
import os
import threading
import warnings
import zipfile

import numpy as np
import scipy.linalg.lapack
from sklearn.base import BaseEstimator, _fit_context
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _device
from ._backend import blas_controller, single_threaded_blas
from ._doc_link import API_PAGE

# Columns of the Gram matrix updated per product: the float32 block is n_features x 2048 (236 MB at
# 28,800 features), small next to the Gram matrix, large enough for the GEMM to run at full rate.
_GRAM_BLOCK = 2048


def _solved_on_use(index):
    """Getter of item ``index`` of the (coef, intercept) solution, solved on first use after partial_fit."""

    def get(self):
        return self._solution()[index]

    return get


class GramRidgeClassifier(LinearClassifierMixin, BaseEstimator):
    """Ridge classifier solved from a chunked Gram matrix, its penalty chosen on held-out rows.

    Fits the same model as :class:`sklearn.linear_model.RidgeClassifier` (targets ``+-1``, one
    column per class, an unpenalised intercept) for each candidate penalty in ``alphas``, scores
    each on a random ``validation_fraction`` of the rows, and refits on all rows with the best.
    With ``standardize=True`` it is ``make_pipeline(StandardScaler(), RidgeClassifier())`` without
    the scaled copy of ``X``: the scaling is folded into the penalty (see ``standardize``).

    Memory beyond ``X``: one ``n_features x n_features`` float64 matrix (``8 * n_features**2``
    bytes: 1.7 GB at 14,400 features, 6.6 GB at 28,800), factorised in place, one chunk of
    ``batch_size`` rows and an ``n_features x 2048`` block of the chunk's product. For features
    too many *rows* to hold, stream chunks through :meth:`partial_fit`, choose the penalty with
    :meth:`select_alpha` on held-out rows, then :meth:`partial_fit` those too.

    Parameters
    ----------
    alphas : array-like of float, default=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)
        Candidate penalties **per training row**: each fit solves
        ``(Xc^T Xc + alpha * n_rows * I) W = Xc^T Yc`` on centred data, i.e. it is
        ``RidgeClassifier(alpha=alpha * n_rows)``. Per row, so that the penalty chosen on the
        training part means the same when refitting on all rows. For standardised features
        ``Xc^T Xc / n_rows`` has a unit diagonal, which sets the scale of the defaults. With
        sample (or class) weights ``w``, ``n_rows`` is their sum: the fit is
        ``RidgeClassifier(alpha=alpha * w.sum()).fit(X, y, sample_weight=w)``, and a weight of 2
        counts a row twice.

    standardize : bool, default=False
        Fit as if each feature were first scaled to zero mean and unit variance (``StandardScaler``
        on the rows fitted so far, features of zero variance left unscaled). Ridge on ``X / s``
        is ridge on ``X`` with the penalty of feature ``j`` multiplied by ``s_j**2``, so nothing
        is scaled: ``coef_`` applies to the unscaled ``X``. With weights, the means and
        variances are weighted, as ``StandardScaler().fit(X, sample_weight=w)``'s are.

    class_weight : dict, "balanced" or None, default=None
        Weights ``{class_label: weight}`` multiplying the rows' ``sample_weight``, as in
        :class:`~sklearn.linear_model.RidgeClassifier`; ``"balanced"`` weights each class by
        ``n_samples / (n_classes * n_samples_of_class)`` in :meth:`fit`. :meth:`partial_fit` sees
        one chunk at a time, so it takes a dict only (compute one over the whole stream with
        :func:`sklearn.utils.class_weight.compute_class_weight`).

    validation_fraction : float in (0, 1), default=0.1
        Fraction of the rows that :meth:`fit` holds out to choose the penalty (unused with a single
        alpha, and by :meth:`partial_fit`, whose held-out rows the caller chooses). With weights,
        the held-out rows are scored by weighted accuracy.

    batch_size : int, default=2048
        Rows per chunk when :meth:`fit` accumulates the Gram matrix.

    random_state : int, RandomState instance or None, default=None
        Seed of the held-out split of :meth:`fit`.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty (per row).

    validation_scores_ : ndarray of shape (n_alphas,)
        Held-out accuracy of each candidate (NaN with a single alpha).

    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        After :meth:`partial_fit`, solved from all the rows seen on first use. The solve runs
        once, under a lock, on scratch memory of its own, and is published whole: ``predict``,
        ``decision_function`` and ``score`` never change the fitted state, so threads may share
        a fitted model (calls that add rows, ``partial_fit`` and ``select_alpha``, may not run
        beside them).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_samples_seen_ : int
        Rows added by :meth:`partial_fit` so far (not kept by :meth:`fit`).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat import GramRidgeClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = GramRidgeClassifier(random_state=0).fit(X[:1500], y[:1500])
    >>> float(clf.alpha_) in clf.alphas, clf.score(X[1500:], y[1500:]) > 0.85
    (True, True)

    Streaming (each chunk could be features computed from a chunk of images):

    >>> clf = GramRidgeClassifier(alphas=(1e-3, 1e-2), standardize=True)
    >>> for rows in (slice(0, 700), slice(700, 1400)):
    ...     clf = clf.partial_fit(X[rows], y[rows], classes=range(10))
    >>> clf = clf.select_alpha(X[1400:1600], y[1400:1600])  # penalty chosen on rows not yet fitted
    >>> clf = clf.partial_fit(X[1400:1600], y[1400:1600])  # then refit on all of them
    >>> clf.score(X[1600:], y[1600:]) > 0.85
    True
    """

    _doc_link_module, _doc_link_template = "skconvfeat", API_PAGE

    _parameter_constraints: dict = {
        "alphas": ["array-like"],
        "standardize": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, alphas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), *, standardize=False, class_weight=None,
                 validation_fraction=0.1, batch_size=2048, random_state=None):
        self.alphas = alphas
        self.standardize = standardize
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state

    # coef_ and intercept_ are solved lazily after partial_fit: a solve costs n_features**3 / 3, far
    # more than a chunk's update at 28,800 features, so it runs once when the model is next used.
    coef_ = property(_solved_on_use(0))
    intercept_ = property(_solved_on_use(1))

    @property
    def n_samples_seen_(self):
        """Rows added by :meth:`partial_fit` (and :meth:`load_stream`) so far, whatever their weights."""
        if not hasattr(self, "_sums"):
            raise AttributeError("GramRidgeClassifier has no n_samples_seen_ before partial_fit (fit keeps no sums).")
        return self._sums.rows

    def __sklearn_is_fitted__(self):
        return hasattr(self, "classes_")

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose the penalty on held-out rows, then refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row (times its ``class_weight``); None weighs all rows 1.

        Returns
        -------
        self : GramRidgeClassifier
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        alphas, classes = _check_alphas(self.alphas), np.unique(y)
        weights = self._weights(y, sample_weight, classes, "fit")
        if weights is not None and not weights.sum() > 0:
            raise ValueError("The sample weights passed to GramRidgeClassifier.fit are all zero; give some rows weight.")
        if weights is not None and len(np.unique(y[weights > 0])) < 2:
            raise ValueError("GramRidgeClassifier needs samples of at least 2 classes with non-zero weight; got "
                             f"1 class ({np.unique(y[weights > 0])[0]!r}).")
        self._start(classes, X.shape[1], alphas)
        Y = self._targets(y)
        held_out = self._held_out_mask(len(X), len(alphas))
        self._add(X, Y, weights, ~held_out)
        if held_out.any():
            self._select(alphas, X[held_out], Y[held_out], None if weights is None else weights[held_out])
        self._add(X, Y, weights, held_out)
        self._published = self._solve()
        del self._sums  # 8 * n_features**2 bytes: fit is not incremental, so do not keep them
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Add rows to the Gram sums; the model is solved from all rows seen when next used.

        Rows are added, never forgotten: hold out the rows that choose the penalty
        (:meth:`select_alpha`) from the calls before it, and add them after it to refit on all.
        Holds the ``8 * n_features**2``-byte sums while the estimator lives. :meth:`fit` does not
        keep them, so a ``partial_fit`` after ``fit`` starts a new model from its own rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole stream; required on the first call (unless after :meth:`fit`,
            whose classes it keeps), ignored later.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row (times its ``class_weight``); None weighs all rows 1.

        Returns
        -------
        self : GramRidgeClassifier
        """
        first_call = not hasattr(self, "_sums")
        if first_call:
            classes = getattr(self, "classes_", None) if classes is None else classes
            if classes is None:
                raise ValueError("GramRidgeClassifier.partial_fit needs 'classes' (every class of the stream) "
                                 "on its first call. Got None instead.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False, reset=first_call)
        classes = unique_labels(classes) if first_call else self.classes_
        unknown = np.setdiff1d(y, classes)
        if unknown.size:
            raise ValueError(f"The labels {unknown.tolist()} passed to GramRidgeClassifier.partial_fit are not "
                             f"among the 'classes' of its first call, {classes.tolist()}.")
        weights = self._weights(y, sample_weight, classes, "partial_fit")
        if first_call:
            self._start(classes, X.shape[1], _check_alphas(self.alphas))
        self._add(X, self._targets(y), weights)
        return self

    def select_alpha(self, X, y, sample_weight=None):
        """Choose ``alpha_`` among ``alphas`` by accuracy on held-out rows not yet passed to :meth:`partial_fit`.

        Each candidate is solved on the rows added so far and scored on ``X``; ``X`` itself is not
        added (call :meth:`partial_fit` on it afterwards to refit on every row).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the held-out rows in their accuracy (times their ``class_weight``).

        Returns
        -------
        self : GramRidgeClassifier
        """
        check_is_fitted(self)
        if not hasattr(self, "_sums"):
            raise ValueError("GramRidgeClassifier.select_alpha chooses among the rows added by partial_fit; "
                             "this model was fitted by fit, which chose alpha_ already.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False, reset=False)
        self._select(_check_alphas(self.alphas), X, self._targets(y), self._weights(y, sample_weight, self.classes_, "select_alpha"))
        self._published = None
        return self

    def save_stream(self, path):
        """Write the sums of the rows added by :meth:`partial_fit` so far to ``path``, to go on elsewhere.

        A stream of features that takes hours can then be interrupted and continued in another process
        with :meth:`load_stream`. The file is NumPy's ``.npz`` without pickled objects (about
        ``8 * n_features**2`` bytes, uncompressed); it is written beside ``path`` and renamed onto it, so
        an interruption leaves either the previous file or the new one, never half of one.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (by convention ending in ``.npz``).

        Returns
        -------
        self : GramRidgeClassifier
        """
        if not hasattr(self, "_sums") or self._sums.shift is None:
            raise ValueError("GramRidgeClassifier.save_stream saves the rows added by partial_fit; none were added "
                             "(a model fitted by fit keeps no sums).")
        arrays = {**self._sums.to_arrays(), "classes": self.classes_, "n_features_in": self.n_features_in_}
        partial = f"{os.fspath(path)}.partial"
        try:
            with open(partial, "wb") as file:
                np.savez(file, **arrays)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return self

    def load_stream(self, path):
        """Go on with the stream that :meth:`save_stream` wrote to ``path``: this model's sums become the file's.

        The file is checked before use (array names, shapes, types, finite values) and read without
        pickle, so a damaged or foreign file is refused with a ValueError rather than fitted. The
        penalty is not in the file: :meth:`select_alpha` (or a single ``alphas``) chooses it as usual.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save_stream`.

        Returns
        -------
        self : GramRidgeClassifier
        """
        self._validate_params()
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # cut short, or not a zip at all
            raise ValueError(f"{os.fspath(path)} is not a GramRidgeClassifier stream file: {exc}") from exc
        classes, n_features = _check_stream_arrays(arrays, path)
        self._start(classes, n_features, _check_alphas(self.alphas))
        self.n_features_in_ = n_features
        self._sums.load_arrays(arrays)
        self._published = None
        return self

    def _start(self, classes, n_features, alphas):
        if len(classes) < 2:
            raise ValueError(
                f"GramRidgeClassifier needs samples of at least 2 classes; got 1 class ({classes[0]!r})."
            )
        _check_gram_memory(n_features)
        self.classes_ = classes
        self._binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(classes)
        self._sums = _GramSums(n_features, 1 if len(classes) == 2 else len(classes))
        for name in ("alpha_", "validation_scores_", "_published"):
            self.__dict__.pop(name, None)
        if len(alphas) == 1:  # nothing to choose: no rows are held out
            self.alpha_, self.validation_scores_ = float(alphas[0]), np.full(1, np.nan)

    def _targets(self, y):
        return self._binarizer.transform(y).astype(np.float64)

    def _weights(self, y, sample_weight, classes, method):
        """Each row's ``sample_weight`` times its class's weight, or None when every row weighs 1."""
        if sample_weight is None and self.class_weight is None:
            return None
        weights = np.ones(len(y)) if sample_weight is None else _check_sample_weight(sample_weight, len(y), method)
        if self.class_weight is None:
            return weights
        if self.class_weight == "balanced" and method != "fit":
            raise ValueError(
                f"GramRidgeClassifier.{method} sees one chunk of rows at a time, so it cannot balance the classes "
                "(class_weight='balanced'): pass a dict computed over the whole stream, e.g. by "
                "sklearn.utils.class_weight.compute_class_weight."
            )
        per_class = compute_class_weight(self.class_weight, classes=classes, y=y)
        return weights * per_class[np.searchsorted(classes, y)]

    def _add(self, X, Y, weights, mask=None):
        """Add the rows of ``X`` (those under ``mask``, if given) to the sums, ``batch_size`` rows at a time."""
        self._published = None  # what was solved before no longer holds
        for start in range(0, len(X), self.batch_size):
            rows = slice(start, start + self.batch_size)
            keep = slice(None) if mask is None or mask[rows].all() else mask[rows]
            if mask is None or mask[rows].any():
                self._sums.add(X[rows][keep], Y[rows][keep], None if weights is None else weights[rows][keep])

    def _select(self, alphas, X_held, Y_held, weights_held):
        if weights_held is not None and not weights_held.sum() > 0:
            raise ValueError("GramRidgeClassifier cannot choose alpha_ on held-out rows whose sample weights "
                             "are all zero; give them weight, or pass a single alpha.")
        self.validation_scores_ = np.array([
            _accuracy(self._sums.solve(alpha, self.standardize), X_held, Y_held, weights_held, self.batch_size)
            for alpha in alphas
        ])
        self.alpha_ = float(alphas[int(np.argmax(self.validation_scores_))])

    def _solution(self):
        """``(coef_, intercept_)``, solved once after rows were added and then only read."""
        solution = getattr(self, "_published", None)  # one read: a solution is published whole
        if solution is not None:
            return solution
        if not hasattr(self, "_sums"):
            raise AttributeError("GramRidgeClassifier has no coef_ before it is fitted.")
        with self._sums.lock:  # the first thread solves, the others wait for its solution
            if self._published is None:
                self._published = self._solve()
            return self._published

    def _solve(self):
        if not hasattr(self, "alpha_"):
            raise ValueError(
                f"GramRidgeClassifier has {len(self.alphas)} candidate alphas and none chosen: call "
                "select_alpha(X_held_out, y_held_out) between the partial_fit calls, or pass a single alpha."
            )
        coef, intercept = self._sums.solve(self.alpha_, self.standardize)
        dtype = self._sums.dtype
        return coef.T.astype(dtype), intercept.astype(dtype)

    def _held_out_mask(self, n_samples, n_alphas):
        if n_alphas == 1:
            return np.zeros(n_samples, dtype=bool)
        n_held_out = math.ceil(self.validation_fraction * n_samples)
        if n_samples - n_held_out < 1:
            raise ValueError(
                f"GramRidgeClassifier holds out validation_fraction={self.validation_fraction} of the rows "
                f"to choose among {n_alphas} alphas, which leaves no training rows with n_samples = "
                f"{n_samples}. Pass more samples or a single alpha."
            )
        order = check_random_state(self.random_state).permutation(n_samples)
        mask = np.zeros(n_samples, dtype=bool)
        mask[order[:n_held_out]] = True
        return mask


class _GramSums:
    """Weighted sums of rows, of targets, and of their cross products, around a fixed shift.

    The shift (the first chunk's column means) keeps ``X^T X - n * mean mean^T`` from cancelling
    when features have large means. Each chunk's product runs in the chunk's precision (float32
    GEMM for float32 features: sums of ``batch_size`` products, accurate to ~1e-6 relative) and is
    added into float64; weighted rows enter it scaled by the square roots of their weights, and
    ``n`` is the sum of the weights. ``X^T X`` is kept in the strict upper triangle of ``xtx`` and
    in ``diagonal``; the lower triangle with the diagonal is the scratch space in which each solve
    builds and factorises the penalised matrix, so one ``n_features``-square array is all the
    memory the solves need, and a solve never writes the sums. ``lock`` gives the scratch space to
    one solve (or one ``add``) at a time.
    """

    def __init__(self, n_features, n_targets):
        self.shift = None
        self.dtype = None
        self.n = 0  # the rows' total weight
        self.rows = 0
        self.sum_x = np.zeros(n_features)
        self.sum_y = np.zeros(n_targets)
        self.xtx = np.zeros((n_features, n_features))
        self.diagonal = np.zeros(n_features)
        self.xty = np.zeros((n_features, n_targets))
        self.lock = threading.RLock()

    def __getstate__(self):
        return {name: value for name, value in self.__dict__.items() if name != "lock"}

    def __setstate__(self, state):
        self.__dict__.update(state, lock=threading.RLock())

    def to_arrays(self):
        """The sums as named arrays (the lower triangle of ``xtx`` is scratch, but saved as it lies)."""
        with self.lock:
            return {"shift": self.shift, "dtype": np.array(np.dtype(self.dtype).name), "n": np.array(float(self.n)),
                    "rows": np.array(self.rows, dtype=np.int64), "sum_x": self.sum_x, "sum_y": self.sum_y,
                    "xtx": self.xtx, "diagonal": self.diagonal, "xty": self.xty}

    def load_arrays(self, arrays):
        """Take the sums of :meth:`to_arrays` (checked by ``_check_stream_arrays``)."""
        with self.lock:
            self.shift, self.dtype, self.n = arrays["shift"], np.dtype(str(arrays["dtype"])), float(arrays["n"])
            self.rows = int(arrays["rows"])
            for name in ("sum_x", "sum_y", "xtx", "diagonal", "xty"):
                setattr(self, name, np.ascontiguousarray(arrays[name], dtype=np.float64))

    def add(self, X, Y, weights=None):
        with self.lock:
            if self.shift is None:
                self.shift, self.dtype = X.mean(axis=0, dtype=np.float64), X.dtype
            Xs = X - self.shift.astype(X.dtype)
            self.rows += len(X)
            if weights is None:
                self.n += len(X)
                self.sum_x += Xs.sum(axis=0, dtype=np.float64)
                self.sum_y += Y.sum(axis=0)
            else:
                self.n += weights.sum()
                for start in range(0, Xs.shape[1], _GRAM_BLOCK):  # a float64 copy of a block, not of Xs
                    self.sum_x[start : start + _GRAM_BLOCK] += weights @ Xs[:, start : start + _GRAM_BLOCK]
                self.sum_y += weights @ Y
                root = np.sqrt(weights)[:, None]
                Xs *= root.astype(X.dtype)
                Y = Y * root
            np.fill_diagonal(self.xtx, self.diagonal)  # the last solve's scratch: put the sums back
            for start in range(0, Xs.shape[1], _GRAM_BLOCK):  # upper triangle, a block of columns at a time
                stop = start + _GRAM_BLOCK
                self.xtx[:stop, start:stop] += Xs[:, :stop].T @ Xs[:, start:stop]
            self.diagonal = self.xtx.diagonal().copy()
            self.xty += Xs.T @ Y.astype(X.dtype)

    def solve(self, alpha, standardize):
        """Ridge coefficients ``(n_features, n_targets)`` and intercept on the centred sums.

        Centres ``X^T X`` into the lower triangle, adds the penalty on the diagonal, and
        factorises it there in place; the sums (strict upper triangle, ``diagonal``) are only read.
        """
        if not self.n > 0:
            raise ValueError("GramRidgeClassifier: the sample weights of the rows fitted are all zero; "
                             "give some of them weight.")
        with self.lock:
            mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n
            gram, diagonal = self.xtx, self.diagonal
            variance = diagonal / self.n - mean_x**2
            # As StandardScaler does, features of (nearly) zero variance (within float64 rounding) are not scaled.
            scale = np.where(variance > 10 * np.finfo(np.float64).eps * (1 + mean_x**2), variance, 1.0) if standardize else 1.0
            _centre_into_lower(gram, self.n * mean_x, mean_x)
            np.fill_diagonal(gram, diagonal - self.n * mean_x**2 + alpha * self.n * scale)
            rhs = self.xty - self.n * np.outer(mean_x, mean_y)
            # gram.T is the Fortran-ordered view whose upper triangle is gram's lower: LAPACK
            # factorises it in place (overwrite_a) and leaves the other triangle alone (clean=0).
            with _cholesky_threads(len(diagonal)):
                factor, info = scipy.linalg.lapack.dpotrf(gram.T, lower=0, clean=0, overwrite_a=1)
            if info != 0:
                raise ValueError(
                    f"GramRidgeClassifier: the penalised Gram matrix is not positive definite at alpha={alpha} "
                    f"(LAPACK dpotrf info={info}); pass larger alphas."
                )
            coef, info = scipy.linalg.lapack.dpotrs(factor, rhs, lower=0)
        intercept = mean_y - (mean_x + self.shift) @ coef
        return coef, intercept


# OpenBLAS's threaded Cholesky kills the process (segmentation fault) on large matrices: on the 2-core
# SkylakeX machine of docs/results.md, from n = 15,800 with 2, 3 or 4 threads, in scipy's OpenBLAS 0.3.30
# and NumPy's 0.3.31 alike, while n = 15,500, and every size on one thread, pass (OpenMathLib/OpenBLAS#2562
# reports the same at 32,768). Above this size the factorisation runs on one BLAS thread: about twice as
# slow (106 s at 28,800 features) against losing the process and every row fitted so far.
_PARALLEL_CHOLESKY_MAX = 12_000


@contextlib.contextmanager
def _cholesky_threads(n):
    """One BLAS thread for a Cholesky of order ``n`` above ``_PARALLEL_CHOLESKY_MAX``; nothing changes below."""
    if n <= _PARALLEL_CHOLESKY_MAX:
        yield
        return
    with single_threaded_blas():
        threads = max(info["num_threads"] for info in blas_controller().info())
        if threads > 1:  # another thread's threadpool_limits holds the control, and ours was ignored
            warnings.warn(
                f"GramRidgeClassifier: factorising a {n:,}-feature Gram matrix on {threads} BLAS threads, "
                "because a threadpool_limits block of another thread holds the BLAS limit; OpenBLAS's threaded "
                "Cholesky has crashed the process at this size (OpenMathLib/OpenBLAS#2562). Set "
                "OPENBLAS_NUM_THREADS=1 before starting Python to be safe.",
                RuntimeWarning,
                stacklevel=4,
            )
        yield


def _check_gram_memory(n_features):
    """Refuse, before any allocation, a Gram matrix larger than this machine's memory.

    ``np.zeros`` would not fail there (pages are mapped lazily): the process
    would be killed later, mid-fit, by the operating system.
    """
    needed = 8.0 * n_features * n_features
    available = _device.physical_memory_bytes()
    if needed > available:
        raise ValueError(
            f"GramRidgeClassifier would hold a {n_features:,} x {n_features:,} Gram matrix, "
            f"{_device.memory_text(needed)} of float64, more than this machine's {_device.memory_text(available)} of "
            "memory. Use fewer features (fewer kernels, a smaller pool_grid) or a head trained by SGD "
            "(sklearn.linear_model.SGDClassifier)."
        )


def _centre_into_lower(gram, u, v, rows=128):
    """Lower triangle of ``gram`` := (upper triangle)^T - outer(u, v), a block of rows at a time.

    The one temporary is ``rows x n_features``: 29 MB at 28,800 features, under 0.5% of a Gram copy.
    """
    for start in range(0, len(u), rows):
        stop = min(start + rows, len(u))
        gram[start:stop, :start] = gram[:start, start:stop].T
        gram[start:stop, :start] -= np.outer(u[start:stop], v[:start])
        block = gram[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        block[lower] = block.T[lower] - np.outer(u[start:stop], v[start:stop])[lower]


def _accuracy(solution, X, Y, weights, batch_size):
    coef, intercept = solution
    # A block of rows at a time: float32 rows times the float64 coef are cast to float64
    # first, a copy of the block rather than of every held-out row (1.15 GB on CIFAR-10's 5,000).
    scores = np.concatenate([X[i : i + batch_size] @ coef for i in range(0, len(X), batch_size)]) + intercept
    if Y.shape[1] == 1:
        correct = (scores[:, 0] > 0) == (Y[:, 0] > 0)
    else:
        correct = scores.argmax(axis=1) == Y.argmax(axis=1)
    return float(np.average(correct, weights=weights))


_STREAM_ARRAYS = ("shift", "dtype", "n", "rows", "sum_x", "sum_y", "xtx", "diagonal", "xty", "classes", "n_features_in")


def _check_stream_arrays(arrays, path):
    """``(classes, n_features)`` of a stream file's arrays, after checking that they fit together."""

    def refuse(reason):
        raise ValueError(f"{os.fspath(path)} is not a GramRidgeClassifier stream file: {reason}.")

    missing = [name for name in _STREAM_ARRAYS if name not in arrays]
    if missing:
        refuse(f"it lacks the arrays {missing}")
    classes, n_features = arrays["classes"], arrays["n_features_in"]
    if classes.ndim != 1 or len(np.unique(classes)) != len(classes) or len(classes) < 2:
        refuse(f"'classes' must be at least 2 distinct labels, got {classes!r}")
    if n_features.shape != () or n_features.dtype.kind not in "iu" or not n_features > 0:
        refuse(f"'n_features_in' must be a positive integer, got {n_features!r}")
    p, t = int(n_features), 1 if len(classes) == 2 else len(classes)
    shapes = {"shift": (p,), "n": (), "sum_x": (p,), "sum_y": (t,), "xtx": (p, p), "diagonal": (p,), "xty": (p, t)}
    for name, shape in shapes.items():
        value = arrays[name]
        if value.shape != shape or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            refuse(f"'{name}' must be finite floats of shape {shape}, got {value.dtype} of shape {value.shape}")
    if not arrays["n"] > 0:
        refuse(f"'n' (the rows' total weight) must be positive, got {float(arrays['n'])}")
    rows = arrays["rows"]
    if rows.shape != () or rows.dtype.kind not in "iu" or not rows > 0:
        refuse(f"'rows' must be a positive integer, got {rows!r}")
    if arrays["dtype"].shape != () or str(arrays["dtype"]) not in ("float32", "float64"):
        refuse(f"'dtype' must be float32 or float64, got {arrays['dtype']!r}")
    return classes, p


def _check_sample_weight(sample_weight, n_samples, method):
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"The sample_weight passed to GramRidgeClassifier.{method} must be {n_samples} finite non-negative "
            f"numbers, one per sample. Got an array of shape {weights.shape} instead."
        )
    return weights


def _check_alphas(alphas):
    values = np.asarray(alphas, dtype=np.float64).ravel() if np.ndim(alphas) <= 1 else None
    if values is None or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            "The 'alphas' parameter of GramRidgeClassifier must be a non-empty sequence of positive "
            f"finite floats. Got {alphas!r} instead."
        )
    return values
