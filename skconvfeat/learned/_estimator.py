"""LearnedConvClassifier: a fixed network's description, trained end to end in PyTorch.

``make_pipeline(FixedConvNet(...), StandardScaler(), LogisticRegression())`` is
a CNN whose kernels are frozen and whose fully-connected layer is fitted.
:class:`LearnedConvClassifier` takes that very description (``conv``) and
trains every layer's kernels and the head together, starting from the same
fitted banks and a standardisation frozen at the initial features' statistics,
so training starts exactly where the fixed pipeline stands.

PyTorch is an optional dependency: ``_network`` and ``_training`` import it
and are imported only inside the methods that train or predict.
"""

import importlib.util
import math
import numbers
import warnings

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    _check_y,
    check_array,
    check_consistent_length,
    check_is_fitted,
)

from .._doc_link import API_PAGE
from .._fitted import resolved_preprocessing, restore_on_failure
from .._input import shape_images
from .._layer import NONLINEARITIES, auto_batch_size
from .._net import FixedConvNet
from .._transformer import FixedConvTransformer, carried_banks
from ._validation import TRAINING_CONSTRAINTS, validation_split

__all__ = ["LearnedConvClassifier", "transfer_bank"]

_TORCH_MISSING = "LearnedConvClassifier needs PyTorch: pip install 'skconvfeat[torch]'"
# Inference (and the frozen-kernel feature pass) works through X in chunks whose
# full-resolution maps (float64) stay near this size, so a large set never holds all its
# maps at once, and a chunk's maps stay in cache: on the study's 1-layer network
# (3,000 MNIST-sized images, one thread), predict took 0.30 s with 64 MiB chunks (407
# images), 0.10 s with 16 MiB and 0.05 s with 8 or 4 MiB; 2-layer, 1.4 s and 1.0 s.
_PREDICT_CHUNK_BYTES = 8 << 20
# Training images whose maps set the starting statistics of batch_norm's normalisations: enough for a
# mean and variance per map to a percent or so, bounded so the set-up stays a fraction of an epoch.
_NORM_STATISTICS_IMAGES = 2048
# The keys an ``augment`` dict may set.
_AUGMENT_KEYS = ("crop_padding", "horizontal_flip")
# What training may change (the ``train`` parameter): everything, the head only, or the head and a
# 1x1 recombination of each layer's frozen maps.
TRAIN_MODES = ("all", "head", "mixing")


def _import_torch():
    """The two torch-backed modules; imported here so that ``import skconvfeat`` stays light."""
    try:
        from . import _network, _training
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(_TORCH_MISSING) from exc
    return _network, _training


def _torch_installed():
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # an import hook refusing it, or a broken install
        return False


