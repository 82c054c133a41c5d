"""FixedConvTransformer: the frozen convolutional half of a CNN as a scikit-learn transformer.

A thin shell: ``fit`` converts and shapes the input (:mod:`._input`) and fits
a :class:`~skconvfeat._fitted.FittedLayer` (``layer_``); ``transform`` runs it
on a driver of :mod:`._backend`.
"""

import copy
import functools
import inspect
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ._doc_link import API_PAGE
from . import _backend, _device, _input, _layer
from ._banks import pack_banks, unpack_banks
from ._fitted import (
    PAIR_OR_INT,
    FittedLayer,
    check_cast,
    check_finite,
    fit_layer,
    layer_spec,
    restore_on_failure,
    samples_patches,
)

_PARAMETER_CONSTRAINTS = {
    "bank": [str, "array-like"],
    "bank_params": [None, dict],
    "kernel_size": PAIR_OR_INT,
    "image_shape": [None, tuple, list],
    "channel_mode": [StrOptions(set(_layer.CHANNEL_MODES))],
    "padding": [StrOptions(set(_layer.PADDINGS))],
    "nonlinearity": [StrOptions(set(_layer.NONLINEARITY_TABLE))],
    "pooling": [StrOptions(set(_layer.POOLINGS))],
    "pool_size": PAIR_OR_INT,
    "pool_stride": [None, *PAIR_OR_INT],
    "pool_grid": [None, *PAIR_OR_INT],
    "alpha": [Interval(numbers.Real, 0, None, closed="left")],
    "nearest_fraction": [Interval(numbers.Real, 0, 1, closed="right")],
    "patch_norm": ["boolean", StrOptions({"auto"})],
    "whiten": ["boolean", StrOptions({"auto"})],
    "eps_norm": [Interval(numbers.Real, 0, None, closed="neither")],
    "eps_zca": [Interval(numbers.Real, 0, None, closed="neither")],
    "n_patches": [Interval(numbers.Integral, 1, None, closed="left")],
    "dtype": [StrOptions({"float32", "float64"})],
    "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
    "device": [StrOptions(set(_device.DEVICES))],
    "random_state": ["random_state"],
    "data_format": [None, StrOptions(set(_input.DATA_FORMATS))],
}

# Images of a Dask array that fit reads to sample patches from: enough for the
# default 100,000 patches to come from many images, bounded whatever the array's size.
_DASK_FIT_IMAGES = 10_000


