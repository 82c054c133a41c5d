"""The fixed-kernel layer: convolution, nonlinearity and pooling, written once.

Every function takes the array namespace ``xp`` (NumPy or CuPy, chosen in
:mod:`skconvfeat._backend`) and works on one batch of images laid out
``(batch, height, width, channels)``. Feature maps stay channel-last so that
the convolution is a single matrix product over im2col patches and the
pooling adds whole contiguous rows of filter responses.
"""

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class Nonlinearity:
    """How one nonlinearity turns a response ``r = d . z`` into feature maps.

    ``rule`` is the elementwise rule every path implements once (the NumPy
    :func:`encode`, the numba passes of ``_backend/cpu_fused.py``, the torch
    network of ``learned/_network.py``): ``"none"``, ``"relu"`` (``max(g, 0)``),
    ``"abs"``, ``"square"``, ``"triangle"`` (``max(0, mean_j dist_j - dist_k)``
    on distances to the kernels) or ``"nearest"`` (1 where ``d_k`` is among the
    ``n`` kernels nearest to the patch, else 0: Thiry et al. 2021's encoding, NumPy
    and CuPy paths only). ``g = r - alpha`` for a soft threshold, else ``r``.
    """

    rule: str
    two_sided: bool = False  # a second set of maps, max(-r - alpha, 0)
    soft_threshold: bool = False  # subtract alpha from the response
    encoding: bool = False  # a dictionary encoding (Coates & Ng): the folded path, FixedConvTransformer only


# Every nonlinearity, once: adding one is an entry here (and a test in tests/test_layer_rules.py).
NONLINEARITY_TABLE = {
    "none": Nonlinearity("none"),
    "relu": Nonlinearity("relu"),
    "abs": Nonlinearity("abs"),
    "square": Nonlinearity("square"),
    "two_sided_relu": Nonlinearity("relu", two_sided=True),
    "soft_threshold": Nonlinearity("relu", soft_threshold=True, encoding=True),
    "two_sided_soft_threshold": Nonlinearity("relu", two_sided=True, soft_threshold=True, encoding=True),
    "triangle": Nonlinearity("triangle", encoding=True),
    "nearest": Nonlinearity("nearest", encoding=True),
    # Thiry et al.'s form: the kernels nearest to the patch z, and (second maps) those nearest to -z.
    "two_sided_nearest": Nonlinearity("nearest", two_sided=True, encoding=True),
}
NONLINEARITIES = tuple(name for name, n in NONLINEARITY_TABLE.items() if not n.encoding)
ENCODINGS = tuple(name for name, n in NONLINEARITY_TABLE.items() if n.encoding)
TWO_SIDED = tuple(name for name, n in NONLINEARITY_TABLE.items() if n.two_sided)
# Encodings that rank a row of responses (a partial sort): no compiled pass, no linear pooling shortcut.
RANKED = tuple(name for name, n in NONLINEARITY_TABLE.items() if n.rule == "nearest")
# Thresholds of the response, max(r - alpha, 0) (two-sided: and max(-r - alpha, 0)), alpha >= 0.
THRESHOLDS = tuple(name for name, n in NONLINEARITY_TABLE.items() if n.rule == "relu")
# How each padding extends the image: None (not at all) or numpy.pad's mode, by pad_widths on each side.
PADDING_MODES = {"valid": None, "same": "constant", "reflect": "reflect"}
PADDINGS = tuple(PADDING_MODES)
POOLINGS = ("avg", "max")
CHANNEL_MODES = ("sum", "separate")


def pad_widths(kernel):
    """Pixels ``(before, after)`` a padding adds along an axis: the extra one after, for even kernels, as PyTorch's."""
    return (kernel - 1) // 2, kernel // 2


def padded_index(length, kernel, padding):
    """Source pixel of each padded coordinate along an axis of ``length``; -1 marks a zero (constant) one."""
    index = np.arange(length)
    mode = PADDING_MODES[padding]
    if mode is None:
        return index
    if mode == "constant":
        return np.pad(index, pad_widths(kernel), constant_values=-1)
    return np.pad(index, pad_widths(kernel), mode=mode)


