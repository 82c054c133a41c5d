"""LearnedConvClassifier: the same CNN as the fixed pipeline, with its kernels trained.

``Pipeline([FixedConvTransformer(...), StandardScaler(), LogisticRegression()])``
is a one-layer CNN whose kernels are frozen and whose fully-connected layer is
fitted. :class:`LearnedConvClassifier` is that very network trained end to end
in PyTorch: same bank as the starting point, same padding, nonlinearity,
pooling and flattening order, a standardisation layer frozen at the statistics
of the initial features (so training starts exactly where the fixed pipeline
stands), and a linear (or two-layer) head, all fitted by Adam on the
cross-entropy. ``freeze_kernels=True`` trains only the head with the same
optimiser: the fixed arm, as a control for the optimiser itself.

PyTorch is an optional dependency, imported only inside ``fit``/``predict``.
"""

import contextlib
import math
import numbers
import warnings

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_y, check_consistent_length, check_is_fitted

from ._layer import auto_batch_size, bytes_per_image
from ._transformer import LAYER_PARAMETER_CONSTRAINTS, FixedConvTransformer

__all__ = ["LearnedConvClassifier", "transfer_bank"]

_TORCH_MISSING = "LearnedConvClassifier needs PyTorch: pip install 'skconvfeat[torch]'"
# Inference works through X in chunks whose full-resolution maps (float64) stay
# near this size, so predict on a large set never holds all the maps at once.
_PREDICT_CHUNK_BYTES = 64 << 20
# Convolution multiply-adds per call that justify one more torch CPU thread
# (see _torch_threads): below it, thread start-up and barriers dominate.
_MACS_PER_THREAD = 2e7
# Layer parameters shared with FixedConvTransformer, passed through unchanged.
_LAYER_PARAMS = (
    "bank",
    "bank_params",
    "kernel_size",
    "image_shape",
    "channel_mode",
    "padding",
    "nonlinearity",
    "pooling",
    "pool_size",
    "pool_stride",
    "pool_grid",
    "random_state",
)


def _import_torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(_TORCH_MISSING) from exc
    return torch, F


