"""A slow, obviously-correct reference for the layer: scipy.signal per image and filter.

Written independently of skconvfeat._layer (loops and scipy.signal.correlate2d),
so agreement is evidence that the vectorised layer computes the documented function.
"""

import math

import numpy as np
from scipy.signal import correlate2d


def reference_layer(images, filters, *, padding, nonlinearity, pooling, pool_size, pool_stride, pool_grid, channel_mode):
    """images (n, h, w, c), filters (F, C, kh, kw) -> features (n, n_features) in map-major order."""
    out = []
    for img in images.astype(np.float64):
        maps = _maps(img, filters, padding, channel_mode)
        maps = _activate(maps, nonlinearity)
        pooled = np.stack([_pool(m, pooling, pool_size, pool_stride, pool_grid) for m in maps])
        out.append(pooled.ravel())
    return np.array(out)


def _pad(channel, kh, kw, padding):
    if padding == "valid":
        return channel
    pads = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
    return np.pad(channel, pads, mode="constant" if padding == "same" else "reflect")


def _maps(img, filters, padding, channel_mode):
    n_filters, _, kh, kw = filters.shape
    channels = [_pad(img[..., c], kh, kw, padding) for c in range(img.shape[-1])]
    if channel_mode == "separate":
        return [correlate2d(ch, filters[f, 0], mode="valid") for ch in channels for f in range(n_filters)]
    return [
        sum(correlate2d(ch, filters[f, c], mode="valid") for c, ch in enumerate(channels))
        for f in range(n_filters)
    ]


def _activate(maps, nonlinearity):
    maps = np.array(maps)
    return {
        "none": lambda m: m,
        "relu": lambda m: np.maximum(m, 0),
        "abs": np.abs,
        "square": np.square,
        "two_sided_relu": lambda m: np.concatenate([np.maximum(m, 0), np.maximum(-m, 0)]),
    }[nonlinearity](maps)


def _pool(m, pooling, size, stride, grid):
    reduce = np.mean if pooling == "avg" else np.max
    if grid is not None:
        rows = [(int(np.floor(i * m.shape[0] / grid[0])), int(np.ceil((i + 1) * m.shape[0] / grid[0]))) for i in range(grid[0])]
        cols = [(int(np.floor(j * m.shape[1] / grid[1])), int(np.ceil((j + 1) * m.shape[1] / grid[1]))) for j in range(grid[1])]
        return np.array([[reduce(m[a:b, c:d]) for c, d in cols] for a, b in rows])
    (ph, pw), (sh, sw) = size, stride
    out_h, out_w = (m.shape[0] - ph) // sh + 1, (m.shape[1] - pw) // sw + 1
    return np.array([[reduce(m[i * sh : i * sh + ph, j * sw : j * sw + pw]) for j in range(out_w)] for i in range(out_h)])


# -- patch preprocessing and dictionary encodings, from their definitions -----


def reference_whitening(patches, *, patch_norm, eps_norm, eps_zca):
    """(mean, W) of ZCA whitening fitted on ``patches`` (n, c, kh, kw), via scipy's matrix square root."""
    from scipy.linalg import inv, sqrtm

    rows = patches.reshape(len(patches), -1)
    if patch_norm:
        rows = np.array([(p - p.mean()) / np.sqrt(p.var() + eps_norm) for p in rows])
    mean = rows.mean(axis=0)
    cov = np.cov(rows, rowvar=False, bias=True)
    eps = eps_zca * np.trace(cov) / cov.shape[0]
    return mean, np.real(inv(sqrtm(cov + eps * np.eye(cov.shape[0]))))


def reference_patch_layer(
    images, filters, *, patch_norm, eps_norm, mean, whitening, nonlinearity, alpha, padding, pooling, pool_size, pool_stride, pool_grid,
    nearest_fraction=0.4,
):
    """Loop over positions: extract the patch, normalise, whiten, encode; then pool each map.

    ``filters`` (K, C, kh, kw) are vectors in the space of preprocessed patches
    laid out (C, kh, kw); ``mean``/``whitening`` None means no whitening.
    """
    n_filters, _, kh, kw = filters.shape
    kernels = filters.reshape(n_filters, -1)
    out = []
    for img in images.astype(np.float64):
        padded = np.stack([_pad(img[..., c], kh, kw, padding) for c in range(img.shape[-1])])  # (C, H, W)
        height, width = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
        codes = np.zeros((height, width, n_filters * (2 if nonlinearity.startswith("two_sided") else 1)))
        for i in range(height):
            for j in range(width):
                z = padded[:, i : i + kh, j : j + kw].ravel()
                if patch_norm:
                    z = (z - z.mean()) / np.sqrt(z.var() + eps_norm)
                if whitening is not None:
                    z = whitening @ (z - mean)
                codes[i, j] = _encode_patch(z, kernels, nonlinearity, alpha, nearest_fraction)
        out.append(np.stack([_pool(codes[..., m], pooling, pool_size, pool_stride, pool_grid) for m in range(codes.shape[-1])]).ravel())
    return np.array(out)