@dataclass(frozen=True)
class LayerSpec:
    """What the layer computes: padding, nonlinearity, pooling and channel mode (pairs already resolved)."""

    padding: str
    nonlinearity: str
    pooling: str
    pool_size: tuple  # (ph, pw) window in pixels, or None with pool_grid
    pool_stride: tuple  # (sh, sw) in pixels
    pool_grid: tuple  # (gh, gw) regions, or None for window pooling
    channel_mode: str
    alpha: float = 0.0  # threshold of the soft-threshold encodings, in response units
    nearest_fraction: float = 0.4  # share of the kernels the nearest encodings mark at each position

    def conv_shape(self, image_hw, kernel_hw):
        """Height and width of the maps before pooling."""
        if PADDING_MODES[self.padding] is None:
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
        return 2 * n if NONLINEARITY_TABLE[self.nonlinearity].two_sided else n

    def n_nearest(self, n_filters):
        """Kernels the nearest encodings mark 1 at each position (at least one)."""
        return max(1, int(self.nearest_fraction * n_filters))

    def unpooled(self):
        """The same layer without pooling: one feature per map position."""
        return dataclasses.replace(self, pool_size=(1, 1), pool_stride=(1, 1), pool_grid=None)


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
    mode = PADDING_MODES[padding]
    if mode is None:
        return x
    pads = ((0, 0), pad_widths(kernel_hw[0]), pad_widths(kernel_hw[1]), (0, 0))
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


def activate(maps, spec, xp):
    """The nonlinearity of the plain path (in place where possible); two-sided ones double the maps."""
    parts = encode(maps, spec, xp)
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)


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


def layer(x, weights, kernel_hw, spec, xp, tile_bytes=None, kernels=None):
    """Convolve, activate and pool one batch; features ``(B, M*ph*pw)`` in map-major order.

    ``weights`` comes from :func:`prepare_weights`; a :class:`FoldedBank`
    takes the folded path, tiled by ``tile_bytes``, where a backend may
    supply compiled ``kernels`` (see :func:`folded_layer`).
    """
    if isinstance(weights, FoldedBank):
        return folded_layer(x, weights, spec, xp, tile_bytes, kernels)
    maps = pool(activate(convolve(x, weights, kernel_hw, spec, xp), spec, xp), spec, xp)
    # Map-major (M, ph, pw) order matches torch's flatten of (B, M, ph, pw).
    return maps.transpose(0, 3, 1, 2).reshape(maps.shape[0], -1)


# -- the folded layer: patch preprocessing and encodings in one GEMM per tile --
#
# With patch preprocessing (skconvfeat._patches) or a dictionary encoding, each
# im2col row p is normalised in place, q = (p - mean p) / sqrt(var p + eps_norm)
# (D values per position, D << n_filters), and everything linear after that is
# folded into the kernels: with z = W (q - mu), a kernel d responds
# d.z = (W d).q - d.(W mu), so the product [q, 1] @ [[W d], [-d.W mu]] gives the
# responses directly; thresholds add to the constant row, and the triangle's
# squared distances |z|^2 - 2 d.z + |d|^2 get |z|^2 from a last row (NumPy
# path) or from D extra columns that give z itself (compiled path, in the pass
# that reads each row anyway; see FoldedBank). Rows of positions are
# processed in tiles of a few MiB: GEMM, encoding and pooling run on the hot
# tile and only pooled features leave it.


@dataclass(frozen=True, eq=False)
class FoldedBank:
    """Kernels with the preprocessing and the encoding's affine terms folded in.

    ``matrix`` multiplies the rows ``[q, 1]`` (``q``: the ``D`` patch values
    in im2col order ``kh, kw, C``); its ``K`` columns give the response of
    each filter, minus ``alpha`` for soft thresholds. For the triangle, rows
    are ``[q, 1, s]`` and ``matrix`` is ``(D + 2, K + D)``: the first ``K``
    columns give ``d_k.d_k - 2 d_k.z + s`` and the last ``D`` the whitened
    patch ``z``. The NumPy path sets ``s = |z|^2`` once per batch and
    multiplies by the first ``K`` columns (squared distances straight from the
    product); the compiled one sets ``s = 0`` and adds ``|z|^2`` from the ``z``
    columns of the same product, in the pass that reads the row anyway. For the
    nearest encodings the ``K`` columns give ``d_k.z - |d_k|^2 / 2``, which is
    largest for the kernel nearest to ``z`` (``|z - d_k|^2`` less a constant of the row).
    """

    matrix: object
    patch_norm: bool
    eps_norm: float
    n_filters: int
    kernel_hw: tuple
    sq_norms: object = None  # |d_k|^2 on the device, for the second side of the nearest encoding


