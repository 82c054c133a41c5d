"""A fitted convolutional layer as a value, and the recipe that fits one.

:class:`FittedLayer` is what :class:`~skconvfeat.FixedConvTransformer` learns
(its ``layer_``): the layer's settings, its kernels, their patch
preprocessing and the shape of the images it takes. It knows its own
geometry and memory, its weights for a dtype and array namespace, and its
forward pass; :class:`~skconvfeat.FixedConvNet`, the learned classifier and
the study read it instead of the transformer's parameters, which may have
changed since ``fit``.

:func:`fit_layer` is the recipe (sample patches, fit the preprocessing,
build the bank) with the checks that must pass before any heavy work.
"""

import contextlib
import copy
import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_array

from . import _device, _layer, _patches
from ._banks import as_pair, bank_info, is_registered, make_bank_of, unknown_bank_message

# What a pair-valued parameter (kernel_size, pool_size, ...) accepts.
PAIR_OR_INT = [Interval(numbers.Integral, 1, None, closed="left"), tuple, list]


@dataclass(frozen=True, eq=False)
class FittedLayer:
    """A fitted convolutional layer: settings, kernels, preprocessing and image shape, frozen.

    Attributes
    ----------
    spec : LayerSpec
        Padding, nonlinearity (and its ``alpha``), pooling and channel mode.
    filters : ndarray of shape (n_filters, n_channels, kh, kw)
        The kernels (float64, host memory, read-only).
    preprocessing : PatchPreprocessing or None
        The fitted patch normalisation and whitening, folded into the kernels.
    image_shape : tuple of int
        ``(h, w, c)`` of one input image.
    """

    spec: _layer.LayerSpec
    filters: np.ndarray
    preprocessing: _patches.PatchPreprocessing | None
    image_shape: tuple

    def __post_init__(self):
        filters = np.array(self.filters, dtype=np.float64)  # our own copy: the value cannot change under us
        filters.flags.writeable = False
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))

    @property
    def kernel_hw(self):
        """``(kh, kw)`` of the kernels."""
        return tuple(int(k) for k in self.filters.shape[2:])

    @property
    def map_shape(self):
        """``(h', w')`` of the feature maps before pooling."""
        return self.spec.conv_shape(self.image_shape[:2], self.kernel_hw)

    @property
    def output_shape(self):
        """``(ph, pw, n_maps)`` of the pooled maps of one image."""
        ph, pw = self.spec.pooled_shape(self.map_shape)
        return ph, pw, self.spec.n_maps(self.filters.shape[0], self.image_shape[2])

    @property
    def n_features_out(self):
        """Features per image, ``n_maps * ph * pw``."""
        return math.prod(self.output_shape)

    def bytes_per_image(self, itemsize):
        """Scratch memory one image needs inside the layer, for values of ``itemsize`` bytes."""
        return _layer.bytes_per_image(self.image_shape, self.kernel_hw, self.spec, self.filters.shape[0], itemsize)

    def macs_per_image(self):
        """Multiply-adds of the convolution on one image (the preprocessing and pooling not counted)."""
        n_filters, kernel_channels, kh, kw = self.filters.shape
        n_out = n_filters * (self.image_shape[2] if self.spec.channel_mode == "separate" else 1)
        return math.prod(self.map_shape) * n_out * kh * kw * kernel_channels

    def weights(self, dtype, xp=np):
        """What :meth:`forward` multiplies by, in ``dtype`` on the array namespace ``xp`` (NumPy or CuPy)."""
        return _layer.prepare_weights(self.filters, self.spec, np.dtype(dtype), xp, self.preprocessing)

    def forward(self, images, *, dtype="float32", xp=np, weights=None, tile_bytes=None, kernels=None):
        """Features ``(n, n_features_out)`` of one batch of images ``(n, h, w, c)``, map-major.

        ``weights`` from :meth:`weights` saves preparing them again for every
        batch; ``tile_bytes`` and compiled ``kernels`` are the CPU driver's
        (see :func:`skconvfeat._layer.folded_layer`).
        """
        weights = self.weights(dtype, xp) if weights is None else weights
        x = images.astype(dtype, copy=False)
        return _layer.layer(x, weights, self.kernel_hw, self.spec, xp, tile_bytes, kernels)

    def unpooled(self):
        """The same fitted layer without pooling: its features are the maps, ``(n_maps, h', w')`` an image."""
        return dataclasses.replace(self, spec=self.spec.unpooled())