class LearnedConvClassifier(ClassifierMixin, BaseEstimator):
    """A one-layer CNN whose kernels are trained: the learned counterpart of the fixed pipeline.

    The network is ``conv -> nonlinearity -> pool -> flatten -> standardise ->
    head``, exactly the computation of ``make_pipeline(FixedConvTransformer(...),
    StandardScaler(), LogisticRegression())``, but the kernels (initialised
    from ``bank``) and the head are trained together by Adam on the
    cross-entropy loss. Comparing "Gabor, fixed" with "Gabor-initialised,
    learned" changes one estimator and nothing else.

    Requires PyTorch (``pip install 'skconvfeat[torch]'``).

    Parameters
    ----------
    bank : str or array-like, default="gabor"
        The initial kernels, as in :class:`FixedConvTransformer`: a registered
        bank name or an array ``(n_filters, kh, kw)`` /
        ``(n_filters, n_channels, kh, kw)`` (e.g. ``filters_`` of another fit).

    bank_params : dict, default=None
        Keyword parameters of the named bank (e.g. ``{"n_filters": 32}``).

    kernel_size : int or (int, int), default=5
        Kernel height and width in pixels for named banks.

    image_shape : tuple of int, default=None
        Shape ``(h, w)`` or ``(h, w, c)`` of one image when ``X`` holds flat
        rows; one entry may be ``-1``. ``None`` infers square grey images.

    channel_mode : {"sum", "separate"}, default="sum"
        ``"sum"``: each kernel spans all channels (a normal conv layer).
        ``"separate"``: each kernel is applied to every channel on its own
        (depthwise, weights shared across channels), maps ordered
        (channel, filter).

    padding : {"valid", "same", "reflect"}, default="valid"
        Border handling, as in :class:`FixedConvTransformer`.

    nonlinearity : {"relu", "none", "abs", "square", "two_sided_relu"}, default="relu"
        Applied to every response; ``"two_sided_relu"`` keeps ``max(x, 0)``
        and ``max(-x, 0)`` as separate maps.

    pooling : {"avg", "max"}, default="avg"
        Reduction over each pooling region.

    pool_size : int or (int, int), default=2
        Pooling window in pixels (ignored when ``pool_grid`` is set).

    pool_stride : int or (int, int), default=None
        Step between windows in pixels; ``None`` means ``pool_size``.

    pool_grid : int or (int, int), default=None
        Pool each map over a ``gh x gw`` grid of regions (adaptive pooling).

    random_state : int, RandomState instance or None, default=None
        Seeds the ``"random"`` bank (the same bank as a
        :class:`FixedConvTransformer` with the same integer seed), the head's
        initial weights and the order of the mini-batches. An int makes
        ``fit`` reproducible on a given machine and thread count.

    freeze_kernels : bool, default=False
        Keep the kernels at their initial values and train only the head with
        this same optimiser: the fixed arm under identical training, a control
        separating "learned kernels" from "different optimiser". The features
        are then computed once, so this is also faster.

    head : {"linear", "mlp"}, default="linear"
        The fully-connected part. ``"linear"``: one affine layer with softmax,
        i.e. multinomial logistic regression on the standardised features.
        ``"mlp"``: affine -> ReLU -> affine, with ``hidden_units`` units.

    hidden_units : int, default=100
        Width of the hidden layer of the ``"mlp"`` head (units; ignored for
        ``"linear"``). 100 is ``MLPClassifier``'s default.

    max_epochs : int, default=30
        Passes over the training set. 30 epochs of 128-image batches is 360
        Adam steps on 1437 digits images: the training loss has flattened
        (60 epochs gained < 0.1% test accuracy) while one fit takes about
        0.4 s on a 2-core CPU, so repeated cross-validation of several arms
        stays within a minute or so.

    batch_size : int, default=128
        Images per Adam step. Unlike ``FixedConvTransformer.batch_size`` (a
        memory setting), this changes the optimisation: smaller batches mean
        more, noisier steps per epoch and a slower CPU epoch.

    learning_rate : float, default=1e-2
        Adam step size. Adam moves each weight by about this much per step
        whatever the gradient scale; 1e-2 suits unit-norm kernels (entries
        ~0.1-0.5) on standardised features over a few hundred steps.

    weight_decay : float, default=1e-4
        L2 penalty coefficient added to the gradient of the kernels and the
        head's weight matrices (not the biases), as Adam's ``weight_decay``.
        Plays the part of ``LogisticRegression``'s ``1 / C``, up to the
        per-sample averaging of the loss.

    tol : float or None, default=1e-4
        Early stopping: training stops when the epoch's mean training loss has
        not improved on the best so far by at least ``tol`` (loss units,
        nats per sample) for ``n_iter_no_change`` consecutive epochs.
        ``None`` always trains ``max_epochs`` epochs.

    n_iter_no_change : int, default=5
        Epochs without improvement tolerated before stopping (see ``tol``).

    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where PyTorch trains and predicts. The CPU is the default because the
        intended images are small (digits, 8x8 to 32x32), where per-step GPU
        launch overheads dominate; ``"auto"`` picks CUDA when
        ``torch.cuda.is_available()``. ``"cuda"`` fails in ``fit`` without a
        GPU, and a model fitted on a GPU predicts on the CPU where none is
        present (with a warning).

    verbose : int, default=0
        Print the mean loss of every epoch when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    n_features_in_ : int
        Values per image, ``h * w * c``.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names seen in ``fit`` when ``X`` was a DataFrame.

    image_shape_ : tuple of int
        ``(h, w, c)`` of one image.

    initial_filters_ : ndarray of shape (n_filters, n_channels, kh, kw)
        The kernels before training (float64), i.e. ``filters_`` of the
        equivalent :class:`FixedConvTransformer`. ``n_channels`` is 1 in
        ``"separate"`` mode.

    filters_ : ndarray of shape (n_filters, n_channels, kh, kw)
        The kernels after training (float64). Pass them as
        ``FixedConvTransformer(bank=est.filters_, channel_mode=...)`` to reuse
        them as a fixed bank (see :func:`transfer_bank`).

    n_features_out_ : int
        Pooled features entering the standardisation layer and the head.

    loss_curve_ : list of float
        Mean training cross-entropy of every epoch (nats per sample).

    n_iter_ : int
        Epochs run (less than ``max_epochs`` when ``tol`` stopped training).

    See Also
    --------
    FixedConvTransformer : The same layer with the kernels kept fixed.
    transfer_bank : A FixedConvTransformer using learned kernels.

    Notes
    -----
    Training runs in float32; ``predict``, ``predict_proba`` and
    ``decision_function`` run in float64 so results do not depend on how the
    samples are batched. The fitted state is stored as NumPy arrays, so a
    fitted model pickles (joblib) without live PyTorch objects.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat._learned import LearnedConvClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LearnedConvClassifier(kernel_size=3, random_state=0).fit(X[:1000], y[:1000])
    >>> clf.filters_.shape
    (16, 1, 3, 3)
    >>> clf.score(X[1000:], y[1000:]) > 0.85
    True
    """

    _parameter_constraints: dict = {
        **LAYER_PARAMETER_CONSTRAINTS,
        "freeze_kernels": ["boolean"],
        "head": [StrOptions({"linear", "mlp"})],
        "hidden_units": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "tol": [None, Interval(numbers.Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        bank="gabor",
        *,
        bank_params=None,
        kernel_size=5,
        image_shape=None,
        channel_mode="sum",
        padding="valid",
        nonlinearity="relu",
        pooling="avg",
        pool_size=2,
        pool_stride=None,
        pool_grid=None,
        random_state=None,
        freeze_kernels=False,
        head="linear",
        hidden_units=100,
        max_epochs=30,
        batch_size=128,
        learning_rate=1e-2,
        weight_decay=1e-4,
        tol=1e-4,
        n_iter_no_change=5,
        device="cpu",
        verbose=0,
    ):
        self.bank = bank
        self.bank_params = bank_params
        self.kernel_size = kernel_size
        self.image_shape = image_shape
        self.channel_mode = channel_mode
        self.padding = padding
        self.nonlinearity = nonlinearity
        self.pooling = pooling
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.pool_grid = pool_grid
        self.random_state = random_state
        self.freeze_kernels = freeze_kernels
        self.head = head
        self.hidden_units = hidden_units
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.verbose = verbose

    # -- public API -------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the kernels and the head on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images, as for :class:`FixedConvTransformer`.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : LearnedConvClassifier
            The fitted classifier.
        """
        torch, F = _import_torch()
        if y is None:
            raise ValueError("LearnedConvClassifier requires y to be passed, but the target y is None.")
        device = self._torch_device(torch, fitting=True)
        # The equivalent fixed layer validates X and the layer parameters and
        # builds the initial bank, so both arms share one definition.
        conv = FixedConvTransformer(
            **{p: getattr(self, p) for p in _LAYER_PARAMS}, dtype="float32", device="cpu"
        )
        with _as_ours():
            conv.fit(X)
            images = conv._validate_images(X, reset=False)
        if conv.preprocessing_ is not None:
            # The network convolves raw pixels; kernels meant for normalised or
            # whitened patches would silently start it somewhere else.
            raise ValueError(
                f"LearnedConvClassifier convolves raw pixels, but the {self.bank!r} bank is built "
                "for normalised/whitened patches (a data-derived bank). Use a hand-crafted bank, "
                "or FixedConvTransformer for data-derived ones."
            )
        y = _check_y(y, estimator=self)
        check_consistent_length(images, y)
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(
                "LearnedConvClassifier needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {self.classes_[0]!r}."
            )

        self._conv = conv
        self.n_features_in_ = conv.n_features_in_
        if hasattr(conv, "feature_names_in_"):
            self.feature_names_in_ = conv.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.image_shape_ = conv.image_shape_
        self.n_features_out_ = conv.n_features_out_
        self.initial_filters_ = conv.filters_.copy()

        seed_rng = check_random_state(self.random_state)
        head = _init_head(
            seed_rng, self.head, self.n_features_out_, self.hidden_units, len(self.classes_)
        )
        shuffle_rng = np.random.default_rng(seed_rng.randint(np.iinfo(np.int32).max))

        with _torch_threads(torch, device, self._macs(self.batch_size)):
            x_all = _to_tensor(torch, images, device)
            mean, scale = self._standardisation(torch, F, x_all, self.initial_filters_)
            state = {"mean": mean, "scale": scale, "kernels": self.initial_filters_, **head}
            state, losses = self._train(torch, F, x_all, y_encoded, state, device, shuffle_rng)

        self._state = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        if self.freeze_kernels:
            self.filters_ = self.initial_filters_.copy()
        else:
            self.filters_ = self._state["kernels"].copy()
        self._state["kernels"] = self.filters_
        self.loss_curve_ = losses
        self.n_iter_ = len(losses)
        return self

    def decision_function(self, X):
        """Logits of the head: ``(n_samples,)`` for two classes, else ``(n_samples, n_classes)``.

        For two classes the value is the logit of ``classes_[1]`` minus that of
        ``classes_[0]``, as for ``LogisticRegression``.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return log_softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Predicted class of each image.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # -- internals --------------------------------------------------------

    def _layer_spec(self):
        return self._conv._layer_spec()

    def _torch_device(self, torch, fitting):
        if self.device == "cpu":
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if self.device == "auto":
            return torch.device("cpu")
        if fitting:
            raise RuntimeError(
                "The 'device' parameter of LearnedConvClassifier is 'cuda' but PyTorch sees no "
                "CUDA device (torch.cuda.is_available() is False). Use device='cpu' or 'auto'."
            )
        warnings.warn(
            "This LearnedConvClassifier has device='cuda' but no CUDA device is present; "
            "predicting on the CPU. Call set_params(device='cpu') to silence this.",
            UserWarning,
        )
        return torch.device("cpu")

    def _validate_for_predict(self, X):
        check_is_fitted(self)
        with _as_ours():
            return self._conv._validate_images(X, reset=False)

    def _macs(self, n_images):
        """Multiply-adds of the convolution on ``n_images`` images."""
        h, w, c = self.image_shape_
        n_filters, kc, kh, kw = self.initial_filters_.shape
        map_h, map_w = self._layer_spec().conv_shape((h, w), (kh, kw))
        per_position = n_filters * kh * kw * (c if self.channel_mode == "separate" else kc)
        return n_images * map_h * map_w * per_position

    def _chunk_size(self):
        n_filters, _, kh, kw = self.initial_filters_.shape
        # float64 scratch per image, counted as for FixedConvTransformer's batches.
        per_image = bytes_per_image(self.image_shape_, (kh, kw), self._layer_spec(), n_filters, itemsize=8)
        return auto_batch_size(per_image, _PREDICT_CHUNK_BYTES)

    def _forward_numpy(self, X, *, features_only=False, standardise=True, filters=None):
        """Run the network in float64 on ``X``: pooled (standardised) features or logits."""
        torch, F = _import_torch()
        images = self._validate_for_predict(X)
        device = self._torch_device(torch, fitting=False)
        kernels = self._state["kernels"] if filters is None else filters
        params = {k: torch.as_tensor(v, dtype=torch.float64, device=device) for k, v in self._state.items()}
        params["kernels"] = torch.as_tensor(kernels, dtype=torch.float64, device=device)
        spec = self._layer_spec()
        chunk = self._chunk_size()
        out = []
        with torch.no_grad(), _torch_threads(torch, device, self._macs(min(chunk, images.shape[0]))):
            for start in range(0, images.shape[0], chunk):
                x = _to_tensor(torch, images[start : start + chunk], device, torch.float64)
                feats = _layer(torch, F, x, params["kernels"], spec)
                if standardise:
                    feats = (feats - params["mean"]) / params["scale"]
                result = feats if features_only else _head(torch, F, feats, params)
                out.append(result.cpu().numpy())
        return np.concatenate(out, axis=0)

    def _logits(self, X):
        return self._forward_numpy(X)

    def _standardisation(self, torch, F, x_all, filters):
        """Mean and scale of the initial features, as ``StandardScaler`` computes them."""
        spec = self._layer_spec()
        kernels = torch.as_tensor(filters, dtype=torch.float64, device=x_all.device)
        chunk = self._chunk_size()
        with torch.no_grad():
            feats = torch.cat(
                [
                    _layer(torch, F, x_all[s : s + chunk].double(), kernels, spec)
                    for s in range(0, x_all.shape[0], chunk)
                ]
            )
        mean = feats.mean(dim=0)
        scale = feats.std(dim=0, unbiased=False)
        # StandardScaler leaves (near-)constant features unscaled.
        scale = torch.where(scale < 10 * np.finfo(np.float64).eps, torch.ones_like(scale), scale)
        return mean.cpu().numpy(), scale.cpu().numpy()

    def _train(self, torch, F, x_all, y_encoded, state, device, rng):
        spec = self._layer_spec()
        params = {
            k: torch.tensor(np.asarray(v), dtype=torch.float32, device=device) for k, v in state.items()
        }
        trainable = ["kernels"] if not self.freeze_kernels else []
        trainable += [k for k in params if k.startswith("head_")]
        for k in trainable:
            params[k].requires_grad_(True)
        # L2 on weight matrices and kernels only, as LogisticRegression leaves the intercept free.
        decay = [params[k] for k in trainable if not k.endswith("_bias")]
        no_decay = [params[k] for k in trainable if k.endswith("_bias")]
        optimizer = torch.optim.Adam(
            [
                {"params": decay, "weight_decay": self.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.learning_rate,
        )
        targets = torch.as_tensor(y_encoded, dtype=torch.long, device=device)
        mean, scale = params["mean"], params["scale"]

        if self.freeze_kernels:
            # Frozen kernels: the standardised features never change, compute them once.
            with torch.no_grad():
                chunk = self._chunk_size()
                inputs = torch.cat(
                    [
                        (_layer(torch, F, x_all[s : s + chunk], params["kernels"], spec) - mean) / scale
                        for s in range(0, x_all.shape[0], chunk)
                    ]
                )

            def features(batch):
                return inputs[batch]

        else:
            inputs = x_all

            def features(batch):
                return (_layer(torch, F, inputs[batch], params["kernels"], spec) - mean) / scale

        n = x_all.shape[0]
        losses, best, stall = [], math.inf, 0
        for epoch in range(self.max_epochs):
            order = torch.as_tensor(rng.permutation(n), device=device)
            total = 0.0
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                loss = F.cross_entropy(_head(torch, F, features(batch), params), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.shape[0]
            losses.append(total / n)
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.max_epochs}: loss {losses[-1]:.6f}")
            if self.tol is not None:
                stall = stall + 1 if losses[-1] > best - self.tol else 0
                best = min(best, losses[-1])
                if stall >= self.n_iter_no_change:
                    if self.verbose:
                        print(f"loss did not improve by tol={self.tol} for {stall} epochs: stopping")
                    break
        trained = {k: v.detach().cpu().numpy() for k, v in params.items()}
        trained["mean"], trained["scale"] = state["mean"], state["scale"]  # keep float64
        return trained, losses


def transfer_bank(estimator, **params):
    """A :class:`FixedConvTransformer` applying the kernels a fitted model learned.

    Same as ``FixedConvTransformer(bank=estimator.filters_, ...)`` with the
    layer parameters of ``estimator`` (padding, nonlinearity, pooling, ...);
    ``params`` override them (e.g. another ``image_shape`` for new images).

    Parameters
    ----------
    estimator : LearnedConvClassifier
        A fitted model.
    **params
        FixedConvTransformer parameters to set instead of the estimator's.

    Returns
    -------
    transformer : FixedConvTransformer
        Unfitted; fit it (only shapes are read) and use it like any bank.
    """
    check_is_fitted(estimator, "filters_")
    layer = {p: getattr(estimator, p) for p in _LAYER_PARAMS if p not in ("bank", "bank_params")}
    layer.update(params)
    return FixedConvTransformer(bank=estimator.filters_.copy(), **layer)


# -- the network, functional so torch stays a lazy import -------------------------


def _layer(torch, F, x, kernels, spec):
    """Convolve, activate, pool and flatten ``x`` ``(B, C, H, W)`` like :func:`_layer.layer`."""
    kh, kw = kernels.shape[2:]
    n_channels = x.shape[1]
    if spec.padding == "same":
        # Extra pixel on the bottom/right for even kernels, as _layer._pad.
        x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    elif spec.padding == "reflect":
        # Gather with NumPy's reflect indices: identical to np.pad(mode="reflect"),
        # including pads wider than the image, which F.pad refuses.
        rows = np.pad(np.arange(x.shape[2]), ((kh - 1) // 2, kh // 2), mode="reflect")
        cols = np.pad(np.arange(x.shape[3]), ((kw - 1) // 2, kw // 2), mode="reflect")
        x = x[:, :, torch.as_tensor(rows, device=x.device)][:, :, :, torch.as_tensor(cols, device=x.device)]
    if spec.channel_mode == "separate":
        # (C*F, 1, kh, kw): output map c*F + f is filter f on channel c, as _layer.
        maps = F.conv2d(x, kernels.repeat(n_channels, 1, 1, 1), groups=n_channels)
    else:
        maps = F.conv2d(x, kernels)
    if spec.nonlinearity == "relu":
        maps = F.relu(maps)
    elif spec.nonlinearity == "abs":
        maps = maps.abs()
    elif spec.nonlinearity == "square":
        maps = maps * maps
    elif spec.nonlinearity == "two_sided_relu":
        maps = torch.cat([F.relu(maps), F.relu(-maps)], dim=1)
    if spec.pool_grid is not None:
        pool = F.adaptive_avg_pool2d if spec.pooling == "avg" else F.adaptive_max_pool2d
        maps = pool(maps, tuple(spec.pool_grid))
    elif tuple(spec.pool_size) != (1, 1) or tuple(spec.pool_stride) != (1, 1):
        pool = F.avg_pool2d if spec.pooling == "avg" else F.max_pool2d
        maps = pool(maps, tuple(spec.pool_size), tuple(spec.pool_stride))
    return maps.flatten(1)  # map-major (M, ph, pw), as _layer.layer


def _head(torch, F, feats, params):
    if "head_hidden_weight" in params:
        hidden = F.relu(F.linear(feats, params["head_hidden_weight"], params["head_hidden_bias"]))
        return F.linear(hidden, params["head_out_weight"], params["head_out_bias"])
    return F.linear(feats, params["head_out_weight"], params["head_out_bias"])


def _init_head(rng, head, n_in, n_hidden, n_classes):
    """PyTorch's default ``nn.Linear`` initialisation, U(+-1/sqrt(fan_in)), from a NumPy seed."""

    def linear(fan_in, fan_out):
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)

    weights = {}
    if head == "mlp":
        weights["head_hidden_weight"], weights["head_hidden_bias"] = linear(n_in, n_hidden)
        n_in = n_hidden
    weights["head_out_weight"], weights["head_out_bias"] = linear(n_in, n_classes)
    return weights


def _to_tensor(torch, images, device, dtype=None):
    """Images ``(n, h, w, c)`` as a fresh ``(n, c, h, w)`` tensor (a copy: X may be read-only)."""
    dtype = torch.float32 if dtype is None else dtype
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    array = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2), dtype=np_dtype)
    return torch.tensor(array, device=device)


@contextlib.contextmanager
def _torch_threads(torch, device, macs):
    """Within the block, cap torch's CPU threads; the previous setting is restored on exit.

    The cap is the BLAS limit in force (so threadpoolctl and joblib worker
    limits hold, as for FixedConvTransformer) and one thread per
    ``_MACS_PER_THREAD`` multiply-adds of the largest call: on small images
    (digits: ~1e6 per 128-image step) OpenMP synchronisation costs more than
    it saves, and on a busy machine it made a step 5-10x slower.
    """
    from ._backend import cpu_threads

    before = torch.get_num_threads()
    wanted = before
    if device.type == "cpu":
        wanted = max(1, min(before, cpu_threads(), int(macs // _MACS_PER_THREAD)))
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _as_ours():
    """Re-word errors and warnings of the inner FixedConvTransformer under our name.

    Its validation speaks of "FixedConvTransformer"; the user called
    LearnedConvClassifier, whose layer parameters have the same names.
    """
    old, new = "FixedConvTransformer", "LearnedConvClassifier"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (ValueError, TypeError) as exc:
            message = str(exc)
            if old not in message:
                raise
            try:
                renamed = type(exc)(message.replace(old, new))
            except Exception:  # an exception type with another signature: keep it as is
                raise exc from None
            raise renamed from exc
    for w in caught:
        warnings.warn_explicit(
            str(w.message).replace(old, new), w.category, w.filename, w.lineno
        )