class LearnedConvClassifier(ClassifierMixin, BaseEstimator):
    """A CNN described by a fixed network, with every layer's kernels trained.

    The network is ``conv -> standardise -> head``: ``conv`` is a
    :class:`~skconvfeat.FixedConvTransformer` or :class:`~skconvfeat.FixedConvNet`
    (one description of the architecture for both arms of a comparison), whose
    banks are fitted on the training images and then trained end to end with
    the head by Adam on the cross-entropy. Comparing "Gabor, fixed" with
    "Gabor-initialised, learned" changes one estimator and nothing else.

    Requires PyTorch (``pip install 'skconvfeat[torch]'``).

    Parameters
    ----------
    conv : FixedConvTransformer or FixedConvNet, default=None
        The convolutional layers and their initial banks (not modified: a
        clone is fitted). ``None`` means ``FixedConvTransformer()``. Its
        parameters are reached as ``conv__<param>`` (``conv__conv1__bank`` for
        a network's layer) in ``set_params`` and ``GridSearchCV``.

    head : {"linear", "mlp"}, default="linear"
        The fully-connected part. ``"linear"``: one affine layer with softmax,
        i.e. multinomial logistic regression on the standardised features.
        ``"mlp"``: affine -> ReLU -> affine, with ``hidden_units`` units.

    hidden_units : int, default=100
        Width of the hidden layer of the ``"mlp"`` head.

    freeze_kernels : bool, default=False
        Keep every kernel at its initial value and train only the head with
        this same optimiser: the fixed arm under identical training, a control
        separating "learned kernels" from "different optimiser". Without
        augmentation the features are then computed once, so this is faster.
        The same as ``train="head"``.

    train : {"all", "head", "mixing"}, default=None
        What training changes. ``"all"``: every kernel and the head.
        ``"head"``: the head only (``freeze_kernels=True``). ``"mixing"``: the
        spatial kernels stay as the bank made them, and after each layer's
        convolution a learned 1x1 convolution recombines its maps, started at
        the identity (so the untrained network is the fixed one), before the
        nonlinearity: learned linear combinations of frozen kernels (Gavrikov
        & Keuper 2023), separating "are the kernels' shapes needed?" from "is
        the wiring needed?". ``None`` follows ``freeze_kernels``.

    batch_norm : bool, default=False
        A batch normalisation after each layer's convolution (after its
        mixing with ``train="mixing"``), before the nonlinearity, trained with
        the kernels or the mixing: the normalisation of the cited mixing
        networks (conv, 1x1, BN, ReLU). It starts as the identity: its running
        statistics are those of the maps entering it on (up to 2,048 of) the
        training images, and its scale and shift undo them, so the untrained
        network is the fixed one; training normalises each batch by its own
        statistics. Not with ``train="head"``, where nothing before the head
        trains.

    max_epochs : int, default=30
        Most passes over the training set in one ``fit``.

    batch_size : int, default=128
        Images per Adam step.

    learning_rate : float, default=1e-2
        Adam's step size (the start of the schedule). Adam moves each weight by
        about this much per step whatever the gradient scale; 1e-2 suits
        unit-norm kernels on standardised features over a few hundred steps.

    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` decays the learning rate from ``learning_rate`` to 0 over
        ``max_epochs`` epochs (half a cosine), epoch by epoch.

    weight_decay : float, default=1e-4
        L2 penalty on the kernels and the head's weight matrices (not the
        biases), as Adam's ``weight_decay``.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training images (stratified),
        score the model on them after every epoch, stop when the accuracy has
        not improved by ``tol`` for ``n_iter_no_change`` epochs, and keep the
        weights of the best epoch. ``False`` trains ``max_epochs`` epochs on
        all images.

    validation_fraction : float, default=0.1
        Share of the training images held out for early stopping.

    n_iter_no_change : int, default=5
        Epochs without improvement tolerated before stopping.

    tol : float, default=1e-4
        Least gain in validation accuracy counted as an improvement. Without
        early stopping it is the least drop of the training loss (nats per
        sample) over ``n_iter_no_change`` epochs below which a run that
        reached ``max_epochs`` counts as converged.

    augment : bool or dict, default=False
        Random data augmentation of the training batches. ``True`` means
        ``{"crop_padding": h // 8, "horizontal_flip": True}``: shift by up to
        ``crop_padding`` pixels (zero padding, random crop) and mirror half of
        the images. A dict sets either key. Recorded in ``augmentation_``.

    warm_start : bool, default=False
        ``fit`` continues from the previous fit's weights and optimiser state
        (up to ``max_epochs`` more epochs) instead of starting again.

    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where PyTorch trains and predicts. ``"auto"`` picks CUDA when
        ``torch.cuda.is_available()``. ``"cuda"`` fails in ``fit`` without a
        GPU; a model fitted on a GPU predicts on the CPU where none is present
        (with a warning).

    random_state : int, RandomState instance or None, default=None
        Seeds the head's initial weights, the validation split, the order of
        the mini-batches and the augmentation. (Random banks take their seed
        from ``conv``.) An int makes ``fit`` reproducible on a given machine.

    verbose : int, default=0
        Print every epoch's losses and validation accuracy when positive.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    conv_ : FixedConvTransformer or FixedConvNet
        The fitted description: the initial banks and the shapes.

    n_features_in_ : int
        Values per image, ``h * w * c``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen in ``fit`` when ``X`` was a DataFrame.

    image_shape_ : tuple of int
        ``(h, w, c)`` of one image.

    initial_filters_ : list of ndarray
        Each layer's kernels before training, ``(n_filters, n_channels, kh, kw)``
        float64 (the ``filters_`` of ``conv_``'s layers).

    filters_ : list of ndarray
        Each layer's kernels after training. :func:`transfer_bank` turns them
        into a fixed network.

    n_features_out_ : int
        Features entering the standardisation and the head.

    history_ : list of dict
        One entry per epoch trained (over all ``fit``/``partial_fit`` calls):
        ``epoch``, ``train_loss`` (mean cross-entropy, nats per sample),
        ``valid_loss`` and ``valid_accuracy`` (None without a validation
        split), ``learning_rate`` and ``seconds``.

    n_iter_ : int
        Epochs trained, over all calls.

    best_epoch_ : int or None
        Epoch whose weights were kept (best validation accuracy), or None
        without early stopping.

    converged_ : bool
        Whether the last ``fit`` stopped because it stopped improving (the
        stop rule fired, or without early stopping, the training loss had
        flattened). ``False`` comes with a ``ConvergenceWarning``.

    augmentation_ : dict
        The augmentation used: ``crop_padding`` (pixels, 0 = none) and
        ``horizontal_flip``. State it with every result.

    See Also
    --------
    skconvfeat.FixedConvNet : The same network with the kernels kept fixed.
    transfer_bank : A fixed network using learned kernels.

    Notes
    -----
    Training runs in float32; ``predict``, ``predict_proba`` and
    ``decision_function`` run in float64 so results do not depend on how the
    samples are batched. The fitted state is NumPy arrays only (weights,
    optimiser moments, random generator), so a fitted model pickles (joblib)
    without live PyTorch objects and ``warm_start`` continues exactly.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat import FixedConvNet, FixedConvTransformer, LearnedConvClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> net = FixedConvNet([
    ...     ("conv1", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=0)),
    ...     ("conv2", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=1)),
    ... ])
    >>> clf = LearnedConvClassifier(net, random_state=0).fit(X[:1000], y[:1000])
    >>> [f.shape for f in clf.filters_]
    [(16, 1, 3, 3), (16, 16, 3, 3)]
    >>> clf.score(X[1000:], y[1000:]) > 0.85
    True
    """

    _doc_link_module, _doc_link_template = "skconvfeat", API_PAGE

    _parameter_constraints: dict = {
        "conv": [None, FixedConvTransformer, FixedConvNet],
        "head": [StrOptions({"linear", "mlp"})],
        "hidden_units": [Interval(numbers.Integral, 1, None, closed="left")],
        "freeze_kernels": ["boolean"],
        "train": [None, StrOptions(set(TRAIN_MODES))],
        "batch_norm": ["boolean"],
        "augment": ["boolean", dict],
        "warm_start": ["boolean"],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        **TRAINING_CONSTRAINTS,
    }

    def __init__(
        self,
        conv=None,
        *,
        head="linear",
        hidden_units=100,
        freeze_kernels=False,
        train=None,
        batch_norm=False,
        max_epochs=30,
        batch_size=128,
        learning_rate=1e-2,
        lr_schedule="constant",
        weight_decay=1e-4,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-4,
        augment=False,
        warm_start=False,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.conv = conv
        self.head = head
        self.hidden_units = hidden_units
        self.freeze_kernels = freeze_kernels
        self.train = train
        self.batch_norm = batch_norm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.augment = augment
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- public API -------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Train the kernels and the head on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images, as for :class:`~skconvfeat.FixedConvTransformer`.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each image in the training loss (its
            cross-entropy times its weight) and in the early-stopping
            validation accuracy; None weighs every image 1. Weights are
            rescaled to a mean of 1 over the training split, so they change
            the balance between images, not the learning rate. The banks of a
            data-derived ``conv`` (k-means, PCA, patches) are fitted
            unweighted.

        Returns
        -------
        self : LearnedConvClassifier
        """
        _network, _training = _import_torch()
        continuing = self.warm_start and hasattr(self, "_state")
        self._check_before_fitting(_training, new=not continuing)
        with restore_on_failure(self, deep=("_rng",)):
            X = self._check_X(X, reset=not continuing)
            y = self._check_targets(X, y, new=not continuing)
            weight = _check_weights(sample_weight, X)
            rng = check_random_state(self.random_state)
            train, valid = self._split(y, rng)
            w_train = _mean_one(weight, train)
            w_valid = None if valid is None else _mean_one(weight, valid, "validation")
            features = None  # the fixed features of the training rows, if the set-up computed them
            if continuing:
                self._check_known_classes(y)
                self._check_same_description()
            else:
                features = self._initialise(_network, _safe_indexing(X, train), np.unique(y), rng, w_train)
            images, y_encoded = self._fit_images(X), np.searchsorted(self.classes_, y)
            with self._session(_training) as session:
                training = session.data(images[train], y_encoded[train], w_train, features)
                validation = None
                if valid is not None:
                    validation = session.data(images[valid], y_encoded[valid], w_valid)
                self._fit_epochs(session, _training, training, validation)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for exactly one epoch over ``X`` (no validation split, no stop rule).

        The first call builds the network from ``conv`` (its banks fitted on
        this ``X``); later calls continue, whatever ``warm_start`` says.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images.
        y : array-like of shape (n_samples,)
            Class labels.
        classes : array-like of shape (n_classes,), default=None
            Every class of the problem; needed on the first call when this
            ``y`` does not hold them all, ignored afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each image in this epoch's loss, rescaled to
            a mean of 1 over ``X`` (see :meth:`fit`).

        Returns
        -------
        self : LearnedConvClassifier
        """
        first = not hasattr(self, "_state")
        _network, _training = _import_torch()
        self._check_before_fitting(_training, new=first)
        with restore_on_failure(self, deep=("_rng",)):
            X = self._check_X(X, reset=first)
            y = self._check_targets(X, y, new=first, classes=classes)
            weight = _mean_one(_check_weights(sample_weight, X), np.arange(len(y)))
            features = None
            if first:
                known = np.unique(y) if classes is None else np.unique(_check_y(classes, estimator=self))
                features = self._initialise(_network, X, known, check_random_state(self.random_state), weight)
            else:
                self._check_known_classes(y)
            with self._session(_training) as session:
                training = session.data(self._fit_images(X), np.searchsorted(self.classes_, y), weight, features)
                self._epoch(session, _training, training, None, schedule_epoch=self.n_iter_)
                self._store(session, _network)
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
        logits = self._forward_numpy(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns following ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return softmax(self._forward_numpy(X), axis=1)

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
        return log_softmax(self._forward_numpy(X), axis=1)

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
        logits = self._forward_numpy(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def __setstate__(self, state):
        super().__setstate__(state)
        # A fitted model unpickles without torch (its state is NumPy) but cannot predict without it:
        # say so at load time, not at the first predict.
        if "_state" in state and not _torch_installed():
            warnings.warn(f"This fitted LearnedConvClassifier was loaded without PyTorch; predicting with it "
                          f"needs PyTorch. {_TORCH_MISSING.split(': ', 1)[1]}", UserWarning, stacklevel=2)

    # -- set-up -----------------------------------------------------------

    def _check_X(self, X, reset):
        """``X`` as a NumPy array, checked under our name; column names recorded on ``reset``."""
        if reset:
            _check_feature_names(self, X, reset=True)
        return check_array(X, allow_nd=True, dtype="numeric", ensure_all_finite=True, input_name="X", estimator=self)

    def _check_targets(self, X, y, new, classes=None):
        if y is None:
            raise ValueError("LearnedConvClassifier requires y to be passed, but the target y is None.")
        y = _check_y(y, estimator=self)
        check_consistent_length(X, y)
        check_classification_targets(y)
        n_classes = np.unique(y).size if classes is None else np.unique(classes).size
        if new and n_classes < 2:
            raise ValueError(
                "LearnedConvClassifier needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {y[0]!r}."
            )
        return y

    def _check_known_classes(self, y):
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"y holds classes {unknown.tolist()!r} that LearnedConvClassifier was not fitted on "
                f"(classes_ is {self.classes_.tolist()!r}); with warm_start or partial_fit the "
                "classes cannot change."
            )

    def _split(self, y, rng):
        """Training and validation indices (validation None without early stopping)."""
        if not self.early_stopping:
            return np.arange(len(y)), None
        return validation_split(y, self.validation_fraction, rng, "LearnedConvClassifier")

    def _check_before_fitting(self, _training, new):
        """Everything that can be refused before any heavy work: the device, ``augment``, the layers."""
        _training.torch_device(self.device, fitting=True)
        _augmentation(self.augment, image_height=1)
        self._train_mode()
        if not new:
            return
        conv = FixedConvTransformer() if self.conv is None else self.conv
        described = [layer for _, layer in conv.layers] if isinstance(conv, FixedConvNet) else [conv]
        for i, layer in enumerate(described):
            # The torch network convolves the maps as they are, with the plain nonlinearities;
            # kernels meant for normalised/whitened patches, or a dictionary encoding, would
            # silently start it somewhere other than the fixed network.
            if not isinstance(layer, FixedConvTransformer):
                continue  # FixedConvNet's fit says what is wrong with it
            params = layer.get_params(deep=False)
            if any(resolved_preprocessing(params, carried_banks(layer))) or params["nonlinearity"] not in NONLINEARITIES:
                raise ValueError(
                    f"LearnedConvClassifier trains plain convolutions with the nonlinearities "
                    f"{NONLINEARITIES}, but layer {i + 1} of 'conv' preprocesses its patches or uses "
                    f"nonlinearity={params['nonlinearity']!r}. Use FixedConvTransformer/FixedConvNet for it."
                )

    def _check_same_description(self):
        """warm_start continues the fitted network: refuse a ``conv`` changed since (it would be ignored)."""
        now = _description_params(FixedConvTransformer() if self.conv is None else self.conv)
        then = _description_params(self.conv_)
        changed = sorted(k for k in now.keys() | then.keys() if not _same(now.get(k), then.get(k)))
        if self._train_mode() != self.train_:
            changed.append(f"train: {self.train_!r} -> {self._train_mode()!r}")
        if bool(self.batch_norm) != self._normalised():
            changed.append(f"batch_norm: {self._normalised()!r} -> {bool(self.batch_norm)!r}")
        if changed:
            raise ValueError(
                f"LearnedConvClassifier has warm_start=True, which continues the fitted network, but 'conv' "
                f"changed since it was fitted ({', '.join(changed)}). Set warm_start=False to train a new network."
            )

    def _train_mode(self):
        """What training changes: ``train``, or ``freeze_kernels``'s answer when ``train`` is None."""
        if self.train is None:
            mode = "head" if self.freeze_kernels else "all"
        elif self.freeze_kernels and self.train != "head":
            raise ValueError(
                f"The 'freeze_kernels' and 'train' parameters of LearnedConvClassifier disagree: "
                f"freeze_kernels=True means train='head', but train={self.train!r}. Set one of them."
            )
        else:
            mode = self.train
        if self.batch_norm and mode == "head":
            raise ValueError(
                "The 'batch_norm' parameter of LearnedConvClassifier trains a normalisation with the kernels or "
                "their mixing, but only the head trains here (train='head' or freeze_kernels=True). Set "
                "batch_norm=False, or train='mixing' or 'all'."
            )
        return mode

    def _normalised(self):
        """Whether the fitted network has a batch normalisation after its layers."""
        _network, _ = _import_torch()
        return _network.norm_keys(0)["weight"] in self._state

    def _initialise(self, _network, X, classes, rng, weight=None):
        """Fit the description on ``X``, freeze the (weighted) standardisation, initialise the head.

        Returns the fixed features of ``X`` the standardisation was computed from: with frozen
        kernels the training session reuses them instead of a second pass over the images.
        """
        conv = clone(FixedConvTransformer() if self.conv is None else self.conv)
        conv.set_output(transform="default")
        features = conv.fit_transform(X)
        layers = _layers(conv)
        self.conv_ = conv
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = conv.n_features_in_
        self.image_shape_ = layers[0].image_shape_
        self.n_features_out_ = conv.n_features_out_
        self.initial_filters_ = [layer.filters_.copy() for layer in layers]
        self.augmentation_ = _augmentation(self.augment, self.image_shape_[0])
        # StandardScaler's statistics, weighted as StandardScaler's are, leaving (near-)constant features unscaled.
        wide = features.astype(np.float64)
        mean = np.average(wide, axis=0, weights=weight)
        scale = np.sqrt(np.average((wide - mean) ** 2, axis=0, weights=weight))
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
        state = {_network.kernel_key(i): f for i, f in enumerate(self.initial_filters_)}
        self.train_ = self._train_mode()
        if self.train_ == "mixing":
            state.update({_network.mixing_key(i): _network.identity_mixing(_conv_maps(layer.layer_))
                          for i, layer in enumerate(layers)})
        state.update(zip(_network.STANDARDISATION, (mean, scale)))
        state.update(_init_head(rng, self._head_sizes(), self.n_features_out_, _network.head_keys))
        self._state = state
        if self.batch_norm:
            # Unit statistics first, only so that the network (with its normalisations) can be built to measure
            # the real ones.
            for i, layer in enumerate(layers):
                n_maps = _conv_maps(layer.layer_)
                state.update(_network.identity_norm(i, np.zeros(n_maps), np.ones(n_maps)))
            state.update(self._identity_norms(_network, X))
        self.n_trainable_params_ = int(sum(
            value.size for key, value in state.items()
            if key.startswith("head.") or (self.train_ == "all" and key.endswith(".kernels"))
            or (self.train_ == "mixing" and key.endswith(".mixing")) or key.endswith((".norm.weight", ".norm.bias"))))
        self._optimizer_state = None
        self._rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        self.history_, self.n_iter_, self.best_epoch_, self.converged_ = [], 0, None, False
        return features

    def _identity_norms(self, _network, X):
        """The normalisations' state that leaves the network as the fixed one, from the statistics of the maps
        entering them on (up to ``_NORM_STATISTICS_IMAGES`` of) the training images ``X``.

        Started at zero mean and unit variance instead, a normalisation in training mode would divide maps
        of raw-pixel scale (standard deviations of tens on MNIST) down to one, and the head would see
        features far smaller than the frozen standardisation was computed for: it barely trained.
        """
        _, _training = _import_torch()
        import torch

        images = self._fit_images(X)[:_NORM_STATISTICS_IMAGES]
        device = _training.torch_device(self.device, fitting=True)
        net = self._network(torch.float32, device)
        chunk = self._chunk_size()
        batches = (_network.to_tensor(images[s : s + chunk], device, torch.float32)
                   for s in range(0, images.shape[0], chunk))
        with _training.torch_threads(device, self._macs(min(chunk, images.shape[0]))):
            stats = _network.norm_input_statistics(net, batches)
        state = {}
        for i, (mean, var) in enumerate(stats):
            state.update(_network.identity_norm(i, mean, var))
        return state

    def _head_sizes(self):
        n_classes = len(self.classes_)
        return [self.hidden_units, n_classes] if self.head == "mlp" else [n_classes]

    def _images(self, X):
        """``X`` as images ``(n, h, w, c)``, checked by the first fitted layer."""
        # Names and counts checked under our name, as the user called us.
        _check_feature_names(self, X, reset=False)
        X = check_array(X, allow_nd=True, dtype="numeric", ensure_all_finite=True, input_name="X", estimator=self)
        if X.ndim == 2:
            _check_n_features(self, X, reset=False)
        return self._fit_images(X)

    def _fit_images(self, X):
        """Checked ``X`` (an array) as images ``(n, h, w, c)``, shaped by the first fitted layer."""
        return shape_images(X, _layers(self.conv_)[0], reset=False)

    # -- training ---------------------------------------------------------

    def _session(self, _training):
        """A training session on this estimator's state (see :class:`~skconvfeat.learned._training.Session`)."""
        import torch

        net = self._network(torch.float32, _training.torch_device(self.device, fitting=True))
        return _training.Session(
            net, train=self.train_, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, optimizer_state=self._optimizer_state, augmentation=self.augmentation_,
            rng=self._rng, macs=self._macs(self.batch_size), chunk=self._chunk_size(),
        )

    def _epoch(self, session, _training, training, validation, schedule_epoch):
        """One epoch of ``session``, recorded in ``history_``."""
        lr = _training.learning_rate_at(self.lr_schedule, self.learning_rate, schedule_epoch, self.max_epochs)
        record = session.epoch(training, validation, learning_rate=lr, batch_size=self.batch_size,
                               epoch=self.n_iter_)
        self.n_iter_ += 1
        record = {"epoch": self.n_iter_, **record}
        self.history_ = [*self.history_, record]  # a new list: a failed fit restores the old one whole
        if self.verbose:
            valid = "" if validation is None else (f", valid loss {record['valid_loss']:.4f}, "
                                                f"valid accuracy {record['valid_accuracy']:.4f}")
            print(f"epoch {self.n_iter_}: train loss {record['train_loss']:.4f}{valid}, lr {lr:.3g}, "
                  f"{record['seconds']:.1f} s", flush=True)
        return record

    def _fit_epochs(self, session, _training, training, validation):
        """Up to ``max_epochs`` epochs, the stop rule judging on the validation split."""
        stopper = None if validation is None else _training.EarlyStopping(self.n_iter_no_change, self.tol)
        stopped = False
        for epoch in range(self.max_epochs):
            record = self._epoch(session, _training, training, validation, schedule_epoch=epoch)
            if stopper is not None and stopper.step(record["valid_accuracy"], self.n_iter_, session.net):
                stopped = True
                break
        if stopper is not None:
            session.net.load_state_dict(stopper.best_state)
            self.best_epoch_ = stopper.best_epoch
            self.converged_ = stopped
        else:
            losses = [h["train_loss"] for h in self.history_[-(self.n_iter_no_change + 1):]]
            self.converged_ = len(losses) > self.n_iter_no_change and losses[0] - min(losses[1:]) < self.tol
        self._store(session, _import_torch()[0])
        if not self.converged_:
            how = "validation accuracy" if stopper is not None else "training loss"
            warnings.warn(
                f"LearnedConvClassifier stopped at max_epochs={self.max_epochs} while the {how} was "
                f"still improving (by more than tol={self.tol} in the last {self.n_iter_no_change} "
                "epochs). Raise max_epochs, or continue with warm_start=True.",
                ConvergenceWarning,
            )

    def _store(self, session, _network):
        state = session.numpy_state()
        kernels = [_network.kernel_key(i) for i in range(len(self.initial_filters_))]
        # What training did not change stays exactly as it was, not rounded through float32.
        frozen = [*_network.STANDARDISATION, *(kernels if self.train_ != "all" else [])]
        state.update({k: self._state[k] for k in frozen})
        self._state = state
        self._optimizer_state = session.optimizer_state()
        self.filters_ = [self._state[k] for k in kernels]

    # -- inference --------------------------------------------------------

    def _forward_numpy(self, X):
        """The logits of ``X``, computed in float64."""
        check_is_fitted(self)
        _, _training = _import_torch()
        import torch

        images = self._images(X)
        device = _training.torch_device(self.device, fitting=False)
        net = self._network(torch.float64, device)
        chunk = self._chunk_size()
        out = []
        with torch.no_grad(), _training.torch_threads(device, self._macs(min(chunk, images.shape[0]))):
            for start in range(0, images.shape[0], chunk):
                out.append(net(_network_tensor(images[start : start + chunk], device)).cpu().numpy())
        return np.concatenate(out, axis=0)

    def _network(self, dtype, device):
        """The torch network of the fitted state, in ``dtype`` on ``device``."""
        _network, _ = _import_torch()
        grid = getattr(self.conv_, "output_grid", None)
        specs = [layer.layer_.spec for layer in _layers(self.conv_)]
        return _network.build_network(
            specs, getattr(self.conv_, "output", "last"), None if grid is None else _pair(grid), self._state,
            self._head_sizes(), dtype, device,
        )

    def _macs(self, n_images):
        """Convolution multiply-adds of the network on ``n_images`` images."""
        return n_images * sum(layer.layer_.macs_per_image() for layer in _layers(self.conv_))

    def _chunk_size(self):
        # float64 scratch per image, counted as for FixedConvTransformer's batches.
        per_image = sum(layer.layer_.bytes_per_image(itemsize=8) for layer in _layers(self.conv_))
        return auto_batch_size(per_image, _PREDICT_CHUNK_BYTES)


def transfer_bank(estimator, **params):
    """The fixed network (or layer) of a fitted model, with the kernels it learned as banks.

    ``estimator.conv`` with every layer's ``bank`` set to its learned
    ``filters_`` (and ``bank_params`` cleared); ``params`` then set other
    parameters (e.g. ``image_shape`` for new images, ``conv1__padding`` for a
    network's layer).

    Parameters
    ----------
    estimator : LearnedConvClassifier
        A fitted model.
    **params
        Parameters of the returned transformer to set.

    Returns
    -------
    transformer : FixedConvTransformer or FixedConvNet
        Unfitted; fit it (only shapes are read) and use it like any bank.
    """
    check_is_fitted(estimator, "filters_")
    conv = clone(estimator.conv_)
    if isinstance(conv, FixedConvNet):
        banks = {}
        for (name, _), filters in zip(conv.layers, estimator.filters_):
            banks.update({f"{name}__bank": filters.copy(), f"{name}__bank_params": None})
        conv.set_params(**banks)
    else:
        conv.set_params(bank=estimator.filters_[0].copy(), bank_params=None)
    return conv.set_params(**params)


def _check_weights(sample_weight, X):
    """Checked ``sample_weight`` as float64, or None: non-negative and finite, one per image, not all zero."""
    if sample_weight is None:
        return None
    weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if not weight.any():
        raise ValueError("Every sample_weight of LearnedConvClassifier is zero: nothing would be learned.")
    return weight


def _mean_one(weight, rows, split="training"):
    """``weight[rows]`` rescaled to a mean of 1 (see :meth:`LearnedConvClassifier.fit`), or None.

    A validation split whose weights are all zero is scored unweighted rather
    than divided by zero; a training split whose weights are all zero is refused.
    """
    if weight is None:
        return None
    part = weight[rows]
    if part.any():
        return part / part.mean()
    if split == "training":
        raise ValueError(
            "Every sample_weight of LearnedConvClassifier's training split is zero (the nonzero ones fell in "
            "the early-stopping validation split): nothing would be learned. Pass more nonzero weights or "
            "early_stopping=False."
        )
    return None


def _layers(conv):
    """The fitted FixedConvTransformer layers of a fitted description."""
    return [layer for _, layer in conv.layers_] if isinstance(conv, FixedConvNet) else [conv]


def _description_params(conv):
    """The settings of a description that decide its network (not its output container)."""
    return {k: v for k, v in conv.get_params(deep=True).items()
            if not isinstance(v, BaseEstimator) and k != "layers" and not k.endswith("data_format")}


def _same(a, b):
    if isinstance(a, np.random.RandomState) or isinstance(b, np.random.RandomState):
        return True  # a generator's state moves as it is used: it cannot tell a changed description
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _conv_maps(fitted):
    """Maps a fitted layer's convolution makes (before a two-sided nonlinearity doubles them)."""
    separate = fitted.spec.channel_mode == "separate"
    return fitted.filters.shape[0] * (fitted.image_shape[2] if separate else 1)


def _pair(value):
    return (value, value) if isinstance(value, numbers.Integral) else tuple(value)


def _init_head(rng, sizes, n_in, head_keys):
    """PyTorch's default ``nn.Linear`` initialisation, U(+-1/sqrt(fan_in)), from a NumPy seed."""
    weights = {}
    for i, n_out in enumerate(sizes):
        bound = 1.0 / math.sqrt(n_in)
        weight, bias = head_keys(i)
        weights[weight] = rng.uniform(-bound, bound, (n_out, n_in))
        weights[bias] = rng.uniform(-bound, bound, n_out)
        n_in = n_out
    return weights


def _network_tensor(images, device):
    _network, _ = _import_torch()
    import torch

    return _network.to_tensor(images, device, torch.float64)


def _augmentation(augment, image_height):
    """The ``augment`` parameter resolved: ``crop_padding`` (``True``: an eighth of ``image_height``) and ``horizontal_flip``."""
    if augment is False:
        return {"crop_padding": 0, "horizontal_flip": False}
    unknown = set(augment) - set(_AUGMENT_KEYS) if isinstance(augment, dict) else set()
    if unknown:
        raise ValueError(
            f"The 'augment' parameter of LearnedConvClassifier takes the keys "
            f"{list(_AUGMENT_KEYS)}. Got {sorted(unknown)} instead."
        )
    chosen = {"crop_padding": image_height // 8, "horizontal_flip": True}
    if isinstance(augment, dict):
        chosen.update(augment)
    return {"crop_padding": int(chosen["crop_padding"]), "horizontal_flip": bool(chosen["horizontal_flip"])}
