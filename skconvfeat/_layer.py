"""The fixed-kernel layer: convolution, nonlinearity and pooling, written once.

Every function takes the array namespace ``xp`` (NumPy or CuPy, chosen in
:mod:`skconvfeat._backend`) and works on one batch of images laid out
``(batch, height, width, channels)``. Feature maps stay channel-last so that
the convolution is a single matrix product over im2col patches and the
pooling adds whole contiguous rows of filter responses.
"""

import functools
from dataclasses import dataclass

NONLINEARITIES = ("none", "relu", "abs", "square", "two_sided_relu")
POOLINGS = ("avg", "max")
PADDINGS = ("valid", "same", "reflect")
CHANNEL_MODES = ("sum", "separate")


@dataclass(frozen=True)
class LayerSpec:
    """What the layer computes, checked once by the transformer's ``fit``."""

    padding: str
    nonlinearity: str
    pooling: str
    pool_size: tuple  # (ph, pw) window in pixels, or None with pool_grid
    pool_stride: tuple  # (sh, sw) in pixels
    pool_grid: tuple  # (gh, gw) regions, or None for window pooling
    channel_mode: str

    def conv_shape(self, image_hw, kernel_hw):
        """Height and width of the maps before pooling."""
        if self.padding == "valid":
            return tuple(i - k + 1 for i, k in zip(image_hw, kernel_hw))
        return tuple(image_hw)

    def pooled_shape(self, map_hw):
        """Height and width of the maps after pooling."""
        if self.pool_grid is not None:
            return tuple(self.pool_grid)
        return tuple(
            (m - p) // s + 1 for m, p, s in zip(map_hw, self.pool_size, self.pool_stride)
        )

    def n_maps(self, n_filters, n_channels):
        """Feature maps per image: filters, times channels when separate, times 2 when two-sided."""
        n = n_filters * (n_channels if self.channel_mode == "separate" else 1)
        return 2 * n if self.nonlinearity == "two_sided_relu" else n


def weight_matrix(filters, channel_mode, xp):
    """Filters ``(F, C, kh, kw)`` as the right-hand side of the im2col product.

    ``sum``: ``(C*kh*kw, F)``, one column per filter spanning all channels.
    ``separate``: ``(kh*kw, F)``, applied to every channel on its own.
    """
    n_filters = filters.shape[0]
    if channel_mode == "separate":
        return xp.ascontiguousarray(filters[:, 0].reshape(n_filters, -1).T)
    # Patches are laid out (kh, kw, C) because images are channel-last.
    return xp.ascontiguousarray(filters.transpose(2, 3, 1, 0).reshape(-1, n_filters))


def _pad(x, kernel_hw, padding, xp):
    if padding == "valid":
        return x
    kh, kw = kernel_hw
    # Extra pixel on the bottom/right for even kernels, as PyTorch's padding="same".
    pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
    mode = "constant" if padding == "same" else "reflect"
    return xp.pad(x, pads, mode=mode)


def convolve(x, weights, kernel_hw, spec, xp):
    """Cross-correlate a batch ``(B, H, W, C)`` with the bank: maps ``(B, H', W', M)``."""
    x = _pad(x, kernel_hw, spec.padding, xp)
    kh, kw = kernel_hw
    batch, _, _, n_channels = x.shape
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    if n_channels == 1:
        # Grey images: windows have rows of only kw values, which a flat-index
        # gather copies twice as fast as the strided window view.
        index = _window_index(x.shape[1:3], kernel_hw, xp)
        patches = xp.take(x.reshape(batch, -1), index, axis=1)
        return (patches.reshape(-1, kh * kw) @ weights).reshape(batch, out_h, out_w, -1)
    # (B, H', W', C, kh, kw) view, no copy yet.
    windows = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    if spec.channel_mode == "separate":
        # One product per channel, responses ordered (channel, filter).
        patches = windows.reshape(batch * out_h * out_w, n_channels, kh * kw)
        maps = xp.matmul(patches.transpose(1, 0, 2), weights)  # (C, BHW, F)
        maps = maps.transpose(1, 0, 2)
    else:
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(batch * out_h * out_w, -1)
        maps = patches @ weights
    return maps.reshape(batch, out_h, out_w, -1)


@functools.lru_cache(maxsize=16)
def _window_index(image_hw, kernel_hw, xp):
    """Flat pixel positions of every kernel window of an ``image_hw`` grey image, window-major."""
    positions = xp.arange(image_hw[0] * image_hw[1]).reshape(image_hw)
    windows = xp.lib.stride_tricks.sliding_window_view(positions, kernel_hw)
    return xp.ascontiguousarray(windows.reshape(-1))


