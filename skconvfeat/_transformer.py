"""FixedConvTransformer: the frozen convolutional half of a CNN as a scikit-learn transformer."""

import copy
import functools
import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from . import _backend, _input, _layer, _patches
from ._backend import cpu as _cpu
from ._banks import (
    _REGISTRY,
    _as_pair,
    _unknown_bank_message,
    bank_info,
    make_bank,
    pack_user_banks,
    unpack_user_banks,
)

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
        ``n_patches`` patches sampled from ``X`` and preprocessed (see
        ``patch_norm``, ``whiten``): ``"patches"`` picks preprocessed patches,
        ``"kmeans"`` clusters them (spherical k-means, Coates & Ng),
        ``"pca"`` takes their principal components (PCANet).

    bank_params : dict, default=None
        Keyword parameters of the named bank, e.g. ``{"sigmas": (1, 2)}`` for
        ``"gaussian"``, ``{"n_filters": 32}`` for ``"random"``, or
        ``{"n_filters": 1600, "max_iter": 10, "spherical": True}`` for
        ``"kmeans"``.

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
            "soft_threshold", "two_sided_soft_threshold", "triangle"}, default="relu"
        Applied to every response ``r = d . z`` of kernel ``d`` to the
        (preprocessed) patch ``z``. ``"two_sided_relu"`` keeps
        ``max(r, 0)`` and ``max(-r, 0)`` as separate maps (twice the features).
        ``"soft_threshold"``: ``max(r - alpha, 0)``;
        ``"two_sided_soft_threshold"``: ``max(r - alpha, 0)`` and
        ``max(-r - alpha, 0)`` as separate maps. ``"triangle"`` (Coates, Lee &
        Ng 2011): ``max(0, mean_j dist_j - dist_k)`` with ``dist_k = |z - d_k|``
        the Euclidean distance from the patch to kernel ``k`` treated as a
        centroid; meant for ``"kmeans"``/``"patches"`` banks, it computes
        the same formula for any bank, on raw patches when there is no
        preprocessing. These three need ``channel_mode="sum"``.

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

    patch_norm : bool or "auto", default="auto"
        Per-patch brightness and contrast normalisation, identical in ``fit``
        and ``transform``: each patch ``p`` of ``D = kh*kw*c`` values becomes
        ``(p - mean(p)) / sqrt(var(p) + eps_norm)``. ``"auto"``: on for
        data-derived banks, off for the others (their behaviour unchanged).

    whiten : bool or "auto", default="auto"
        ZCA whitening of the (normalised) patches, fitted in ``fit`` on the
        sampled patches: ``z = W (q - mu)``, ``W = U (S + eps I)^-1/2 U^T``
        from their covariance ``U S U^T``. ``"auto"``: on for ``"patches"``
        and ``"kmeans"`` (and user banks registered with ``whiten=True``), off
        for ``"pca"`` and the hand-crafted banks. Folded into the kernels:
        ``transform`` still does one matrix product per tile of positions.

    eps_norm : float > 0, default=10.0
        Added to each patch's variance before dividing, in squared pixel
        units of ``X``: 10 is Coates' value for pixels in 0-255; for pixels
        in [0, 1] the same relative amount is ``10 / 255**2`` (about 1.5e-4).
        It keeps flat patches from amplifying noise.

    eps_zca : float > 0, default=0.1
        Whitening regulariser relative to the patches' mean eigenvalue:
        ``eps = eps_zca * mean(S)``. With normalised 0-255 patches
        the mean eigenvalue is close to 1, so this is about Coates' absolute
        units (0.1 in the paper; on the JPEG copy of CIFAR-10, 1.0 beat 0.1
        and 0.01 was as bad as no whitening: choose it on held-out data).

    n_patches : int, default=100_000
        Patches sampled (uniformly, with replacement, from every image and
        position, reproducibly from ``random_state``) to fit the whitening
        and a data-derived bank; all positions once when ``X`` has fewer.
        ``fit`` holds ``n_patches * D * 8`` bytes of them (86 MB for 100,000
        6x6x3 patches). Unused when neither is needed.

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
    filters_ : ndarray of shape (n_filters, n_channels, kh, kw)
        The kernels applied (float64, host memory), to the preprocessed
        patches when there is preprocessing. In ``"separate"`` mode
        ``n_channels`` is 1: each kernel is applied to every channel.

    preprocessing_ : PatchPreprocessing or None
        The fitted patch preprocessing: ``patch_norm``, ``eps_norm``, and with
        whitening the sampled patches' ``mean`` ``(D,)`` and the ZCA matrix
        ``whitening`` ``(D, D)``, both laid out like a flattened kernel
        ``(c, kh, kw)``. None without preprocessing.

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
    With preprocessing or a dictionary encoding, the positions are processed
    in tiles of about 2 MiB (patch rows and maps): the product, the encoding
    and the pooling run on the tile while it is in cache, so memory beyond
    the output stays near ``threads * (batch scratch + 2 tiles)`` plus the
    folded kernels, whatever the number of filters (4,000 filters on 32x32x3
    images: under 10 MiB on 2 threads).

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
        "nonlinearity": [StrOptions(set(_layer.NONLINEARITIES + _layer.ENCODINGS))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "patch_norm": ["boolean", StrOptions({"auto"})],
        "whiten": ["boolean", StrOptions({"auto"})],
        "eps_norm": [Interval(numbers.Real, 0, None, closed="neither")],
        "eps_zca": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_patches": [Interval(numbers.Integral, 1, None, closed="left")],
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
        alpha=0.25,
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
            Training images. Only their shape is used (a Dask array is not
            computed), unless the bank is derived from data or the patches are
            whitened: then ``n_patches`` patches sampled from ``X`` fit the
            whitening and the bank. NumPy, CuPy, Dask or a torch tensor.
        y : None
            Ignored (labels are never used).

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
            images = self._validate_images(self._dask_fit_sample(X) if _input.is_dask_array(X) else X, reset=True)
            spec = self._layer_spec()
            self._check_cast(images)
            preprocessing, patches, rng = self._fit_preprocessing(images, spec)
            filters = self._build_filters(images.shape[-1], patches, rng)
            self._check_geometry(images.shape[1:3], filters.shape[2:], spec)
            self._check_memory(images.shape[1:], filters, spec)
            self._check_folding(images.shape[1:3], filters, spec, preprocessing)
        except Exception:
            vars(self).clear()
            vars(self).update(previous)
            raise
        self.filters_ = filters
        self.preprocessing_ = preprocessing
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
        self._check_cast(images)
        device = self._transform_device(images)
        if device == "cuda":
            from ._backend.cuda import run_gpu

            features = run_gpu(images, self.filters_, spec, self.dtype, self.batch_size, self.preprocessing_)
        else:
            features = _cpu.run_cpu(
                images,
                self.filters_,
                spec,
                np.dtype(self.dtype),
                self._cpu_batch_size(spec),
                preprocessing=self.preprocessing_,
            )
        return self._check_finite(features, device)

    def _check_finite(self, features, device):
        """Refuse to return infinite or NaN features (one pass over the pooled output, not the maps).

        Finite input can still overflow inside the layer: responses summed over a
        patch, or squared (``nonlinearity="square"``), beyond the dtype's range.
        """
        xp = _backend.namespace(device)
        # min and max propagate NaN and show infinities, without a mask as large as the output.
        if bool(xp.isfinite(xp.min(features))) and bool(xp.isfinite(xp.max(features))):
            return features
        raise ValueError(
            f"FixedConvTransformer computed infinite or NaN features from finite X: the responses "
            f"overflowed dtype={self.dtype!r} (X holds values too large for bank={self.bank!r} "
            f"with nonlinearity={self.nonlinearity!r}). Rescale X or use dtype='float64'."
        )

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
            alpha=self.alpha,
        )

    # -- patch preprocessing and data-derived banks --------------------------

    def _dask_fit_sample(self, X):
        """What ``fit`` computes of a Dask array: nothing but its shape, or a bounded sample when patches are needed.

        Shapes are validated through one zero image. Whitening and data-derived
        banks sample their patches from at most ``_DASK_FIT_IMAGES`` images drawn
        from ``X`` (only their chunks are computed), so memory stays bounded.
        """
        known = not isinstance(self.bank, str) or self.bank in _REGISTRY  # unknown names fail later, clearly
        if known and self._samples_patches():
            return _input.sample_images(X, _DASK_FIT_IMAGES, self.random_state)
        return _input.one_image_like(X)

    def _samples_patches(self):
        """Whether ``fit`` samples patches of X: for whitening or a data-derived bank."""
        return self._needs_data() or self._resolved_preprocessing()[1]

    def _needs_data(self):
        return isinstance(self.bank, str) and bank_info(self.bank).needs_data

    def _resolved_preprocessing(self):
        """``(patch_norm, whiten)`` with "auto" resolved: on for data-derived banks (whiten as registered)."""
        needs_data = self._needs_data()
        patch_norm = needs_data if self.patch_norm == "auto" else bool(self.patch_norm)
        whiten = (needs_data and bank_info(self.bank).whiten) if self.whiten == "auto" else bool(self.whiten)
        return patch_norm, whiten

    def _fit_preprocessing(self, images, spec):
        """Sample and preprocess patches when needed.

        Returns ``(preprocessing, patches, rng)``: the fitted
        :class:`~skconvfeat._patches.PatchPreprocessing` (None without
        preprocessing), the preprocessed patches for a data-derived bank and
        the generator that sampled them, which then seeds the bank so that
        one ``random_state`` fixes both (None, None when no patches are sampled).
        """
        if isinstance(self.bank, str) and self.bank not in _REGISTRY:
            raise InvalidParameterError(_unknown_bank_message(self.bank, "FixedConvTransformer"))
        patch_norm, whiten = self._resolved_preprocessing()
        folded = patch_norm or whiten or spec.nonlinearity in _layer.ENCODINGS
        if self.channel_mode == "separate" and (folded or self._needs_data()):
            raise ValueError(
                "FixedConvTransformer applies patch preprocessing (patch_norm, whiten), "
                "data-derived banks and the encodings "
                f"{list(_layer.ENCODINGS)} with channel_mode='sum' only. Got "
                f"channel_mode='separate' with bank={self.bank!r}, patch_norm={patch_norm}, "
                f"whiten={whiten}, nonlinearity={self.nonlinearity!r}."
            )
        if not self._samples_patches():
            if not patch_norm:
                return None, None, None
            return _patches.PatchPreprocessing(True, self.eps_norm), None, None
        kernel_hw = _pair_param(self.kernel_size, "kernel_size")
        self._check_geometry(images.shape[1:3], kernel_hw, spec)
        rng = check_random_state(self.random_state)
        sampled = _patches.sample_patches(images, kernel_hw, spec.padding, self.n_patches, rng)
        preprocessing, patches = _patches.fit_preprocessing(
            sampled,
            patch_norm=patch_norm,
            eps_norm=self.eps_norm,
            whiten=whiten,
            eps_zca=self.eps_zca,
        )
        return (preprocessing if patch_norm or whiten else None), patches, rng

    def _build_filters(self, n_channels, patches=None, rng=None):
        bank_channels = 1 if self.channel_mode == "separate" else n_channels
        if isinstance(self.bank, str):
            if self.bank not in _REGISTRY:
                raise InvalidParameterError(_unknown_bank_message(self.bank, "FixedConvTransformer"))
            return make_bank(
                self.bank,
                kernel_size=_pair_param(self.kernel_size, "kernel_size"),
                n_channels=bank_channels,
                random_state=self.random_state if rng is None else rng,
                patches=patches if self._needs_data() else None,
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

    def _check_folding(self, image_hw, filters, spec, preprocessing):
        """Refuse a threshold or folded kernels that would not be finite in the compute dtype.

        The two-sided soft threshold forms ``-r - 2 * alpha`` and average pooling
        may sum it over every map position, so ``alpha`` is bounded by the dtype's
        largest value over ``4 * positions``; whitening and the threshold are
        folded into the kernels, which must stay finite when cast.
        """
        map_h, map_w = spec.conv_shape(image_hw, filters.shape[2:])
        limit = float(np.finfo(self.dtype).max) / (4 * map_h * map_w)
        if spec.nonlinearity in ("soft_threshold", "two_sided_soft_threshold") and self.alpha > limit:
            raise ValueError(
                f"The 'alpha' parameter of FixedConvTransformer is {self.alpha:.3g}, beyond what "
                f"dtype={self.dtype!r} can compute with ({limit:.3g}); the features would be "
                "infinite or NaN. Use a smaller alpha or dtype='float64'."
            )
        if not _layer.needs_folding(spec, preprocessing):
            return
        with np.errstate(over="ignore", invalid="ignore"):
            folded = _layer.prepare_weights(filters, spec, np.dtype(self.dtype), np, preprocessing)
        if not np.isfinite(folded.matrix).all():
            raise ValueError(
                f"The kernels of bank={self.bank!r} folded with the patch preprocessing are not finite "
                f"in dtype={self.dtype!r} (eps_zca={self.eps_zca!r}, eps_norm={self.eps_norm!r}, "
                f"alpha={self.alpha!r}); the features would be infinite or NaN. Use larger epsilons, "
                "a smaller alpha, or dtype='float64'."
            )

    def _check_cast(self, images):
        """Refuse input whose cast to the compute dtype would overflow to infinity.

        With ``patch_norm`` the layer also squares pixel deviations (up to
        twice the largest magnitude) summed over a patch, so the bound is
        ``sqrt(dtype max / patch size) / 2``. Input whose dtype cannot exceed
        the bound (uint8 images, float32 in float32) is not scanned.
        """
        limit = float(np.finfo(self.dtype).max)
        patch_norm = self._resolved_preprocessing()[0]
        if patch_norm:
            kh, kw = _pair_param(self.kernel_size, "kernel_size")
            limit = math.sqrt(limit / (kh * kw * images.shape[-1])) / 2
        kind = images.dtype.kind
        representable = 1 if kind == "b" else (np.iinfo if kind in "iu" else np.finfo)(images.dtype).max
        if float(representable) <= limit:
            return
        largest = max(abs(float(images.max())), abs(float(images.min())))
        if largest > limit:
            raise ValueError(
                f"X holds values up to {largest:.3g} in magnitude, beyond what "
                f"dtype={self.dtype!r} can compute with ({limit:.3g}"
                f"{' with patch_norm, which squares pixel deviations' if patch_norm else ''}); "
                "they would become infinite or NaN features. Rescale X or use dtype='float64'."
            )

    def _check_memory(self, image_shape, filters, spec):
        """Refuse layers so large that one image (its features, maps and the kernels) exceeds memory."""
        kernel_hw = filters.shape[2:]
        itemsize = np.dtype(self.dtype).itemsize
        per_image = _layer.bytes_per_image(image_shape, kernel_hw, spec, filters.shape[0], itemsize)
        features = _layer.n_features_out(image_shape, kernel_hw, spec, filters.shape[0])
        needed = per_image + features * itemsize + filters.nbytes
        available = _backend.physical_memory_bytes()
        if needed > available:
            raise ValueError(
                f"This FixedConvTransformer would need {needed / 2**30:,.1f} GiB for a single "
                f"image ({features:,} features, {filters.shape[0]:,} kernels), more than this "
                f"machine's {available / 2**30:,.1f} GiB of memory. Use a smaller pool_grid, "
                "fewer kernels or smaller images."
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
