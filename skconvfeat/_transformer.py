"""FixedConvTransformer: the frozen convolutional half of a CNN as a scikit-learn transformer."""

import copy
import functools
import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from . import _backend, _input, _layer
from ._backend import cpu as _cpu
from ._banks import _REGISTRY, _as_pair, _unknown_bank_message, make_bank, pack_user_banks, unpack_user_banks

_PAIR_OR_INT = [Interval(numbers.Integral, 1, None, closed="left"), tuple, list]

# The layer's parameters, shared with LearnedConvClassifier so both arms of the
# comparison accept exactly the same architectures.
LAYER_PARAMETER_CONSTRAINTS = {
    "bank": [str, "array-like"],
    "bank_params": [None, dict],
    "kernel_size": _PAIR_OR_INT,
    "image_shape": [None, tuple, list],
    "channel_mode": [StrOptions(set(_layer.CHANNEL_MODES))],
    "padding": [StrOptions(set(_layer.PADDINGS))],
    "nonlinearity": [StrOptions(set(_layer.NONLINEARITIES))],
    "pooling": [StrOptions(set(_layer.POOLINGS))],
    "pool_size": _PAIR_OR_INT,
    "pool_stride": [None, *_PAIR_OR_INT],
    "pool_grid": [None, *_PAIR_OR_INT],
    "random_state": ["random_state"],
}


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
        ``"identity"``, ...) or an array of kernels shaped ``(n_filters, kh, kw)``
        (spread over the channels) or ``(n_filters, n_channels, kh, kw)``.

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

    nonlinearity : {"relu", "none", "abs", "square", "two_sided_relu"}, default="relu"
        Applied to every response. ``"two_sided_relu"`` keeps
        ``max(x, 0)`` and ``max(-x, 0)`` as separate maps (twice the features).

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

    dtype : {"float32", "float64"}, default="float32"
        Precision of the computation and of the output.

    batch_size : int or "auto", default="auto"
        Images per batch. ``"auto"`` keeps each CPU thread's scratch memory near
        4 MiB (a few times the L2 cache); on the GPU it is sized from free device memory.
        Extra memory held by ``transform`` beyond its output is about
        ``threads * batch_size * bytes_per_image`` where ``bytes_per_image`` is
        ``itemsize * (H'*W' * (C*kh*kw + n_maps) + padded input)``.

    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to compute. ``"auto"`` uses the GPU when CuPy imports and sees a
        device, else the CPU. ``"cuda"`` fails in ``fit`` without a usable GPU.
        CuPy input gives CuPy output; NumPy input gives NumPy output.

    random_state : int, RandomState instance or None, default=None
        Seed of the ``"random"`` bank.

    data_format : {"channels_last", "channels_first"}, default=None
        Layout of 4-D ``X``: ``(n, h, w, c)`` or PyTorch's ``(n, c, h, w)``;
        for flat rows in ``"channels_first"``, ``image_shape`` is ``(c, h, w)``.
        ``None`` reads channels last but raises when an image has more
        channels than rows or columns (a channels-first batch read channels
        last gives wrong features with no other sign).

    Attributes
    ----------
    filters_ : ndarray of shape (n_filters, n_channels, kh, kw)
        The kernels applied (float64, host memory). In ``"separate"`` mode
        ``n_channels`` is 1: each kernel is applied to every channel.

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
    frameworks. On the CPU, every image is processed as an im2col matrix
    product in cache-sized batches spread over threads (one per BLAS thread
    allowed, so ``threadpoolctl`` limits and joblib workers are respected).

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

    _parameter_constraints: dict = {
        **LAYER_PARAMETER_CONSTRAINTS,
        "dtype": [StrOptions({"float32", "float64"})],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "device": [StrOptions(set(_backend.DEVICES))],
        "data_format": [None, StrOptions(set(_input.DATA_FORMATS))],
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
            Training images; only their shape is used (a Dask array is not
            computed). NumPy, CuPy, Dask or a torch tensor.
        y : None
            Ignored.

        Returns
        -------
        self : FixedConvTransformer
            The fitted transformer.
        """
        _backend.resolve_device(self.device)
        # Validation sets n_features_in_ as it goes: restore the previous fit if a later check fails.
        previous = dict(vars(self))
        try:
            X = _input.convert(X, "FixedConvTransformer")
            # A lazy array is validated through one zero image of its shape: nothing is computed.
            images = self._validate_images(_input.one_image_like(X) if _input.is_dask_array(X) else X, reset=True)
            spec = self._layer_spec()
            filters = self._build_filters(images.shape[-1])
            self._check_geometry(images.shape[1:3], filters.shape[2:], spec)
        except Exception:
            vars(self).clear()
            vars(self).update(previous)
            raise
        self.filters_ = filters
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        self.n_features_out_ = _layer.n_features_out(
            self.image_shape_, filters.shape[2:], spec, filters.shape[0]
        )
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
            Pooled features, ordered map by map then row by row
            (``get_feature_names_out`` names them). A CuPy array for CuPy input;
            for a Dask array, a lazy Dask array with one block per block of
            images (rechunked so each image is whole), computed when asked.
        """
        check_is_fitted(self)
        X = _input.convert(X, "FixedConvTransformer")
        if _input.is_dask_array(X):
            return self._lazy_transform(X)
        return self._transform_images(self._validate_images(X, reset=False))

    def _lazy_transform(self, X):
        self._validate_images(_input.one_image_like(X), reset=False)  # shape errors now, not at compute time
        if _get_output_config("transform", self)["dense"] != "default":
            # The set_output wrapper would build a pandas frame from the lazy result, computing it whole.
            raise ValueError(
                "FixedConvTransformer cannot return a pandas/polars DataFrame for a lazy Dask "
                "array without computing it. Call set_output(transform='default') and wrap the "
                "result yourself: dask.dataframe.from_dask_array(Xt, columns=conv.get_feature_names_out())."
            )
        # A copy: later set_params or refits must not change a graph already built.
        block = functools.partial(_transform_block, transformer=copy.copy(self))
        return _input.lazy_transform(X, block, self.n_features_out_, np.dtype(self.dtype))

    def _transform_images(self, images):
        spec = self._layer_spec()
        device = self._transform_device(images)
        if device == "cuda":
            from ._backend.cuda import run_gpu

            return run_gpu(images, self.filters_, spec, self.dtype, self.batch_size)
        return _cpu.run_cpu(images, self.filters_, spec, np.dtype(self.dtype), self._cpu_batch_size(spec))

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
        spec = self._layer_spec()
        n_maps = spec.n_maps(self.filters_.shape[0], self.image_shape_[2])
        ph, pw = spec.pooled_shape(spec.conv_shape(self.image_shape_[:2], self.filters_.shape[2:]))
        prefix = f"{self.bank}_conv" if isinstance(self.bank, str) else "conv"
        names = [f"{prefix}{m}_y{i}_x{j}" for m in range(n_maps) for i in range(ph) for j in range(pw)]
        return np.asarray(names, dtype=object)

    def __getstate__(self):
        state = super().__getstate__()
        # The banks registered at run time travel with the estimator, so a name
        # in it or in a parameter grid is known in any worker process.
        state["_user_banks"] = pack_user_banks()
        return state

    def __setstate__(self, state):
        unpack_user_banks(state.pop("_user_banks", {}))
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = [self.dtype]
        return tags

    # -- validation -------------------------------------------------------

    def _validate_images(self, X, reset):
        """Return ``X`` as images ``(n, h, w, c)`` (a view when possible), checking everything."""
        if _backend.is_device_array(X):
            images = _check_device_images(_input.to_channels_last(X, self.data_format, "FixedConvTransformer"))
            self._check_dims(images, reset)
            return images
        checked = check_array(
            X, allow_nd=True, dtype="numeric", ensure_all_finite=True, input_name="X", estimator=self
        )
        _reject_complex(checked)
        if checked.ndim == 2:
            # Feature names and counts are scikit-learn's business; a DataFrame keeps its names.
            validate_data(self, X if hasattr(X, "columns") else checked, reset=reset, skip_check_array=True)
            return self._unflatten(checked, reset)
        if checked.ndim not in (3, 4):
            raise ValueError(
                "X must be flat rows (n_samples, h*w*c), grey images (n_samples, h, w) or "
                f"colour images (n_samples, h, w, c). Got an array of shape {checked.shape}."
            )
        images = checked[..., np.newaxis] if checked.ndim == 3 else checked
        images = _input.to_channels_last(images, self.data_format, "FixedConvTransformer")
        self._check_dims(images, reset)
        return images

    def _check_dims(self, images, reset):
        shape = tuple(int(s) for s in images.shape[1:])
        if self.image_shape is not None and _resolve_image_shape(self._image_shape_hwc(), math.prod(shape))[:2] != shape[:2]:
            raise ValueError(
                f"The 'image_shape' parameter of FixedConvTransformer is {self.image_shape!r} "
                f"but X holds images of shape {shape}. Leave image_shape=None for image arrays."
            )
        if reset:
            self.n_features_in_ = math.prod(shape)
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif shape != self.image_shape_:
            raise ValueError(
                f"X holds images of shape {shape}, but FixedConvTransformer was fitted on "
                f"images of shape {self.image_shape_}."
            )

    def _unflatten(self, flat, reset):
        n_features = flat.shape[1]
        h, w, c = _resolve_image_shape(self._image_shape_hwc(), n_features) if reset else self.image_shape_
        if self.data_format == "channels_first":
            return flat.reshape(flat.shape[0], c, h, w).transpose(0, 2, 3, 1)
        return flat.reshape(flat.shape[0], h, w, c)

    def _image_shape_hwc(self):
        """``image_shape`` in ``(h, w[, c])`` order: channels-first flat rows give it as ``(c, h, w)``."""
        if self.data_format == "channels_first" and self.image_shape is not None and len(self.image_shape) == 3:
            c, h, w = self.image_shape
            return (h, w, c)
        return self.image_shape

    def _layer_spec(self):
        grid = _pair_param(self.pool_grid, "pool_grid") if self.pool_grid is not None else None
        size = _pair_param(self.pool_size, "pool_size")
        stride = size if self.pool_stride is None else _pair_param(self.pool_stride, "pool_stride")
        return _layer.LayerSpec(
            padding=self.padding,
            nonlinearity=self.nonlinearity,
            pooling=self.pooling,
            pool_size=size,
            pool_stride=stride,
            pool_grid=grid,
            channel_mode=self.channel_mode,
        )

    def _build_filters(self, n_channels):
        bank_channels = 1 if self.channel_mode == "separate" else n_channels
        if isinstance(self.bank, str):
            if self.bank not in _REGISTRY:
                raise InvalidParameterError(_unknown_bank_message(self.bank, "FixedConvTransformer"))
            return make_bank(
                self.bank,
                kernel_size=_pair_param(self.kernel_size, "kernel_size"),
                n_channels=bank_channels,
                random_state=self.random_state,
                **(self.bank_params or {}),
            )
        if self.bank_params:
            raise ValueError(
                "The 'bank_params' parameter of FixedConvTransformer only applies to a "
                f"named bank, but 'bank' is an array. Got bank_params={self.bank_params!r}."
            )
        return _user_filters(self.bank, bank_channels)

    def _check_geometry(self, image_hw, kernel_hw, spec):
        if spec.padding == "valid" and any(k > i for k, i in zip(kernel_hw, image_hw)):
            raise ValueError(
                f"The kernels ({kernel_hw[0]}x{kernel_hw[1]}) are larger than the images "
                f"({image_hw[0]}x{image_hw[1]}) with padding='valid'. Use a smaller "
                "'kernel_size' or padding='same'."
            )
        map_hw = spec.conv_shape(image_hw, kernel_hw)
        if spec.pool_grid is None and any(p > m for p, m in zip(spec.pool_size, map_hw)):
            raise ValueError(
                f"The 'pool_size' parameter of FixedConvTransformer ({spec.pool_size}) is larger "
                f"than the {map_hw[0]}x{map_hw[1]} feature maps. Use a smaller pool_size, "
                "padding='same', or pool_grid."
            )

    def _transform_device(self, images):
        if _backend.is_device_array(images):
            return "cuda"
        if self.device == "cuda" and not _backend.gpu_available():
            # A model fitted on a GPU machine must still work where it is loaded.
            warnings.warn(
                "This FixedConvTransformer has device='cuda' but no usable GPU is present; "
                "transforming on the CPU. Call set_params(device='cpu') to silence this.",
                UserWarning,
            )
            return "cpu"
        return _backend.resolve_device(self.device)

    def _cpu_batch_size(self, spec):
        if self.batch_size != "auto":
            return self.batch_size
        per_image = _layer.bytes_per_image(
            self.image_shape_, self.filters_.shape[2:], spec, self.filters_.shape[0], np.dtype(self.dtype).itemsize
        )
        return _layer.auto_batch_size(per_image, _cpu.CPU_WORKING_SET_BYTES)


def _transform_block(block, transformer):
    """One in-memory block of a Dask array through the checks and the layer (run by Dask, maybe on a worker)."""
    return transformer._transform_images(transformer._validate_images(block, reset=False))


def _pair_param(value, name, owner="FixedConvTransformer"):
    pair = _as_pair(value)
    if pair is None:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a positive int or a "
            f"pair of positive ints. Got {value!r} instead."
        )
    return pair


