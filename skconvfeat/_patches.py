"""Patch sampling and preprocessing for data-derived banks and whitening, fitted once in ``fit``.

A patch is the ``kh x kw x c`` window under a kernel at one position; as a
vector it is laid out like a kernel, ``(c, kh, kw)`` flattened. Its
preprocessing, identical in ``fit`` and ``transform``:

1. per-patch brightness and contrast normalisation (``patch_norm``):
   ``q = (p - mean(p)) / sqrt(var(p) + eps_norm)``, with the mean and the
   (population) variance over the patch's ``D = c*kh*kw`` values and
   ``eps_norm`` in squared pixel units;
2. ZCA whitening (``whiten``): ``z = W (q - mu)`` with ``mu`` the mean of the
   sampled (normalised) patches and ``W = U (S + eps I)^-1/2 U^T`` from their
   covariance ``U S U^T``; ``eps = eps_zca * mean(S)``.

``fit`` samples patches here and fits step 2 on them; ``transform`` never
materialises ``z``: the layer (:mod:`skconvfeat._layer`) normalises the
im2col rows and folds ``W`` and ``mu`` into the kernels.
"""

from dataclasses import dataclass

import numpy as np

from . import _device
from ._layer import padded_index


@dataclass(frozen=True, eq=False)
class PatchPreprocessing:
    """Fitted preprocessing of the patches; ``mean``/``whitening`` are None without whitening."""

    patch_norm: bool
    eps_norm: float  # squared pixel units
    mean: np.ndarray = None  # (D,) mean of the sampled normalised patches, kernel layout
    whitening: np.ndarray = None  # (D, D) symmetric ZCA matrix W, kernel layout


def sample_patches(images, kernel_hw, padding, n_patches, rng):
    """``n_patches`` windows of ``images`` ``(n, h, w, c)`` as float64 ``(n_patches, c, kh, kw)``.

    Positions are drawn uniformly with replacement from every image and
    every position the layer computes (padding included, so fit sees the
    same patches transform does); when ``n_patches`` is at least the number
    of positions, every position is taken once instead. Memory: the result,
    ``n_patches * D * 8`` bytes; the images are never copied whole.
    """
    n, h, w, _ = images.shape
    rows = padded_index(h, kernel_hw[0], padding)
    cols = padded_index(w, kernel_hw[1], padding)
    out_h, out_w = rows.size - kernel_hw[0] + 1, cols.size - kernel_hw[1] + 1
    total = n * out_h * out_w
    _check_patch_memory(min(n_patches, total), kernel_hw[0] * kernel_hw[1] * images.shape[3])
    flat = np.arange(total) if n_patches >= total else rng.randint(0, total, size=n_patches)
    image, rest = np.divmod(flat, out_h * out_w)
    top, left = np.divmod(rest, out_w)
    row_index = rows[top[:, None] + np.arange(kernel_hw[0])]  # (n_patches, kh)
    col_index = cols[left[:, None] + np.arange(kernel_hw[1])]  # (n_patches, kw)
    index = (image[:, None, None], np.maximum(row_index, 0)[:, :, None], np.maximum(col_index, 0)[:, None, :])
    if _device.is_device_array(images):  # gather on the device, bring only the patches home
        xp = _device.namespace("cuda")
        index = tuple(xp.asarray(i) for i in index)
    patches = _device.to_numpy(images[index]).astype(np.float64)  # (n_patches, kh, kw, c)
    outside = (row_index < 0)[:, :, None] | (col_index < 0)[:, None, :]
    patches[outside] = 0.0  # zero padding
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2))


def _check_patch_memory(count, dim):
    """Refuse, before drawing them, sampled patches that would not fit in memory.

    ``fit`` holds the float64 patches and a preprocessed copy of them at once
    (normalised, then whitened), so twice ``count * dim * 8`` bytes.
    """
    needed = 2.0 * count * dim * 8
    available = _device.physical_memory_bytes()
    if needed > available:
        raise ValueError(
            f"FixedConvTransformer would sample {count:,} patches of {dim} values, {_device.memory_text(needed)} "
            f"with their preprocessed copy, more than this machine's {_device.memory_text(available)} of memory. "
            "Lower n_patches."
        )


def normalise(rows, eps_norm):
    """Per-row brightness and contrast normalisation of a patch matrix ``(n, D)``."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    return centred / np.sqrt(np.mean(centred**2, axis=1, keepdims=True) + eps_norm)


def fit_preprocessing(patches, *, patch_norm, eps_norm, whiten, eps_zca):
    """Fit the preprocessing on sampled ``patches`` ``(n, c, kh, kw)``; return it and the preprocessed patches.

    Raises a ValueError when whitening is asked of patches without variance
    (constant images, or every sampled patch flat after normalisation).
    """
    rows = patches.reshape(patches.shape[0], -1)
    if patch_norm:
        rows = normalise(rows, eps_norm)
    if not whiten:
        return PatchPreprocessing(patch_norm, eps_norm), rows.reshape(patches.shape)
    mean = rows.mean(axis=0)
    centred = rows - mean
    variances, vectors = np.linalg.eigh(centred.T @ centred / rows.shape[0])
    variances = np.maximum(variances, 0.0)  # eigh's rounding can dip below zero
    scale = variances.mean()
    if not scale > np.finfo(float).eps * max(float(np.mean(rows**2)), np.finfo(float).tiny):
        raise ValueError(
            f"Whitening needs patches that vary, but the {rows.shape[0]} sampled patches are all "
            "the same (after per-patch normalisation, if on). Are the images constant? Use "
            "whiten=False, or fit on varied images."
        )
    whitening = (vectors / np.sqrt(variances + eps_zca * scale)) @ vectors.T
    return PatchPreprocessing(patch_norm, eps_norm, mean, whitening), (centred @ whitening).reshape(patches.shape)