@contextlib.contextmanager
def restore_on_failure(estimator, deep=()):
    """Within the block, a fit that fails or is interrupted leaves ``estimator`` exactly as it was.

    Fitting writes attributes as it goes (scikit-learn's ``validate_data``
    records ``n_features_in_``); on any exception, ``KeyboardInterrupt``
    included, the previous attributes come back. Attributes are replaced, not
    changed in place, except those named in ``deep`` (copied first).
    """
    previous = dict(vars(estimator))
    previous.update({name: copy.deepcopy(previous[name]) for name in deep if name in previous})
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(previous)
        raise


def pair_param(value, name, owner="FixedConvTransformer"):
    """A positive int or pair parameter as ``(a, b)``, or a scikit-learn-style error naming it."""
    pair = as_pair(value)
    if pair is None:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a positive int or a "
            f"pair of positive ints. Got {value!r} instead."
        )
    return pair


def layer_spec(params):
    """The :class:`LayerSpec` of a transformer's parameters (``get_params()``)."""
    grid = None if params["pool_grid"] is None else pair_param(params["pool_grid"], "pool_grid")
    size = pair_param(params["pool_size"], "pool_size")
    stride = size if params["pool_stride"] is None else pair_param(params["pool_stride"], "pool_stride")
    return _layer.LayerSpec(
        padding=params["padding"],
        nonlinearity=params["nonlinearity"],
        pooling=params["pooling"],
        pool_size=size,
        pool_stride=stride,
        pool_grid=grid,
        channel_mode=params["channel_mode"],
        alpha=params["alpha"],
        nearest_fraction=params["nearest_fraction"],
    )


def resolved_preprocessing(params, carried=None):
    """``(patch_norm, whiten)`` with "auto" resolved: on for data-derived banks (whiten as registered).

    ``carried``: the banks an unpickled estimator brought with it (see :func:`~skconvfeat._banks.unpack_banks`).
    """
    needs_data = _needs_data(params["bank"], carried)
    patch_norm = needs_data if params["patch_norm"] == "auto" else bool(params["patch_norm"])
    whiten = (
        (needs_data and bank_info(params["bank"], carried).whiten) if params["whiten"] == "auto" else bool(params["whiten"])
    )
    return patch_norm, whiten


def samples_patches(params, carried=None):
    """Whether fitting samples patches of the images (for whitening or a data-derived bank)."""
    bank = params["bank"]
    if isinstance(bank, str) and not is_registered(bank, carried):
        return False  # an unknown name fails in fit_layer, clearly
    return _needs_data(bank, carried) or resolved_preprocessing(params, carried)[1]


def fit_layer(images, params, carried=None):
    """Fit the layer of a transformer's parameters (``get_params()``) on images ``(n, h, w, c)``.

    Every check that needs no patches runs first: a refused setting costs
    nothing. Returns a :class:`FittedLayer`.
    """
    spec = layer_spec(params)
    bank = params["bank"]
    if isinstance(bank, str) and not is_registered(bank, carried):
        raise InvalidParameterError(unknown_bank_message(bank, "FixedConvTransformer", carried))
    patch_norm, whiten = resolved_preprocessing(params, carried)
    sampling = samples_patches(params, carried)
    # A bank given as an array ignores kernel_size: read it only where it matters.
    kernel_hw = pair_param(params["kernel_size"], "kernel_size") if patch_norm or sampling else None
    _check_channel_mode(params, spec, patch_norm, whiten, carried)
    check_cast(images, params["dtype"], kernel_hw if patch_norm else None)
    preprocessing, patches, rng = None, None, None
    if sampling:
        check_geometry(images.shape[1:3], kernel_hw, spec)
        rng = check_random_state(params["random_state"])
        sampled = _patches.sample_patches(images, kernel_hw, spec.padding, params["n_patches"], rng)
        preprocessing, patches = _patches.fit_preprocessing(
            sampled, patch_norm=patch_norm, eps_norm=params["eps_norm"], whiten=whiten, eps_zca=params["eps_zca"]
        )
        preprocessing = preprocessing if patch_norm or whiten else None
    elif patch_norm:
        preprocessing = _patches.PatchPreprocessing(True, params["eps_norm"])
    filters = _build_filters(params, images.shape[-1], spec, patches, rng, carried)
    layer = FittedLayer(spec, filters, preprocessing, images.shape[1:])
    check_geometry(images.shape[1:3], layer.kernel_hw, spec)
    _check_memory(layer, params["dtype"])
    _check_folding(layer, params)
    return layer