def _encode_patch(z, kernels, nonlinearity, alpha, nearest_fraction):
    if nonlinearity.endswith("nearest"):
        # Thiry et al.: 1 for the n kernels nearest to z (and, two-sided, to -z), by sorting distances.
        n = max(1, int(nearest_fraction * len(kernels)))
        sides = [z, -z] if nonlinearity.startswith("two_sided") else [z]
        return np.concatenate([_nearest_marks(side, kernels, n) for side in sides])
    if nonlinearity == "triangle":
        distances = np.array([np.sqrt(np.sum((z - k) ** 2)) for k in kernels])
        return np.maximum(0, distances.mean() - distances)
    r = kernels @ z
    if nonlinearity == "soft_threshold":
        return np.maximum(0, r - alpha)
    if nonlinearity == "two_sided_soft_threshold":
        return np.concatenate([np.maximum(0, r - alpha), np.maximum(0, -r - alpha)])
    return _activate(r[:, None], nonlinearity).ravel()


def _nearest_marks(z, kernels, n):
    distances = np.array([np.sqrt(np.sum((z - k) ** 2)) for k in kernels])
    marks = np.zeros(len(kernels))
    marks[np.argsort(distances)[:n]] = 1.0
    return marks


def reference_shift(image, down, right):
    """``image`` (h, w[, c]) moved ``down`` and ``right`` pixels, pixel by pixel: each output pixel reads the
    input pixel it came from, clamped to the border (the edge repeated into the gap)."""
    h, w = image.shape[:2]
    out = np.empty_like(image)
    for i in range(h):
        for j in range(w):
            out[i, j] = image[min(max(i - down, 0), h - 1), min(max(j - right, 0), w - 1)]
    return out


def reference_rotate(image, degrees):
    """``image`` (h, w[, c]) turned ``degrees`` anticlockwise (as displayed, row 0 on top) about its centre,
    pixel by pixel: each output pixel reads the point it came from by bilinear interpolation between its four
    neighbours, the coordinates clamped to the border (the edge repeated)."""
    h, w = image.shape[:2]
    ci, cj = (h - 1) / 2, (w - 1) / 2
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    out = np.empty(image.shape, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            x, y = j - cj, ci - i  # x to the right, y up
            # Undo the turn: the source of (x, y) is (x, y) turned by -degrees.
            sx, sy = x * cos + y * sin, -x * sin + y * cos
            si, sj = min(max(ci - sy, 0.0), h - 1.0), min(max(sx + cj, 0.0), w - 1.0)
            i0, j0 = min(int(math.floor(si)), h - 2), min(int(math.floor(sj)), w - 2)
            fi, fj = si - i0, sj - j0
            out[i, j] = ((1 - fi) * (1 - fj) * image[i0, j0] + (1 - fi) * fj * image[i0, j0 + 1]
                         + fi * (1 - fj) * image[i0 + 1, j0] + fi * fj * image[i0 + 1, j0 + 1])
    return out


def reference_low_rank_logits(features, mean, scale, reduce, classify, intercept):
    """The low-rank head's logits by loops over samples, cells, ranks and maps, written from its
    description (standardise each map, project each cell's maps, read the projections), not its code."""
    n_maps, rank = len(mean), reduce.shape[0]
    cells = features.shape[1] // n_maps
    logits = np.zeros((features.shape[0], classify.shape[0]))
    for i, row in enumerate(features.astype(np.float64)):
        maps = row.reshape(n_maps, cells)
        projected = np.zeros((rank, cells))
        for c in range(cells):
            for r in range(rank):
                projected[r, c] = sum(reduce[r, m] * (maps[m, c] - mean[m]) / scale[m] for m in range(n_maps))
        for k in range(classify.shape[0]):
            logits[i, k] = intercept[k] + sum(classify[k, r * cells + c] * projected[r, c]
                                              for r in range(rank) for c in range(cells))
    return logits
