"""Input containers and layouts: torch tensors, channels-first arrays and lazy Dask arrays.

:class:`~skconvfeat.FixedConvTransformer` works on images ``(n, h, w, c)``;
this module turns what users hand it into that, without ever computing a
Dask array whole:

- :func:`convert` converts a torch tensor (refuses a Dask DataFrame) at the top of ``fit``/``transform``;
- :func:`to_channels_last` reads ``data_format`` and refuses a layout that
  looks channels-first when none was given;
- :func:`lazy_transform` maps the layer over a Dask array's blocks, with the
  output shape, chunks, dtype and array type (NumPy or CuPy) declared up front;
- :func:`sample_images` draws a bounded random sample of images from any
  array; ``FixedConvTransformer.fit`` samples a Dask array's images with it
  when whitening or a data-derived bank needs patches, so the array is never
  materialised.
"""

import numpy as np
from sklearn.utils import check_random_state

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
        from . import _backend

        if _backend.gpu_available():
            return _backend.namespace("cuda").from_dlpack(tensor)
    raise TypeError(
        f"{owner} got a torch tensor on device {str(tensor.device)!r}, which it cannot read here. "
        "Pass X.cpu() (or a NumPy/CuPy array)."
    )


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
    rng = check_random_state(random_state)
    picked = np.sort(rng.choice(n, size=min(n_samples, n), replace=False))
    sample = images[picked]
    return sample.compute() if is_dask_array(sample) else sample