def activate(maps, nonlinearity, xp):
    """Apply the nonlinearity in place where possible; two-sided ReLU doubles the maps."""
    if nonlinearity == "relu":
        return xp.maximum(maps, 0, out=maps)
    if nonlinearity == "abs":
        return xp.abs(maps, out=maps)
    if nonlinearity == "square":
        return xp.multiply(maps, maps, out=maps)
    if nonlinearity == "two_sided_relu":
        return xp.concatenate([xp.maximum(maps, 0), xp.maximum(-maps, 0)], axis=-1)
    return maps


def pool(maps, spec, xp):
    """Pool ``(B, H, W, M)`` maps to ``(B, ph, pw, M)``."""
    if spec.pool_grid is not None:
        return _grid_pool(maps, spec.pool_grid, spec.pooling, xp)
    return _window_pool(maps, spec.pool_size, spec.pool_stride, spec.pooling, xp)


def _window_pool(maps, size, stride, pooling, xp):
    """Sliding-window pooling as ``ph*pw`` strided adds (or maxes) of output-sized views.

    Looping over window offsets rather than reducing a windowed view keeps
    every operation a contiguous sweep over rows of filter responses.
    """
    (ph, pw), (sh, sw) = size, stride
    out_h = (maps.shape[1] - ph) // sh + 1
    out_w = (maps.shape[2] - pw) // sw + 1
    if (ph, pw) == (1, 1) and (sh, sw) == (1, 1):
        return maps
    combine = xp.add if pooling == "avg" else xp.maximum
    out = None
    for dy in range(ph):
        for dx in range(pw):
            view = maps[:, dy : dy + sh * (out_h - 1) + 1 : sh, dx : dx + sw * (out_w - 1) + 1 : sw]
            out = view.copy() if out is None else combine(out, view, out=out)
    if pooling == "avg":
        out *= 1.0 / (ph * pw)
    return out


def grid_bounds(length, n_regions):
    """Region ``i`` spans ``[floor(i*L/n), ceil((i+1)*L/n))``, as torch's adaptive pooling.

    Regions never come out empty, even when there are more regions than pixels.
    """
    return [((i * length) // n_regions, -((-(i + 1) * length) // n_regions)) for i in range(n_regions)]


def _grid_pool(maps, grid, pooling, xp):
    """Pool over a ``gh x gw`` grid of near-equal regions (adaptive pooling)."""
    rows = grid_bounds(maps.shape[1], grid[0])
    cols = grid_bounds(maps.shape[2], grid[1])
    reduce = xp.mean if pooling == "avg" else xp.max
    strips = xp.stack([reduce(maps[:, a:b], axis=1) for a, b in rows], axis=1)
    return xp.stack([reduce(strips[:, :, a:b], axis=2) for a, b in cols], axis=2)


def layer(x, weights, kernel_hw, spec, xp):
    """Convolve, activate and pool one batch; features ``(B, M*ph*pw)`` in map-major order."""
    maps = pool(activate(convolve(x, weights, kernel_hw, spec, xp), spec.nonlinearity, xp), spec, xp)
    # Map-major (M, ph, pw) order matches torch's flatten of (B, M, ph, pw).
    return maps.transpose(0, 3, 1, 2).reshape(maps.shape[0], -1)


# -- geometry: shared by the CPU and GPU drivers and the estimators ---------


def n_features_out(image_shape, kernel_hw, spec, n_filters):
    """Features per image: maps times pooled height times pooled width."""
    h, w, c = image_shape
    ph, pw = spec.pooled_shape(spec.conv_shape((h, w), kernel_hw))
    return spec.n_maps(n_filters, c) * ph * pw


def bytes_per_image(image_shape, kernel_hw, spec, n_filters, itemsize):
    """Scratch memory one image needs inside the layer (input, patches and maps)."""
    h, w, c = image_shape
    map_h, map_w = spec.conv_shape((h, w), kernel_hw)
    patch = kernel_hw[0] * kernel_hw[1] * c
    maps = spec.n_maps(n_filters, c)
    padded = (h + kernel_hw[0]) * (w + kernel_hw[1]) * c
    return itemsize * (padded + map_h * map_w * (patch + maps))


def auto_batch_size(per_image_bytes, budget_bytes):
    """Images per batch so that one batch's scratch stays within ``budget_bytes`` (at least 1)."""
    return int(max(1, budget_bytes // per_image_bytes))