def _reject_complex(X):
    if np.iscomplexobj(X):
        raise ValueError("Complex data not supported: X must hold real numbers.")


def _check_device_images(X):
    """Checks for CuPy input, done on the device so the data never leaves it."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers. Got a CuPy array of dtype {X.dtype}.")
    if X.ndim not in (3, 4) or X.shape[0] == 0:
        raise ValueError(
            "CuPy input must be images (n_samples, h, w) or (n_samples, h, w, c) with at "
            f"least one sample. Got shape {X.shape}."
        )
    if X.dtype.kind == "f" and not bool(X.size == 0 or _backend.namespace("cuda").isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")
    return X[..., None] if X.ndim == 3 else X


def _resolve_image_shape(image_shape, n_features):
    """``image_shape`` (possibly None or with a -1) as ``(h, w, c)`` for rows of ``n_features``."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"X has {n_features} features per row, which is not a square grey image; "
                "pass the 'image_shape' parameter of FixedConvTransformer, e.g. "
                f"image_shape=(h, w) or (h, w, c) with h*w*c == {n_features}, or (1, -1)."
            )
        return (side, side, 1)
    dims = tuple(image_shape)
    valid = (
        len(dims) in (2, 3)
        and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims)
        and all(d >= 1 or d == -1 for d in dims)
        and dims.count(-1) <= 1
    )
    if not valid:
        raise InvalidParameterError(
            "The 'image_shape' parameter of FixedConvTransformer must be (h, w) or (h, w, c) "
            f"of positive ints, one of which may be -1. Got {image_shape!r} instead."
        )
    dims = dims if len(dims) == 3 else (*dims, 1)
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims and n_features % known == 0:
        dims = tuple(n_features // known if d == -1 else d for d in dims)
    if math.prod(dims) != n_features:
        raise ValueError(
            f"The 'image_shape' parameter of FixedConvTransformer is {image_shape!r}, which "
            f"needs {math.prod(dims) if -1 not in dims else f'a multiple of {known}'} features "
            f"per row, but X has {n_features} feature(s). Pass the shape of one image."
        )
    return tuple(int(d) for d in dims)


def _user_filters(bank, n_channels):
    """Validate a user-supplied kernel array and shape it ``(n_filters, n_channels, kh, kw)``."""
    filters = check_array(bank, allow_nd=True, dtype=np.float64, input_name="bank", ensure_2d=False)
    if filters.ndim == 3:
        return filters[:, None].repeat(n_channels, axis=1) / n_channels
    if filters.ndim == 4 and filters.shape[1] == n_channels:
        return filters
    raise ValueError(
        "The 'bank' parameter of FixedConvTransformer must be a bank name or kernels shaped "
        f"(n_filters, kh, kw) or (n_filters, {n_channels}, kh, kw) for these images. "
        f"Got an array of shape {filters.shape}."
    )
