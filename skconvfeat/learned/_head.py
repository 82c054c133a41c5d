"""LowRankHeadClassifier: a linear head for more features than a Gram matrix holds, trained by Adam.

:class:`~skconvfeat.GramRidgeClassifier` solves an ``n_features``-square matrix: about 40,000 features on a
24 GiB machine. Fine pooling grids (Thiry et al. 2021: 4,096 maps on a 6x6 grid, 147,456 features) need a
head whose cost grows linearly in the features. This one constrains the linear map to rank ``rank`` over
the maps at each grid cell (see :mod:`._lowrank`), trains it on mini-batches read from ``X`` as it is
(float16 and uint8 features are widened a batch at a time), and publishes the composed linear map as
``coef_``/``intercept_``: predicting needs neither torch nor the factors.
"""

import numbers
import warnings

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._doc_link import API_PAGE
from .._fitted import pair_param, restore_on_failure
from ._validation import TRAINING_CONSTRAINTS, validation_split

# Kept as they come (the dtypes features are stored in to save memory); anything else becomes float32.
_DTYPES = [np.float32, np.float64, np.float16, np.uint8]
# Rows widened to float64 at once when standardising or predicting: 64 MiB of scratch at any width.
_SCRATCH_BYTES = 64 * 2**20


class LowRankHeadClassifier(LinearClassifierMixin, BaseEstimator):
    """A linear classifier on map-major grid features whose weights have rank ``rank`` over the maps.

    For the features of a :class:`~skconvfeat.FixedConvTransformer` pooled on a ``grid`` (``M`` maps,
    ``M * gh * gw`` features in its map-major order), the head standardises each map (over samples
    and cells), projects the ``M`` values of every cell to ``rank`` values with one matrix shared by
    the cells, and reads the ``rank * gh * gw`` results with a linear layer: Thiry, Arbel, Belilovsky
    & Oyallon's (2021) head (their batch normalisation is this fixed standardisation). Everything is
    linear, so the fitted model is a linear classifier (``coef_``, ``intercept_``) with
    ``rank * (M + n_classes * gh * gw)`` trained parameters. Trained by Adam on the cross-entropy,
    stopped on a held-out split. Requires PyTorch to fit (``pip install 'skconvfeat[torch]'``), not
    to predict.

    Parameters
    ----------
    grid : int or (int, int), default=1
        The pooling grid ``(gh, gw)`` of the features (a transformer's ``pool_grid``); ``n_features``
        must be a multiple of ``gh * gw``. 1: a rank-``rank`` linear classifier on plain features.
    rank : int, default=64
        Values each cell's maps are projected to (Thiry et al.'s bottleneck: 64).
    max_epochs : int, default=80
        Passes over the training rows at most.
    batch_size : int, default=128
        Rows per Adam step.
    learning_rate : float, default=1e-3
        Adam's learning rate (at the start, with ``lr_schedule="cosine"``).
    lr_schedule : {"constant", "cosine"}, default="cosine"
        ``"cosine"`` decays the rate to 0 over ``max_epochs``.
    weight_decay : float, default=0.0
        L2 penalty on the projection and the linear layer (not the intercept).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their accuracy has not risen by ``tol``
        for ``n_iter_no_change`` epochs, and keep the best epoch's weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the split and the batch order (fits on the CPU repeat exactly).
    verbose : int, default=0
        Print one line per epoch when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        The composed linear map on the raw features (standardisation folded in); one row for two classes,
        the logit of ``classes_[1]`` minus that of ``classes_[0]``.
    intercept_ : ndarray of shape (1,) or (n_classes,)
    mean_, scale_ : ndarray of shape (n_maps,)
        Each map's mean and standard deviation on the training rows (1 for constant maps).
    reduce_ : ndarray of shape (rank, n_maps)
        The projection shared by the cells.
    classify_ : ndarray of shape (n_classes, rank * gh * gw)
        The linear layer on the projected cells (rank-major); ``classify_intercept_`` its intercept.
    grid_ : (int, int)
    n_features_in_ : int
    n_iter_ : int
        Epochs run.
    best_epoch_ : int or None
        The epoch whose weights were kept (None without early stopping: the last).
    converged_ : bool
        Whether the stop rule ended training before ``max_epochs`` (False without early stopping).
    history_ : list of dict
        Each epoch's training loss, learning rate and validation accuracy.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat import FixedConvTransformer
    >>> from skconvfeat.learned import LowRankHeadClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> conv = FixedConvTransformer("random", kernel_size=3, pool_grid=3, random_state=0)
    >>> F = conv.fit_transform(X[:1000])
    >>> head = LowRankHeadClassifier(grid=3, rank=8, learning_rate=1e-2, max_epochs=60, random_state=0)
    >>> head.fit(F, y[:1000]).coef_.shape  # 16 maps x 9 cells, rank 8 over the maps
    (10, 144)
    >>> head.score(conv.transform(X[1000:]), y[1000:]) > 0.85
    True
    """

    _doc_link_module, _doc_link_template = "skconvfeat", API_PAGE

    _parameter_constraints: dict = {
        "grid": [Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "rank": [Interval(numbers.Integral, 1, None, closed="left")],
        **TRAINING_CONSTRAINTS,
    }

    def __init__(self, grid=1, *, rank=64, max_epochs=80, batch_size=128, learning_rate=1e-3,
                 lr_schedule="cosine", weight_decay=0.0, early_stopping=True, validation_fraction=0.1,
                 n_iter_no_change=10, tol=1e-4, random_state=None, verbose=0):
        self.grid = grid
        self.rank = rank
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Standardise the maps, train the factors, publish their product as ``coef_``/``intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Map-major features (float16 and uint8 are kept as they are, not copied).
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : LowRankHeadClassifier
        """
        try:
            import torch

            from . import _lowrank
            from ._training import torch_threads
        except ImportError as exc:  # pragma: no cover - exercised only without torch
            raise ImportError("LowRankHeadClassifier.fit needs PyTorch: pip install 'skconvfeat[torch]'.") from exc
        with restore_on_failure(self):
            X, y = validate_data(self, X, y, dtype=_DTYPES, order="C")
            check_classification_targets(y)
            grid = pair_param(self.grid, "grid", "LowRankHeadClassifier")
            n_maps = self._check_grid(X.shape[1], grid)
            self.classes_, encoded = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError("LowRankHeadClassifier needs samples of at least 2 classes in the data, but "
                                 f"the data contains only one class: {self.classes_[0]!r}.")
            rng = check_random_state(self.random_state)
            self.mean_, self.scale_ = map_statistics(X, n_maps)
            model = _lowrank.LowRankHead(self.mean_, self.scale_, *self._initial_factors(rng, n_maps, grid))
            train_index, valid_index = np.arange(len(y)), None
            if self.early_stopping:
                train_index, valid_index = validation_split(encoded, self.validation_fraction, rng,
                                                            "LowRankHeadClassifier")
            self.history_ = []
            # One Adam step multiplies a batch by the projection: that caps torch's threads, as for the networks.
            with torch_threads(torch.device("cpu"), self.batch_size * X.shape[1] * self.rank):
                n_iter, best, stopped = _lowrank.train(
                    model, _tensor(torch, X), torch.from_numpy(encoded), train_index, valid_index,
                    settings=self, rng=np.random.default_rng(rng.randint(np.iinfo(np.int32).max)),
                    on_epoch=self._record)
            self.grid_, self.n_iter_, self.best_epoch_, self.converged_ = grid, n_iter, best, stopped
            self.reduce_, self.classify_, self.classify_intercept_ = model.numpy_factors()
            self.coef_, self.intercept_ = compose(self.mean_, self.scale_, self.reduce_, self.classify_,
                                                  self.classify_intercept_)
        if self.early_stopping and not stopped:
            warnings.warn(
                f"LowRankHeadClassifier stopped at max_epochs={self.max_epochs} while the validation accuracy "
                f"was still improving (by more than tol={self.tol} in the last {self.n_iter_no_change} epochs). "
                "Raise max_epochs.", ConvergenceWarning)
        return self

    def decision_function(self, X):
        """``X @ coef_.T + intercept_``, a bounded block of rows at a time (``X`` may be float16 or uint8).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_DTYPES, reset=False)
        scores = np.empty((X.shape[0], self.coef_.shape[0]))
        for rows in _blocks(X):
            scores[rows] = X[rows].astype(np.float64) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X):
        """Softmax of the logits (the model's own probabilities), columns following ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([expit(-scores), expit(scores)])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([np.zeros_like(scores), scores])
        return log_softmax(scores, axis=1)

    def _check_grid(self, n_features, grid):
        cells = grid[0] * grid[1]
        if n_features % cells:
            raise ValueError(
                f"The 'grid' parameter of LowRankHeadClassifier is {grid}, so the features must come in blocks "
                f"of {cells} cells per map, but X has {n_features} features ({n_features} is not a multiple of "
                f"{cells}). Pass the pool_grid of the transformer that made X."
            )
        return n_features // cells

    def _initial_factors(self, rng, n_maps, grid):
        """PyTorch's default initialisation of a 1x1 convolution and a linear layer, from a NumPy seed."""
        n_in = self.rank * grid[0] * grid[1]
        bound_reduce, bound_classify = 1 / np.sqrt(n_maps), 1 / np.sqrt(n_in)
        return (rng.uniform(-bound_reduce, bound_reduce, (self.rank, n_maps)),
                rng.uniform(-bound_classify, bound_classify, (len(self.classes_), n_in)),
                rng.uniform(-bound_classify, bound_classify, len(self.classes_)))

    def _record(self, record):
        self.history_.append(record)
        if self.verbose:
            valid = "" if record["valid_accuracy"] is None else f", validation accuracy {record['valid_accuracy']:.4f}"
            print(f"epoch {record['epoch']}: training loss {record['train_loss']:.4f}{valid}")