def needs_folding(spec, preprocessing):
    """Whether the layer must take the folded path (else the plain GEMM of ``weight_matrix``)."""
    return preprocessing is not None or spec.nonlinearity in ENCODINGS


def prepare_weights(filters, spec, dtype, xp, preprocessing=None):
    """Host float64 filters -> what :func:`layer` multiplies by, on ``xp`` in ``dtype``."""
    if not needs_folding(spec, preprocessing):
        return weight_matrix(xp.asarray(filters, dtype=dtype), spec.channel_mode, xp)
    return _fold(np.asarray(filters, dtype=np.float64), spec, dtype, xp, preprocessing)


def _fold(filters, spec, dtype, xp, preprocessing):
    n_filters, n_channels, kh, kw = filters.shape
    dim = n_channels * kh * kw
    kernels = filters.reshape(n_filters, dim)  # kernel layout (C, kh, kw)
    whitening = getattr(preprocessing, "whitening", None)
    if whitening is None:
        whitening, shift = np.eye(dim), np.zeros(dim)
    else:
        shift = whitening @ preprocessing.mean  # W mu
    folded = kernels @ whitening  # rows W d (W is symmetric)
    offset = kernels @ shift  # d.W mu
    if NONLINEARITY_TABLE[spec.nonlinearity].rule == "triangle":
        # |z - d|^2 = |z|^2 - 2 d.z + |d|^2, with z = W q - W mu from the last D columns;
        # |z|^2 enters from the rows' last value through the last row (see FoldedBank).
        linear = np.vstack([-2 * folded, whitening])
        constant = np.concatenate([2 * offset + np.einsum("ij,ij->i", kernels, kernels), -shift])
        extra = np.concatenate([np.ones(n_filters), np.zeros(dim)])[None]
    else:
        linear, constant, extra = folded, -offset - threshold(spec), np.zeros((0, n_filters))
    sq_norms = np.einsum("ij,ij->i", kernels, kernels) if spec.nonlinearity in RANKED else None
    if sq_norms is not None:
        constant = constant - 0.5 * sq_norms  # d.z - |d|^2 / 2: largest for the kernel nearest to z
    matrix = np.vstack([_im2col_rows(linear, n_channels, kh, kw), constant[None], extra])
    patch_norm = bool(getattr(preprocessing, "patch_norm", False))
    eps_norm = float(getattr(preprocessing, "eps_norm", 0.0))
    return FoldedBank(
        matrix=xp.asarray(matrix, dtype=dtype),
        patch_norm=patch_norm,
        eps_norm=eps_norm,
        n_filters=n_filters,
        kernel_hw=(kh, kw),
        sq_norms=None if sq_norms is None else xp.asarray(sq_norms, dtype=dtype),
    )


def threshold(spec):
    """The ``alpha`` subtracted from responses: soft-threshold encodings only."""
    return spec.alpha if NONLINEARITY_TABLE[spec.nonlinearity].soft_threshold else 0.0


def _im2col_rows(vectors, n_channels, kh, kw):
    """Vectors ``(K, D)`` in kernel layout ``(C, kh, kw)`` as ``(D, K)`` rows in im2col order ``(kh, kw, C)``."""
    return vectors.reshape(-1, n_channels, kh, kw).transpose(2, 3, 1, 0).reshape(kh * kw * n_channels, -1)