def _needs_data(bank, carried):
    return isinstance(bank, str) and bank_info(bank, carried).needs_data


def _check_channel_mode(params, spec, patch_norm, whiten, carried):
    folded = patch_norm or whiten or spec.nonlinearity in _layer.ENCODINGS
    if spec.channel_mode == "separate" and (folded or _needs_data(params["bank"], carried)):
        raise ValueError(
            "FixedConvTransformer applies patch preprocessing (patch_norm, whiten), "
            "data-derived banks and the encodings "
            f"{list(_layer.ENCODINGS)} with channel_mode='sum' only. Got "
            f"channel_mode='separate' with bank={params['bank']!r}, patch_norm={patch_norm}, "
            f"whiten={whiten}, nonlinearity={spec.nonlinearity!r}."
        )


def _build_filters(params, n_channels, spec, patches, rng, carried):
    bank, bank_params = params["bank"], params["bank_params"]
    bank_channels = 1 if spec.channel_mode == "separate" else n_channels
    if isinstance(bank, str):
        reserved = sorted(set(bank_params or {}) & set(_SET_BY_THE_LAYER))
        if reserved:
            raise ValueError(
                f"The 'bank_params' parameter of FixedConvTransformer may not set {reserved}: the layer sets "
                f"them ({_SET_BY_THE_LAYER[reserved[0]]}). Got bank_params={bank_params!r}."
            )
        return make_bank_of(
            carried,
            bank,
            kernel_size=pair_param(params["kernel_size"], "kernel_size"),
            n_channels=bank_channels,
            random_state=params["random_state"] if rng is None else rng,
            patches=patches if _needs_data(bank, carried) else None,
            params=bank_params or {},
        )
    if bank_params:
        raise ValueError(
            "The 'bank_params' parameter of FixedConvTransformer only applies to a "
            f"named bank, but 'bank' is an array. Got bank_params={bank_params!r}."
        )
    return _user_filters(bank, bank_channels)


# make_bank arguments the layer passes itself, and where each comes from.
_SET_BY_THE_LAYER = {"kernel_size": "set 'kernel_size' instead", "n_channels": "from the images",
                     "random_state": "set 'random_state' instead", "patches": "from the training images",
                     "name": "set 'bank' instead"}


def _user_filters(bank, n_channels):
    """Validate a user-supplied kernel array and shape it ``(n_filters, n_channels, kh, kw)``."""
    filters = check_array(bank, allow_nd=True, dtype=np.float64, input_name="bank", ensure_2d=False)
    if 0 in filters.shape:
        raise ValueError(f"The 'bank' parameter of FixedConvTransformer must hold kernels, but the array has an "
                         f"empty dimension: shape {filters.shape}.")
    if filters.ndim == 3:
        return filters[:, None].repeat(n_channels, axis=1) / n_channels
    if filters.ndim == 4 and filters.shape[1] == n_channels:
        return filters
    raise ValueError(
        "The 'bank' parameter of FixedConvTransformer must be a bank name or kernels shaped "
        f"(n_filters, kh, kw) or (n_filters, {n_channels}, kh, kw) for these images. "
        f"Got an array of shape {filters.shape}."
    )


# -- numeric guards: refuse what would come out infinite, NaN or too large -----


def check_geometry(image_hw, kernel_hw, spec):
    """Refuse kernels larger than valid-padded images, and pooling windows larger than the maps."""
    if _layer.PADDING_MODES[spec.padding] is None and any(k > i for k, i in zip(kernel_hw, image_hw)):
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