def map_statistics(X, n_maps):
    """Each map's mean and standard deviation over rows and cells, in two passes of bounded blocks (sums in
    float64; float16 and uint8 blocks centred in float32, which holds their values exactly); standard
    deviations under ``10 * eps`` become 1, as StandardScaler leaves constant features unscaled."""
    cells = X.shape[1] // n_maps
    count = X.shape[0] * cells
    mean = sum(X[rows].reshape(-1, n_maps, cells).sum(axis=(0, 2), dtype=np.float64) for rows in _blocks(X)) / count
    work = np.float64 if X.dtype == np.float64 else np.float32
    squares = np.zeros(n_maps)
    for rows in _blocks(X):
        centred = X[rows].reshape(-1, n_maps, cells).astype(work)
        centred -= mean.astype(work)[:, None]
        squares += np.square(centred, out=centred).sum(axis=(0, 2), dtype=np.float64)
    scale = np.sqrt(squares / count)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, scale


def compose(mean, scale, reduce, classify, intercept):
    """The head's factors as one linear map on raw features: ``(coef_, intercept_)``, one row for two classes."""
    n_classes, rank = classify.shape[0], reduce.shape[0]
    per_map = classify.reshape(n_classes, rank, -1)  # (K, rank, cells)
    coef = np.einsum("krc,rm->kmc", per_map, reduce) / scale[None, :, None]
    bias = intercept - np.einsum("kmc,m->k", coef, mean)
    coef = coef.reshape(n_classes, -1)
    if n_classes == 2:
        return (coef[1] - coef[0])[None, :], np.array([bias[1] - bias[0]])
    return coef, bias


def _blocks(X):
    step = max(1, _SCRATCH_BYTES // (8 * max(X.shape[1], 1)))
    return [slice(start, start + step) for start in range(0, X.shape[0], step)]


def _tensor(torch, X):
    """``X`` as a tensor sharing its memory; a read-only array (a memmap opened "r") is only ever read
    here, so torch's warning that writing to it would be undefined does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(X)