def _tile_shape(n_images, map_hw, spec, folded, itemsize, tile_bytes):
    """(images, map rows) per tile so one tile's patch rows and maps stay near ``tile_bytes``."""
    map_h, map_w = map_hw
    if tile_bytes is None:
        return n_images, map_h
    positions = tile_positions(folded, itemsize, tile_bytes)
    if spec.pool_grid is None or positions >= map_h * map_w:
        # Window pooling needs whole maps; a small image is whole anyway.
        return max(1, min(n_images, positions // (map_h * map_w))), map_h
    # Bands of equal height: 27 rows as 9+9+9 rather than 11+11+5 keeps every GEMM as tall.
    n_bands = -(-map_h // max(1, min(map_h, positions // map_w)))
    return 1, -(-map_h // n_bands)


def tile_positions(folded, itemsize, tile_bytes):
    """Positions whose patch rows and maps fit in ``tile_bytes`` (None: no bound)."""
    return None if tile_bytes is None else max(1, tile_bytes // (itemsize * sum(folded.matrix.shape)))


def folded_layer(x, folded, spec, xp, tile_bytes=None, kernels=None):
    """The folded layer on a batch ``(B, H, W, C)``: features ``(B, M*ph*pw)``, map-major.

    ``tile_bytes`` bounds the scratch of one tile (``None``: the whole batch
    is one tile, as on a GPU). The patch rows are made once for the batch
    (``D + 2`` values a position, ``D << K``); each tile is then one product
    and a few passes over its maps, so two threads seldom wait on each other
    for the interpreter between NumPy calls. A backend's compiled ``kernels``
    (:mod:`skconvfeat._backend.cpu_fused`) replace those calls by single
    passes: ``patch_rows(x, folded, rows)`` writes ``[q, 1, 0...]``, and with grid
    pooling ``encode_pool_tiles(rows, matrix, tile, members, acc, spec)``
    runs every tile's product, encoding and pooling in one call.
    """
    kh, kw = folded.kernel_hw
    x = _pad(x, (kh, kw), spec.padding, xp)
    n_images, n_channels = x.shape[0], x.shape[3]
    map_hw = (x.shape[1] - kh + 1, x.shape[2] - kw + 1)
    fused = kernels is not None and spec.pool_grid is not None and spec.nonlinearity not in RANKED
    # The two paths' rows differ for the triangle (see FoldedBank): each makes its own.
    rows = patch_rows(x, folded, xp, kernels if fused else None).reshape(n_images, map_hw[0], map_hw[1], -1)
    n_maps = spec.n_maps(folded.n_filters, n_channels)
    pooled_hw = spec.pooled_shape(map_hw)
    acc = _pool_init(spec, (n_images, *pooled_hw, n_maps), x.dtype, xp)
    linear = not fused and _pools_linearly(spec)
    if linear:
        # Pooled sums the shortcut needs: patch rows (thresholds) or mean distances (triangle).
        side = xp.zeros((n_images, *pooled_hw, rows.shape[-1] if spec.nonlinearity in THRESHOLDS else 1), dtype=x.dtype)
        if spec.nonlinearity in THRESHOLDS:
            _pool_into(side, rows, 0, map_hw, spec, xp)
    if fused:
        # Tiles are runs of positions of the flattened batch; the compiled kernel loops over them.
        members = position_regions(n_images, map_hw, spec.pool_grid)
        tile = tile_positions(folded, x.dtype.itemsize, tile_bytes) or len(members)
        flat_rows, flat_acc = rows.reshape(-1, rows.shape[-1]), acc.reshape(-1, n_maps)  # views: both contiguous
        kernels.encode_pool_tiles(flat_rows, folded.matrix, tile, members, flat_acc, spec)
    else:
        tile_images, tile_rows = _tile_shape(n_images, map_hw, spec, folded, x.dtype.itemsize, tile_bytes)
        # Every tile's maps go to one buffer made once per call: a fresh MiB-sized array
        # per tile costs its page faults each time (~0.4 us a position, 15% of the GEMM).
        buffer = xp.empty((tile_images * tile_rows * map_hw[1], folded.n_filters), dtype=x.dtype)
        for b0 in range(0, n_images, tile_images):
            b1 = min(b0 + tile_images, n_images)
            for y0 in range(0, map_hw[0], tile_rows):
                y1 = min(y0 + tile_rows, map_hw[0])
                tile = rows[b0:b1, y0:y1].reshape(-1, rows.shape[-1])  # whole images or one image's band: a view
                g = xp.matmul(tile, folded.matrix[:, : folded.n_filters], out=buffer[: tile.shape[0]])
                shape = (b1 - b0, y1 - y0, map_hw[1], folded.n_filters)
                if linear:
                    _encode_pool_linear(g, acc[b0:b1], side[b0:b1], y0, map_hw, spec, xp, shape)
                    continue
                for slot, m in enumerate(encode(g, spec, xp, folded.sq_norms)):
                    part = slice(slot * folded.n_filters, (slot + 1) * folded.n_filters)
                    _pool_into(acc[b0:b1, ..., part], m.reshape(shape), y0, map_hw, spec, xp)
    if linear:
        _finish_linear(acc, side, folded, spec, xp)
    if spec.pool_grid is not None and spec.pooling == "avg":
        acc *= _region_inverse_sizes(map_hw, spec.pool_grid, x.dtype, xp)
    return acc.transpose(0, 3, 1, 2).reshape(n_images, -1)


def _pools_linearly(spec):
    """Whether average grid pooling lets the encoding skip passes over the maps (see _encode_pool_linear)."""
    return spec.pool_grid is not None and spec.pooling == "avg" and NONLINEARITY_TABLE[spec.nonlinearity].rule in ("relu", "triangle")


def _encode_pool_linear(g, acc, side, y0, map_hw, spec, xp, shape):
    """Encode and sum-pool one tile in fewer, cheaper passes, using that sums are linear.

    Thresholds, with ``g = r - alpha``: ``max(g, 0) = (g + |g|) / 2``, so only
    ``|g|`` is pooled here and the pooled ``g`` is the pooled patch rows
    (``side``, pooled once per batch by :func:`folded_layer`) times the kernel
    matrix, once per image (:func:`_finish_linear`);
    ``abs`` runs about 2.5x faster than ``maximum`` in NumPy (which must
    propagate NaN). Two-sided: with ``h = max(g, -2 alpha)`` (pooled),
    ``max(-g - 2 alpha, 0) = h - g`` and ``max(g, 0) = max(h, 0) = (h + |h|) / 2``
    (``|h|`` pooled, in place: no second buffer). Triangle:
    ``max(mean - d, 0) = mean - min(d, mean)``, with the pooled row means in ``side``.
    """
    n_filters = shape[-1]
    if spec.nonlinearity in THRESHOLDS:
        if spec.nonlinearity in TWO_SIDED:
            xp.maximum(g, -2 * threshold(spec), out=g)
            _pool_into(acc[..., n_filters:], g.reshape(shape), y0, map_hw, spec, xp)
        _pool_into(acc[..., :n_filters], xp.abs(g, out=g).reshape(shape), y0, map_hw, spec, xp)
        return
    _distances(g, xp)
    mean = _row_mean(g, xp)
    xp.minimum(g, mean, out=g)
    _pool_into(acc, g.reshape(shape), y0, map_hw, spec, xp)
    _pool_into(side, mean.reshape(*shape[:3], 1), y0, map_hw, spec, xp)


def _finish_linear(acc, side, folded, spec, xp):
    """Turn the pooled sums of :func:`_encode_pool_linear` into the pooled encodings (still sums)."""
    if spec.nonlinearity in THRESHOLDS:
        n_filters = folded.n_filters
        positive, pooled_g = acc[..., :n_filters], side @ folded.matrix
        if spec.nonlinearity in TWO_SIDED:
            pooled_h = acc[..., n_filters:]
            positive += pooled_h
            pooled_h -= pooled_g
        else:
            positive += pooled_g
        positive *= 0.5
    else:
        xp.subtract(side, acc, out=acc)
    # Both shortcuts subtract nearly equal sums: float32 rounding can leave a
    # tiny negative (~1e-7) where the encoding's exact value is 0 or more.
    xp.maximum(acc, 0, out=acc)


def _distances(g, xp):
    """Squared distances to distances, in place.

    ``abs`` rather than clipping at 0: rounding leaves tiny negatives where a
    patch sits on a centroid, and ``sqrt(|g|)`` errs there as much as it does
    for the tiny positives of the same rounding, at half the cost of ``maximum``.
    """
    xp.abs(g, out=g)
    return xp.sqrt(g, out=g)


def patch_rows(x, folded, xp, kernels=None):
    """The rows ``[q, 1(, s)]`` (see :class:`FoldedBank`) of every position of a padded batch ``(B, H, W, C)``.

    Made for the whole batch at once: a dozen NumPy calls a batch rather than
    a tile, or one compiled pass (``kernels.patch_rows``).
    """
    n_rows = x.shape[0] * (x.shape[1] - folded.kernel_hw[0] + 1) * (x.shape[2] - folded.kernel_hw[1] + 1)
    rows = xp.empty((n_rows, folded.matrix.shape[0]), dtype=folded.matrix.dtype)
    if kernels is not None:
        kernels.patch_rows(x, folded, rows)  # s = 0 for the triangle (see FoldedBank)
        return rows
    dim = folded.matrix.shape[1] - folded.n_filters  # D: the triangle's z columns
    _numpy_patch_rows(x, folded, xp, rows[:, : dim + 1] if dim else rows)
    if dim:
        z = rows[:, : dim + 1] @ folded.matrix[: dim + 1, folded.n_filters :]
        rows[:, dim + 1] = xp.einsum("ij,ij->i", z, z)
    return rows


def _numpy_patch_rows(x, folded, xp, rows):
    """:func:`patch_rows`' ``[q, 1]`` in NumPy calls (CuPy's too), into ``rows`` ``(B*H'*W', D+1)``."""
    kh, kw = folded.kernel_hw
    # (B, H', W', kh, kw, C) view: im2col order.
    windows = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    dim = rows.shape[1] - 1
    patches = rows[:, :dim]
    # im2col copy, then into the wider rows: the extra copy is D columns (D << K),
    # and unlike writing through a reshaped strided view it cannot silently
    # land in a temporary on a backend whose reshape copies.
    patches[...] = windows.reshape(rows.shape[0], dim)
    if folded.patch_norm:
        patches -= patches.mean(axis=1, keepdims=True)
        scale = xp.einsum("ij,ij->i", patches, patches)
        scale *= 1.0 / dim
        scale += folded.eps_norm
        patches *= (1.0 / xp.sqrt(scale))[:, None]
    rows[:, dim] = 1.0
    return rows


def encode(responses, spec, xp, sq_norms=None):
    """The encoded maps of responses (last axis: filters): a list of one, or two when two-sided.

    Responses are ``g = r - alpha`` for soft thresholds (folded into the
    kernels), squared distances for the triangle (2-D ``(rows, K)``) and
    ``g = r - |d|^2 / 2`` for the nearest encodings, whose second side needs
    the kernels' squared norms ``sq_norms``.
    Elementwise rules work in place on any shape, so the plain path's maps
    ``(B, H', W', K)`` and the folded path's tiles share this one function.
    """
    g, rule = responses, NONLINEARITY_TABLE[spec.nonlinearity]
    if rule.rule == "relu" and rule.two_sided:
        # g = r - alpha: max(r - alpha, 0) and max(-r - alpha, 0) = max(-g - 2 alpha, 0).
        positive = xp.maximum(g, 0)
        xp.subtract(-2 * threshold(spec), g, out=g)
        return [positive, xp.maximum(g, 0, out=g)]
    if rule.rule == "relu":  # the threshold is already subtracted
        return [xp.maximum(g, 0, out=g)]
    if rule.rule == "nearest":
        # For -z: -r - |d|^2 / 2 = -g - |d|^2. Made before g is overwritten.
        other = xp.subtract(-g, sq_norms) if rule.two_sided else None
        return [_nearest(part, spec, xp) for part in (g, other) if part is not None]
    if rule.rule == "triangle":
        # g holds squared distances; f_k = max(0, mean_j dist_j - dist_k).
        _distances(g, xp)
        mean = _row_mean(g, xp)
        xp.subtract(mean, g, out=g)
        return [xp.maximum(g, 0, out=g)]
    if rule.rule == "abs":
        return [xp.abs(g, out=g)]
    if rule.rule == "square":
        return [xp.multiply(g, g, out=g)]
    return [g]


def _nearest(g, spec, xp):
    """1 where a response is among the row's ``n`` largest (its kernel among the ``n`` nearest), else 0, in place.

    A partial sort finds each row's ``n``-th largest value (``O(K)`` a row, as
    torch's ``kthvalue`` in Thiry et al.'s code); ties at it, of measure zero
    for real patches, are all marked.
    """
    n_filters = g.shape[-1]
    cut = n_filters - spec.n_nearest(n_filters)
    nth = xp.partition(g, cut, axis=-1)[..., cut : cut + 1]
    g[...] = g >= nth
    return g


def _row_mean(g, xp):
    """Mean of each row as a column.

    ``einsum`` sums a row about 3x faster than ``mean`` in NumPy; unlike a
    matrix-vector product (as fast), its result does not depend on where the
    row sits in the tile, so features do not depend on the order of samples.
    """
    means = xp.einsum("ij->i", g)
    means *= 1.0 / g.shape[1]
    return means[:, None]


def _pool_init(spec, shape, dtype, xp):
    if spec.pool_grid is not None and spec.pooling == "max":
        return xp.full(shape, -xp.inf, dtype=dtype)
    return xp.zeros(shape, dtype=dtype)


def _pool_into(acc, maps, y0, map_hw, spec, xp):
    """Pool maps ``(b, r, W', K)`` holding map rows ``y0:y0+r`` into ``acc`` ``(b, ph, pw, K)``."""
    if spec.pool_grid is None:  # whole maps (see _tile_shape)
        acc[...] = _window_pool(maps, spec.pool_size, spec.pool_stride, spec.pooling, xp)
        return
    y1 = y0 + maps.shape[1]
    if spec.pooling == "avg":
        # Region sums as one product: a single call that releases the GIL, where
        # a reduce and an add per region held it between ~8 calls per tile and
        # left the second thread waiting (16% of its time on the 1,600-filter case).
        first, last, regions = _band_regions(y0, y1, map_hw, spec.pool_grid, maps.dtype, xp)
        n_images, n_filters = maps.shape[0], maps.shape[3]
        sums = xp.matmul(regions, maps.reshape(n_images, -1, n_filters))
        acc[:, first:last] += sums.reshape(n_images, last - first, spec.pool_grid[1], n_filters)
        return
    cols = grid_bounds(map_hw[1], spec.pool_grid[1])
    for i, (a, b) in enumerate(grid_bounds(map_hw[0], spec.pool_grid[0])):
        lo, hi = max(a, y0), min(b, y1)
        if lo >= hi:
            continue
        band = maps[:, lo - y0 : hi - y0]
        for j, (c, d) in enumerate(cols):
            xp.maximum(acc[:, i, j], band[:, :, c:d].max(axis=(1, 2)), out=acc[:, i, j])


@functools.lru_cache(maxsize=64)
def _band_regions(y0, y1, map_hw, grid, dtype, xp):
    """Which grid rows ``first:last`` the map rows ``y0:y1`` reach, and the 0/1 matrix that sums them.

    The matrix is ``((last - first) * gw, (y1 - y0) * W')``: row ``(i, j)``
    marks the band's positions inside region ``(first + i, j)`` (regions may
    overlap, as adaptive pooling's do), read off :func:`position_regions`.
    """
    members = position_regions(1, map_hw, grid)[y0 * map_hw[1] : y1 * map_hw[1]]
    first, last = members[members >= 0].min() // grid[1], members.max() // grid[1] + 1
    marks = np.zeros(((last - first) * grid[1], len(members)))
    for slot in range(members.shape[1]):
        inside = members[:, slot] >= 0
        marks[members[inside, slot] - first * grid[1], np.flatnonzero(inside)] = 1
    return int(first), int(last), xp.asarray(marks, dtype=dtype)


@functools.lru_cache(maxsize=64)
def position_regions(n_images, map_hw, grid):
    """Grid regions of every map position of a batch: ``(n_images * H' * W', m)`` int32, -1 padded.

    Position ``p`` pools into rows ``members[p]`` of the batch's pooled maps
    laid out ``(n_images * gh * gw, maps)``: at least one, as adaptive regions
    cover the map (``grid_bounds``). A position lies in up to ``m``
    regions where adaptive regions overlap (``m`` is 1 when the grid divides
    the map). Host NumPy, read-only: it is cached.
    """
    row_bounds, col_bounds = grid_bounds(map_hw[0], grid[0]), grid_bounds(map_hw[1], grid[1])
    regions = [
        [i * grid[1] + j for i, (a, b) in enumerate(row_bounds) if a <= y < b for j, (c, d) in enumerate(col_bounds) if c <= x < d]
        for y in range(map_hw[0])
        for x in range(map_hw[1])
    ]
    one = np.full((len(regions), max(map(len, regions))), -1, dtype=np.int32)
    for p, r in enumerate(regions):
        one[p, : len(r)] = r
    offsets = np.arange(n_images, dtype=np.int32)[:, None, None] * (grid[0] * grid[1])
    members = np.where(one >= 0, one + offsets, -1).reshape(-1, one.shape[1])
    members.flags.writeable = False
    return members


def _region_inverse_sizes(map_hw, grid, dtype, xp):
    """``1 / pixels`` of each grid region, shaped ``(gh, gw, 1)`` to scale sums into means."""
    heights = [b - a for a, b in grid_bounds(map_hw[0], grid[0])]
    widths = [b - a for a, b in grid_bounds(map_hw[1], grid[1])]
    return xp.asarray(1.0 / np.outer(heights, widths)[:, :, None], dtype=dtype)


# -- geometry: read through skconvfeat._fitted.FittedLayer --------------------


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