class FixedConvTransformer(TransformerMixin, BaseEstimator):
    """Convolve images with a fixed filter bank, apply a nonlinearity, pool and flatten.

    This is the convolutional layer of a CNN with its kernels frozen: follow
    it with any scikit-learn classifier (e.g. ``LogisticRegression``, which
    plays the fully-connected layer) and only the classifier is trained.

    Parameters
    ----------
    bank : str or array-like, default="gabor"
        The kernels: a registered bank name (see :func:`skconvfeat.list_banks`:
        ``"gaussian"``, ``"gabor"``, ``"sharpen"``, ``"random"``,
        ``"identity"``, and the data-derived ``"patches"``, ``"kmeans"``,
        ``"pca"``, ...) or an array of kernels shaped ``(n_filters, kh, kw)``
        (spread over the channels) or ``(n_filters, n_channels, kh, kw)``.
        Data-derived banks are learnt in ``fit``, without labels, from
        ``n_patches`` preprocessed patches of ``X`` (the Filter banks guide).

    bank_params : dict, default=None
        Keyword parameters of the named bank, e.g. ``{"sigmas": (1, 2)}`` for
        ``"gaussian"`` or ``{"n_filters": 32}`` for ``"random"``.

    kernel_size : int or (int, int), default=5
        Kernel height and width in pixels for named banks.

    image_shape : tuple of int, default=None
        Shape ``(h, w)`` or ``(h, w, c)`` of one image when ``X`` holds flat
        rows (like ``load_digits().data``). One entry may be ``-1`` to be
        inferred, as in ``numpy.reshape``; ``(1, -1)`` treats each row as a
        one-pixel-high strip. ``None`` infers square grey images from flat
        rows; it is not needed for image arrays ``(n, h, w[, c])``.

    channel_mode : {"sum", "separate"}, default="sum"
        How colour channels meet the filters. ``"sum"``: each filter spans all
        channels and their responses are added, as in a CNN layer (a bank
        given in 2-D is spread evenly, i.e. applied to the channel mean).
        ``"separate"``: each filter is applied to each channel on its own
        (depthwise), giving ``n_filters * n_channels`` maps.

    padding : {"valid", "same", "reflect"}, default="valid"
        Border handling of the convolution. ``"valid"``: only positions where
        the kernel fits, maps shrink by ``kernel_size - 1``. ``"same"``: zero
        padding keeps the image size. ``"reflect"``: mirror padding keeps it.

    nonlinearity : {"relu", "none", "abs", "square", "two_sided_relu", \
            "soft_threshold", "two_sided_soft_threshold", "triangle", "nearest", \
            "two_sided_nearest"}, default="relu"
        Applied to every response ``r = d . z`` of kernel ``d`` to the
        (preprocessed) patch ``z``. ``"soft_threshold"``: ``max(r - alpha, 0)``;
        two-sided ones also keep ``max(-r - a, 0)`` as separate maps (``a`` is
        ``alpha`` for the soft threshold, else 0). ``"triangle"`` (Coates, Lee & Ng 2011):
        ``max(0, mean_j dist_j - dist_k)`` with ``dist_k = |z - d_k|``, meant
        for ``"kmeans"``/``"patches"`` banks. ``"nearest"`` (Thiry, Arbel, Belilovsky
        & Oyallon 2021): 1 where ``d_k`` is among the ``nearest_fraction`` of the
        kernels nearest to ``z``, else 0; ``"two_sided_nearest"`` adds the maps of
        the kernels nearest to ``-z`` (their form). The last five (the dictionary
        encodings) need ``channel_mode="sum"``; the nearest ones take the NumPy path
        (no numba pass): a partial sort a position, about four times the soft threshold's cost.

    pooling : {"avg", "max"}, default="avg"
        How each pooling region is reduced.

    pool_size : int or (int, int), default=2
        Pooling window in pixels (ignored when ``pool_grid`` is set).

    pool_stride : int or (int, int), default=None
        Step between windows in pixels; ``None`` means ``pool_size``
        (non-overlapping windows).

    pool_grid : int or (int, int), default=None
        Pool each map over a ``gh x gw`` grid of near-equal regions instead of
        windows, e.g. ``2`` for quadrants. Regions follow
        ``torch.nn.AdaptiveAvgPool2d``: region ``i`` spans
        ``[floor(i*H/g), ceil((i+1)*H/g))``.

    alpha : float >= 0, default=0.25
        Threshold of the soft-threshold encodings, in units of the response
        (for whitened patches and unit-norm kernels, standard deviations of
        whitened pixels: Coates & Ng used 0.25). Ignored by other nonlinearities.

    nearest_fraction : float in (0, 1], default=0.4
        Share of the kernels the nearest encodings mark at each position (at
        least one): Thiry et al.'s best on CIFAR-10 was 0.4. Ignored by other
        nonlinearities.

    patch_norm : bool or "auto", default="auto"
        Per-patch brightness and contrast normalisation, identical in ``fit``
        and ``transform``: a patch ``p`` of ``D = kh*kw*c`` values becomes
        ``(p - mean(p)) / sqrt(var(p) + eps_norm)``. ``"auto"``: on for
        data-derived banks only.

    whiten : bool or "auto", default="auto"
        ZCA whitening of the (normalised) patches, ``z = W (q - mu)`` fitted on
        the sampled patches and folded into the kernels. ``"auto"``: on for
        banks registered with ``whiten=True`` (``"patches"``, ``"kmeans"``).

    eps_norm : float > 0, default=10.0
        Added to each patch's variance, in squared pixel units of ``X``: 10
        for pixels in 0-255, about 1.5e-4 (``10 / 255**2``) for [0, 1].

    eps_zca : float > 0, default=0.1
        Whitening regulariser relative to the patches' mean eigenvalue
        (on the JPEG copy of CIFAR-10, 1.0 beat 0.1: choose it on held-out data).

    n_patches : int, default=100_000
        Patches sampled (with replacement, from ``random_state``) to fit the
        whitening and a data-derived bank; all positions once when ``X`` has
        fewer. ``fit`` holds ``n_patches * D * 8`` bytes of them.

    dtype : {"float32", "float64"}, default="float32"
        Precision of the computation and of the output.

    batch_size : int or "auto", default="auto"
        Images per batch. ``"auto"`` keeps each CPU thread's scratch near 4 MiB;
        on the GPU it is sized from free device memory. Memory beyond the output:
        about ``threads * batch_size * layer_.bytes_per_image(itemsize)``.

    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to compute. ``"auto"`` uses the GPU when CuPy imports and sees a
        device, else the CPU. ``"cuda"`` fails in ``fit`` without a usable GPU.
        CuPy input gives CuPy output; NumPy input gives NumPy output.

    random_state : int, RandomState instance or None, default=None
        Seed of the ``"random"`` bank, and of the patch sampling and the
        data-derived banks' random choices.

    data_format : {"channels_last", "channels_first"}, default=None
        Layout of 4-D ``X``: ``(n, h, w, c)`` or PyTorch's ``(n, c, h, w)``;
        for flat rows in ``"channels_first"``, ``image_shape`` is ``(c, h, w)``.
        ``None`` reads channels last but raises when an image has more
        channels than rows or columns (a channels-first batch read channels
        last gives wrong features with no other sign).

    Attributes
    ----------
    layer_ : FittedLayer
        The fitted layer, a frozen value: ``spec``, ``filters``,
        ``preprocessing``, ``image_shape``; its geometry (``output_shape``,
        ``map_shape``, ``n_features_out``, ``bytes_per_image(itemsize)``,
        ``macs_per_image()``), ``weights(dtype)``, ``forward(images)``, and
        ``unpooled()``: the same layer whose features are the maps before
        pooling. Parameters set after ``fit`` do not change it: refit.

    filters_ : ndarray of shape (n_filters, n_channels, kh, kw)
        ``layer_.filters``: the kernels (float64, read-only), applied to the
        preprocessed patches; ``n_channels`` is 1 in ``"separate"`` mode.

    preprocessing_ : PatchPreprocessing or None
        ``layer_.preprocessing``: ``patch_norm``, ``eps_norm`` and with
        whitening the patches' ``mean`` and ZCA matrix ``whitening``, laid out
        like a flattened kernel ``(c, kh, kw)``.

    image_shape_ : tuple of int
        ``(h, w, c)`` of one image (channels last whatever ``data_format``).

    n_features_in_ : int
        Values per image, ``h * w * c``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen in ``fit`` when ``X`` was a DataFrame.

    n_features_out_ : int
        Number of output features: ``n_maps * ph * pw``.

    See Also
    --------
    skconvfeat.list_banks : Names of the built-in banks.
    skconvfeat.make_bank : Build a bank by name.

    Notes
    -----
    The convolution is a cross-correlation (no kernel flip), as in CNN
    frameworks; it runs as im2col matrix products in cache-sized batches over
    as many threads as BLAS may use (the Layer guide, "Memory and threads").

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconvfeat import FixedConvTransformer
    >>> X, y = load_digits(return_X_y=True)
    >>> conv = FixedConvTransformer(bank="gabor", kernel_size=3, pool_grid=2)
    >>> conv.fit_transform(X).shape
    (1797, 64)
    >>> model = make_pipeline(conv, LogisticRegression(max_iter=2000)).fit(X[:1000], y[:1000])
    >>> round(model.score(X[1000:], y[1000:]), 2) > 0.8
    True
    """

    _doc_link_module, _doc_link_template = "skconvfeat", API_PAGE

    _parameter_constraints: dict = _PARAMETER_CONSTRAINTS

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
        alpha=0.25,
        nearest_fraction=0.4,
        patch_norm="auto",
        whiten="auto",
        eps_norm=10.0,
        eps_zca=0.1,
        n_patches=100_000,
        dtype="float32",
        batch_size="auto",
        device="auto",
        random_state=None,
        data_format=None,
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
        self.alpha = alpha
        self.nearest_fraction = nearest_fraction
        self.patch_norm = patch_norm
        self.whiten = whiten
        self.eps_norm = eps_norm
        self.eps_zca = eps_zca
        self.n_patches = n_patches
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.data_format = data_format

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X``, build the filter bank and record the shapes.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images (NumPy, CuPy, Dask or a torch tensor). Only their
            shape is read, unless whitening or a data-derived bank samples
            ``n_patches`` patches from them (from a bounded sample of a Dask array).
        y : None
            Ignored (labels are never used).

        Returns
        -------
        self : FixedConvTransformer
        """
        _device.resolve_device(self.device)
        with restore_on_failure(self):  # shaping records n_features_in_ as it goes
            X = _input.convert(X, "FixedConvTransformer")
            sample = _fit_sample(self, X) if _input.is_dask_array(X) else X
            images = _input.shape_images(sample, self, reset=True)
            self.layer_ = fit_layer(images, self.get_params(deep=False), carried_banks(self))
        return self

    def transform(self, X):
        """Convolve, activate, pool and flatten ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images of the shape seen in ``fit``; NumPy, CuPy, Dask or a torch
            tensor (converted to NumPy, or to CuPy on a GPU).

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_features_out_`)
            Pooled features, ordered map by map then row by row. A CuPy array
            for CuPy input; for a Dask array, a lazy Dask array with one block
            per block of images, computed when asked.
        """
        check_is_fitted(self)
        X = _input.convert(X, "FixedConvTransformer")
        if _input.is_dask_array(X):
            return _lazy_transform(self, X)
        return _run(self, _input.shape_images(X, self, reset=False))

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``{bank}_conv{map}_y{row}_x{col}``.

        The bank's name leads, so a ``FeatureUnion`` of several banks has
        unique names; kernels given as an array are named ``conv{map}_y{row}_x{col}``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the names seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        ph, pw, n_maps = self.layer_.output_shape
        prefix = f"{self.bank}_conv" if isinstance(self.bank, str) else "conv"
        names = [f"{prefix}{m}_y{i}_x{j}" for m in range(n_maps) for i in range(ph) for j in range(pw)]
        return np.asarray(names, dtype=object)

    # The fitted layer's parts under their established names (one source of truth: ``layer_``).
    filters_ = property(lambda self: self.layer_.filters)
    preprocessing_ = property(lambda self: self.layer_.preprocessing)
    image_shape_ = property(lambda self: self.layer_.image_shape)
    n_features_out_ = property(lambda self: self.layer_.n_features_out)

    def __getstate__(self):
        state = super().__getstate__()
        # The banks registered at run time travel with the estimator, so a name
        # in it or in a parameter grid is known in any worker process.
        state["_user_banks"] = pack_banks(state.pop("_carried_banks", None))
        state["_skconvfeat_version"] = _version()
        return state

    def __setstate__(self, state):
        # Kept by this estimator alone: loading a model never changes the process's banks.
        state["_carried_banks"] = unpack_banks(state.pop("_user_banks", {}))
        _upgrade_state(state, type(self).__name__)
        super().__setstate__(state)

    def __sklearn_clone__(self):
        # A clone (GridSearchCV's, FixedConvNet's, a worker's) keeps the banks this estimator carried in.
        clone = super().__sklearn_clone__()
        if carried_banks(self):
            clone._carried_banks = carried_banks(self)
        return clone

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = [self.dtype]
        return tags


def carried_banks(transformer):
    """The banks an unpickled transformer brought with it, ``{name: CarriedBank}`` (None when made here)."""
    return getattr(transformer, "_carried_banks", None)


def _fit_sample(transformer, X):
    """What ``fit`` computes of a Dask array: a bounded sample of images when patches are needed, else one zero image."""
    if samples_patches(transformer.get_params(deep=False), carried_banks(transformer)):
        return _input.sample_images(X, _DASK_FIT_IMAGES, transformer.random_state)
    return _input.one_image_like(X)


def _run(transformer, images):
    """The features of in-memory images ``(n, h, w, c)``: the input and output checks around a driver's run."""
    layer, params = transformer.layer_, transformer.get_params(deep=False)
    norm = layer.preprocessing is not None and layer.preprocessing.patch_norm
    check_cast(images, params["dtype"], layer.kernel_hw if norm else None)
    device = _device.transform_device(params["device"], images, type(transformer).__name__)
    features = _backend.run(layer, images, device=device, dtype=params["dtype"], batch_size=params["batch_size"])
    return check_finite(features, _device.namespace(device), params, layer.preprocessing.eps_norm if norm else None)


def _lazy_transform(transformer, X):
    """The features of the Dask array ``X``, lazily: one block of features per block of images."""
    _input.shape_images(_input.one_image_like(X), transformer, reset=False)  # shape errors now, not at compute time
    if _get_output_config("transform", transformer)["dense"] != "default":
        # The set_output wrapper would build a pandas frame from the lazy result, computing it whole.
        raise ValueError(
            "FixedConvTransformer cannot return a pandas/polars DataFrame for a lazy Dask "
            "array without computing it. Call set_output(transform='default') and wrap the "
            "result yourself: dask.dataframe.from_dask_array(Xt, columns=conv.get_feature_names_out())."
        )
    # A copy: later set_params or refits must not change a graph already built.
    block = functools.partial(_transform_block, transformer=copy.copy(transformer))
    return _input.lazy_transform(X, block, transformer.n_features_out_, np.dtype(transformer.dtype))


def _transform_block(block, transformer):
    """One in-memory block of a Dask array through the checks and the layer (run by Dask, maybe on a worker)."""
    return _run(transformer, _input.shape_images(block, transformer, reset=False))


def _version():
    from . import __version__  # at call time: the package imports this module before defining it

    return __version__


# Parameters that pickles of earlier commits may lack.
_ADDED_PARAMETERS = ("nearest_fraction",)


def _upgrade_state(state, owner):
    """Bring a pickled transformer's state to this version's layout, or say clearly why it cannot load.

    Up to 0.x pickles kept ``filters_``, ``preprocessing_``, ``image_shape_``
    and ``n_features_out_`` and rebuilt the layer from the parameters: their
    layer is rebuilt here from the same fields, so they transform as before.
    """
    saved, current = state.pop("_skconvfeat_version", None), _version()
    if saved is not None and saved != current:
        warnings.warn(
            f"This {owner} was pickled by skconvfeat {saved} and is loaded by skconvfeat "
            f"{current}; it may not give the same features. Refit it with {current} to be sure.",
            UserWarning,
        )
    # Parameters added since a model was pickled take their defaults, which keep its features.
    for name in _ADDED_PARAMETERS:
        state.setdefault(name, inspect.signature(FixedConvTransformer).parameters[name].default)
    if "filters_" not in state or "layer_" in state:
        return
    old = {name: state.pop(name) for name in ("filters_", "preprocessing_", "image_shape_", "n_features_out_")
           if name in state}
    try:
        spec = layer_spec(state)
        state["layer_"] = FittedLayer(spec, old["filters_"], old.get("preprocessing_"), old["image_shape_"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(
            f"This {owner} was pickled by an older skconvfeat (before the fitted layer_ value) and "
            f"cannot be upgraded to skconvfeat {current} ({exc!r}). Refit it with {current}."
        ) from None
