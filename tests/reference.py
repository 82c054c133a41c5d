"""A slow, obviously-correct reference for the layer: scipy.signal per image and filter.

Written independently of skconvfeat._layer (loops and scipy.signal.correlate2d),
so agreement is evidence that the vectorised layer computes the documented function.
"""

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
