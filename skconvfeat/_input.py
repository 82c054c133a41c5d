"""Input containers and layouts: torch tensors, channels-first arrays and lazy Dask arrays.

:class:`~skconvfeat.FixedConvTransformer` works on images ``(n, h, w, c)``;
this module turns what users hand it into that, without ever computing a
Dask array whole:

- :func:`convert` converts a torch tensor (refuses a Dask DataFrame) at the top of ``fit``/``transform``;
- :func:`shape_images` checks an array and shapes it ``(n, h, w, c)``: flat
  rows unflattened by ``image_shape``, the layout read by ``data_format``;
- :func:`to_channels_last` reads ``data_format`` and refuses a layout that
  looks channels-first when none was given;
- :func:`lazy_transform` maps the layer over a Dask array's blocks, with the
  output shape, chunks, dtype and array type (NumPy or CuPy) declared up front;
- :func:`sample_images` draws a bounded random sample of images from any
  array; ``FixedConvTransformer.fit`` samples a Dask array's images with it
  when whitening or a data-derived bank needs patches, so the array is never
  materialised.
"""

import math
import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_array, validate_data

from . import _device

DATA_FORMATS = ("channels_last", "channels_first")


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (without importing Dask)."""
    return type(X).__module__.startswith("dask.array") and hasattr(X, "chunks")


def is_dask_frame(X):
    return type(X).__module__.startswith("dask.dataframe") or type(X).__module__.startswith("dask_expr")


def convert(X, owner):
    """``X`` as an array ``owner`` reads: a torch tensor converted (:func:`from_torch`), a Dask DataFrame refused.

    Called first in ``fit`` and ``transform``, before anything could compute a lazy frame or hand a tensor to threads.
    """
    if is_dask_frame(X):
        raise TypeError(f"{owner} reads Dask arrays, not Dask DataFrames: pass X.to_dask_array(lengths=True).")
    return from_torch(X, owner) if type(X).__module__.startswith("torch") else X


def from_torch(X, owner):
    """A torch tensor as a NumPy array (CPU) or CuPy array (CUDA)."""
    tensor = X.detach()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    if tensor.device.type == "cuda":
        if _device.gpu_available():
            return _device.namespace("cuda").from_dlpack(tensor)
    raise TypeError(
        f"{owner} got a torch tensor on device {str(tensor.device)!r}, which it cannot read here. "
        "Pass X.cpu() (or a NumPy/CuPy array)."
    )


def shape_images(X, estimator, reset):
    """``X`` checked and shaped as images ``(n, h, w, c)`` (a view when possible) for ``estimator``.

    ``estimator`` is a :class:`~skconvfeat.FixedConvTransformer`: its
    ``image_shape`` and ``data_format`` say how to read ``X``. With ``reset``
    (its ``fit``) the counts and column names are recorded on it, as
    scikit-learn's ``validate_data`` does; otherwise the images must have the
    shape of its fitted ``layer_``.
    """
    owner = type(estimator).__name__
    if _device.is_device_array(X):
        images = _check_device_images(to_channels_last(X, estimator.data_format, owner))
        _check_dims(images, estimator, reset)
        return images
    checked = check_array(X, allow_nd=True, dtype="numeric", ensure_all_finite=True, input_name="X", estimator=estimator)
    if np.iscomplexobj(checked):
        raise ValueError("Complex data not supported: X must hold real numbers.")
    if checked.ndim == 2:
        # Feature names and counts are scikit-learn's business; a DataFrame keeps its names.
        validate_data(estimator, X if hasattr(X, "columns") else checked, reset=reset, skip_check_array=True)
        return _unflatten(checked, estimator, reset)
    if checked.ndim not in (3, 4):
        raise ValueError(
            "X must be flat rows (n_samples, h*w*c), grey images (n_samples, h, w) or "
            f"colour images (n_samples, h, w, c). Got an array of shape {checked.shape}."
        )
    images = checked[..., np.newaxis] if checked.ndim == 3 else checked
    images = to_channels_last(images, estimator.data_format, owner)
    _check_dims(images, estimator, reset)
    return images


def _check_device_images(X):
    """Checks for CuPy input, done on the device so the data never leaves it."""
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers. Got a CuPy array of dtype {X.dtype}.")
    if X.ndim not in (3, 4) or X.shape[0] == 0:
        raise ValueError(
            "CuPy input must be images (n_samples, h, w) or (n_samples, h, w, c) with at "
            f"least one sample. Got shape {X.shape}."
        )
    if X.dtype.kind == "f" and not bool(X.size == 0 or _device.namespace("cuda").isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")
    return X[..., None] if X.ndim == 3 else X


def _check_dims(images, estimator, reset):
    shape = tuple(int(s) for s in images.shape[1:])
    image_shape = _image_shape_hwc(estimator)
    if image_shape is not None and resolve_image_shape(image_shape, math.prod(shape))[:2] != shape[:2]:
        raise ValueError(
            f"The 'image_shape' parameter of FixedConvTransformer is {estimator.image_shape!r} "
            f"but X holds images of shape {shape}. Leave image_shape=None for image arrays."
        )
    if reset:
        estimator.n_features_in_ = math.prod(shape)
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif shape != estimator.layer_.image_shape:
        raise ValueError(
            f"X holds images of shape {shape}, but FixedConvTransformer was fitted on "
            f"images of shape {estimator.layer_.image_shape}."
        )


def _unflatten(flat, estimator, reset):
    n_features = flat.shape[1]
    h, w, c = resolve_image_shape(_image_shape_hwc(estimator), n_features) if reset else estimator.layer_.image_shape
    if estimator.data_format == "channels_first":
        return flat.reshape(flat.shape[0], c, h, w).transpose(0, 2, 3, 1)
    return flat.reshape(flat.shape[0], h, w, c)


def _image_shape_hwc(estimator):
    """``image_shape`` in ``(h, w[, c])`` order: channels-first flat rows give it as ``(c, h, w)``."""
    shape = estimator.image_shape
    if estimator.data_format == "channels_first" and shape is not None and len(shape) == 3:
        c, h, w = shape
        return (h, w, c)
    return shape


def resolve_image_shape(image_shape, n_features):
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


def to_channels_last(images, data_format, owner):
    """4-D ``images`` in ``data_format`` as ``(n, h, w, c)``; refuse a likely channels-first batch.

    ``data_format=None`` reads channels last but raises when there are more
    channels than rows or columns -- almost surely a PyTorch-style
    ``(n, c, h, w)`` batch that would otherwise give wrong features silently.
    """
    if images.ndim != 4:
        return images
    if data_format == "channels_first":
        return images.transpose(0, 2, 3, 1)
    _, h, w, c = images.shape
    if data_format is None and c > min(h, w):
        raise ValueError(
            f"{owner} got images of shape {tuple(images.shape)}: read channels last, that is {c} channels "
            f"but only {h}x{w} pixels, which looks like a channels-first (PyTorch) batch. Pass "
            "data_format='channels_first' for (n, c, h, w) input, or data_format='channels_last' "
            "if the layout is right."
        )
    return images


def lazy_transform(X, block_transform, n_features_out, dtype):
    """``block_transform`` mapped lazily over the blocks of the Dask array ``X`` (2-D to 4-D).

    ``X`` is rechunked along the sample axis only, so each block holds whole
    images; the result has one block per input block, ``n_features_out``
    columns, ``dtype``, and the input's array type (CuPy blocks give CuPy).
    """
    from dask.array.utils import meta_from_array

    whole = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    return whole.map_blocks(
        block_transform,
        dtype=dtype,
        chunks=(whole.chunks[0], (n_features_out,)),
        drop_axis=list(range(2, X.ndim)),
        meta=meta_from_array(whole, ndim=2, dtype=dtype),
    )


def one_image_like(X):
    """A one-sample NumPy array of ``X``'s per-sample shape and dtype: validates a lazy array's layout for free."""
    return np.zeros((1, *X.shape[1:]), dtype=X.dtype)


def sample_images(images, n_samples, random_state=None):
    """At most ``n_samples`` images drawn without replacement, in index order, as an in-memory array.

    For a Dask array only the chunks holding the drawn images are computed,
    so memory is bounded by ``n_samples`` images plus one chunk per draw.
    """
    n = images.shape[0]
    if isinstance(n, float) and math.isnan(n):  # a Dask array filtered by a boolean mask, for one
        raise ValueError(
            f"The images are a Dask array of unknown chunk sizes (shape {images.shape}), so fit cannot draw "
            "its sample of images from them. Call X.compute_chunk_sizes() before fit."
        )
    rng = check_random_state(random_state)
    picked = np.sort(rng.choice(n, size=min(n_samples, n), replace=False))
    sample = images[picked]
    return sample.compute() if is_dask_array(sample) else sample