def check_cast(images, dtype, norm_kernel_hw=None):
    """Refuse input whose cast to the compute ``dtype`` would overflow to infinity.

    With patch normalisation (``norm_kernel_hw``: its patches' ``(kh, kw)``)
    the layer also squares pixel deviations (up to twice the largest
    magnitude) summed over a patch, so the bound is
    ``sqrt(dtype max / patch size) / 2``. Input whose dtype cannot exceed
    the bound (uint8 images, float32 in float32) is not scanned.
    """
    limit = float(np.finfo(dtype).max)
    if norm_kernel_hw is not None:
        limit = math.sqrt(limit / (norm_kernel_hw[0] * norm_kernel_hw[1] * images.shape[-1])) / 2
    kind = images.dtype.kind
    representable = 1 if kind == "b" else (np.iinfo if kind in "iu" else np.finfo)(images.dtype).max
    if float(representable) <= limit:
        return
    largest = max(abs(float(images.max())), abs(float(images.min())))
    if largest > limit:
        raise ValueError(
            f"X holds values up to {largest:.3g} in magnitude, beyond what "
            f"dtype={dtype!r} can compute with ({limit:.3g}"
            f"{' with patch_norm, which squares pixel deviations' if norm_kernel_hw else ''}); "
            "they would become infinite or NaN features. Rescale X or use dtype='float64'."
        )


def check_finite(features, xp, params, eps_norm=None):
    """Refuse to return infinite or NaN features (one pass over the pooled output, not the maps).

    Finite input can still overflow inside the layer: responses summed over a
    patch, or squared (``nonlinearity="square"``), beyond the dtype's range.
    Or divide by zero: a patch normalisation (``eps_norm``: its epsilon, None
    without one) whose epsilon and a flat patch's variance both round to 0.
    """
    # min and max propagate NaN and show infinities, without a mask as large as the output.
    if bool(xp.isfinite(xp.min(features))) and bool(xp.isfinite(xp.max(features))):
        return features
    if eps_norm is not None and np.asarray(eps_norm, dtype=params["dtype"]) == 0:
        cause = (f"eps_norm={eps_norm:.3g} rounds to 0 in dtype={params['dtype']!r}, so a patch of equal "
                 "pixels divides by zero). Use a larger eps_norm or dtype='float64'.")
    else:
        cause = (f"the responses overflowed dtype={params['dtype']!r}: X holds values too large for "
                 f"bank={params['bank']!r} with nonlinearity={params['nonlinearity']!r}). Rescale X or use "
                 "dtype='float64'.")
    raise ValueError(f"FixedConvTransformer computed infinite or NaN features from finite X ({cause}")


def _check_memory(layer, dtype):
    """Refuse layers so large that one image (its features, maps and the kernels) exceeds memory."""
    itemsize = np.dtype(dtype).itemsize
    needed = layer.bytes_per_image(itemsize) + layer.n_features_out * itemsize + layer.filters.nbytes
    available = _device.physical_memory_bytes()
    if needed > available:
        raise ValueError(
            f"This FixedConvTransformer would need {_device.memory_text(needed)} for a single "
            f"image ({layer.n_features_out:,} features, {layer.filters.shape[0]:,} kernels), more than this "
            f"machine's {_device.memory_text(available)} of memory. Use a smaller pool_grid, "
            "fewer kernels or smaller images."
        )


def _check_folding(layer, params):
    """Refuse a threshold or folded kernels that would not be finite in the compute dtype.

    The two-sided soft threshold forms ``-r - 2 * alpha`` and average pooling
    may sum it over every map position, so ``alpha`` is bounded by the dtype's
    largest value over ``4 * positions``; whitening and the threshold are
    folded into the kernels, which must stay finite when cast.
    """
    spec, dtype = layer.spec, params["dtype"]
    limit = float(np.finfo(dtype).max) / (4 * math.prod(layer.map_shape))
    if _layer.NONLINEARITY_TABLE[spec.nonlinearity].soft_threshold and spec.alpha > limit:
        raise ValueError(
            f"The 'alpha' parameter of FixedConvTransformer is {spec.alpha:.3g}, beyond what "
            f"dtype={dtype!r} can compute with ({limit:.3g}); the features would be "
            "infinite or NaN. Use a smaller alpha or dtype='float64'."
        )
    if not _layer.needs_folding(spec, layer.preprocessing):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        folded = layer.weights(dtype)
    if not np.isfinite(folded.matrix).all():
        raise ValueError(
            f"The kernels of bank={params['bank']!r} folded with the patch preprocessing are not finite "
            f"in dtype={dtype!r} (eps_zca={params['eps_zca']!r}, eps_norm={params['eps_norm']!r}, "
            f"alpha={spec.alpha!r}); the features would be infinite or NaN. Use larger epsilons, "
            "a smaller alpha, or dtype='float64'."
        )
