"""GramRidgeClassifier: a closed-form ridge head whose penalty is chosen on held-out rows, in one pass.

Fixed features are wide (thousands of columns) and under-fitted by a linear head, so the head that
pays is the cheapest one that fits them exactly: ridge regression on +-1 targets, solved in closed
form from the Gram matrix ``X^T X``. The Gram matrix is accumulated a chunk of rows at a time, for
the training rows and the held-out rows separately, so choosing the penalty and refitting on all the
rows costs one pass over ``X`` and one Cholesky factorisation per candidate penalty.
"""

import math
import numbers

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, _fit_context
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import validate_data


class GramRidgeClassifier(LinearClassifierMixin, BaseEstimator):
    """Ridge classifier solved from a chunked Gram matrix, its penalty chosen on held-out rows.

    Fits the same model as :class:`sklearn.linear_model.RidgeClassifier` (targets ``+-1``, one
    column per class, an unpenalised intercept) for each candidate penalty in ``alphas``, scores
    each on a random ``validation_fraction`` of the rows, and refits on all rows with the best.
    Memory beyond ``X``: three ``n_features x n_features`` float64 matrices (the Gram matrices of
    the training and held-out rows, and the one factorised): ``24 * n_features**2`` bytes, 0.9 GiB
    at 6,400 features, 4.6 GiB at 14,400; and one chunk of ``batch_size`` rows. Beyond about 20,000 features the
    Gram matrix stops fitting comfortably: use a streaming head such as
    :class:`sklearn.linear_model.SGDClassifier` with ``partial_fit`` (see ``docs/heads.md``).

    Parameters
    ----------
    alphas : array-like of float, default=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)
        Candidate penalties **per training row**: each fit solves
        ``(Xc^T Xc + alpha * n_rows * I) W = Xc^T Yc`` on centred data, i.e. it is
        ``RidgeClassifier(alpha=alpha * n_rows)``. Per row, so that the penalty chosen on the
        training part means the same when refitting on all rows. For standardised features
        ``Xc^T Xc / n_rows`` has a unit diagonal, which sets the scale of the defaults.

    validation_fraction : float in (0, 1), default=0.1
        Fraction of the rows held out to choose the penalty (unused with a single alpha).

    batch_size : int, default=2048
        Rows per chunk when accumulating the Gram matrices.

    random_state : int, RandomState instance or None, default=None
        Seed of the held-out split.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty (per row).

    validation_scores_ : ndarray of shape (n_alphas,)
        Held-out accuracy of each candidate (NaN with a single alpha).

    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat import GramRidgeClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = GramRidgeClassifier(random_state=0).fit(X[:1500], y[:1500])
    >>> float(clf.alpha_) in clf.alphas, clf.score(X[1500:], y[1500:]) > 0.85
    (True, True)
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, alphas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), *, validation_fraction=0.1, batch_size=2048,
                 random_state=None):
        self.alphas = alphas
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Choose the penalty on held-out rows, then refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : GramRidgeClassifier
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        alphas = _check_alphas(self.alphas)
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        Y = binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = binarizer.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"GramRidgeClassifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r})."
            )
        held_out = self._held_out_mask(len(X), len(alphas))
        stats = {part: _GramStats(X.shape[1], Y.shape[1]) for part in (False, True)}
        for start in range(0, len(X), self.batch_size):
            rows = slice(start, start + self.batch_size)
            for part, stat in stats.items():
                mask = held_out[rows] == part
                if mask.any():
                    stat.add(X[rows][mask], Y[rows][mask])
        train, held = stats[False], stats[True]
        if held_out.any():
            X_held, Y_held = X[held_out], Y[held_out]
            self.validation_scores_ = np.array([_accuracy(train.solve(alpha), X_held, Y_held) for alpha in alphas])
            self.alpha_ = float(alphas[int(np.argmax(self.validation_scores_))])
        else:
            self.validation_scores_ = np.full(len(alphas), np.nan)
            self.alpha_ = float(alphas[0])
        train.merge(held)
        del stats, held  # the held-out sums now live in train: free them before the last solve
        coef, intercept = train.solve(self.alpha_)
        self.coef_, self.intercept_ = coef.T.astype(X.dtype), intercept.astype(X.dtype)
        return self

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


class _GramStats:
    """Sums of rows, of targets, and of their cross products, around a fixed shift.

    The shift (the first chunk's column means) keeps ``X^T X - n * mean mean^T`` from cancelling
    when features have large means; the Gram product of each chunk runs in ``X``'s precision and is
    added in float64.
    """

    def __init__(self, n_features, n_targets, shift=None):
        self.shift = shift
        self.n = 0
        self.sum_x = np.zeros(n_features)
        self.sum_y = np.zeros(n_targets)
        self.xtx = np.zeros((n_features, n_features))
        self.xty = np.zeros((n_features, n_targets))

    def add(self, X, Y):
        if self.shift is None:
            self.shift = X.mean(axis=0)
        Xs = X - self.shift.astype(X.dtype)
        self.n += len(X)
        self.sum_x += Xs.sum(axis=0, dtype=np.float64)
        self.sum_y += Y.sum(axis=0)
        self.xtx += Xs.T @ Xs
        self.xty += Xs.T.astype(np.float64) @ Y

    def merge(self, other):
        """Add ``other``'s rows to these sums, in place (no second Gram-sized array)."""
        if other.n == 0:
            return
        # Re-express the other's sums around this shift: x - a = (x - b) + (b - a).
        d = other.shift - self.shift
        self.xtx += other.xtx
        _add_outer(self.xtx, other.sum_x, d)
        _add_outer(self.xtx, d, other.sum_x)
        _add_outer(self.xtx, other.n * d, d)
        self.xty += other.xty + np.outer(d, other.sum_y)
        self.sum_x += other.sum_x + other.n * d
        self.sum_y += other.sum_y
        self.n += other.n

    def solve(self, alpha):
        """Ridge coefficients ``(n_features, n_targets)`` and intercept on the centred sums."""
        mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n
        gram = self.xtx.copy()
        _add_outer(gram, -self.n * mean_x, mean_x)
        gram[np.diag_indices_from(gram)] += alpha * self.n
        rhs = self.xty - self.n * np.outer(mean_x, mean_y)
        # gram is symmetric: its transpose is the Fortran-ordered view LAPACK factorises in place.
        coef = scipy.linalg.solve(gram.T, rhs, assume_a="pos", overwrite_a=True)
        intercept = mean_y - (mean_x + self.shift) @ coef
        return coef, intercept


def _add_outer(matrix, u, v, rows=1024):
    """``matrix += outer(u, v)`` a block of rows at a time: no temporary as large as ``matrix``."""
    for start in range(0, len(u), rows):
        matrix[start : start + rows] += np.outer(u[start : start + rows], v)


def _accuracy(solution, X, Y):
    coef, intercept = solution
    scores = X @ coef + intercept
    if Y.shape[1] == 1:
        return float(np.mean((scores[:, 0] > 0) == (Y[:, 0] > 0)))
    return float(np.mean(scores.argmax(axis=1) == Y.argmax(axis=1)))


def _check_alphas(alphas):
    values = np.asarray(alphas, dtype=np.float64).ravel() if np.ndim(alphas) <= 1 else None
    if values is None or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            "The 'alphas' parameter of GramRidgeClassifier must be a non-empty sequence of positive "
            f"finite floats. Got {alphas!r} instead."
        )
    return values
