"""The folded layer's per-position work as compiled single passes (numba), for the CPU driver.

:func:`patch_rows` makes the normalised im2col rows of a batch and
:func:`encode_pool_tiles` multiplies, encodes and pools a batch tile by tile.

The folded layer's NumPy path (:func:`skconvfeat._layer.folded_layer`)
spends 2-5 passes over each tile's ``positions x K`` responses after the
GEMM (threshold, absolute value, square roots, row means, pooling), and one
interpreter round trip per pass: with two threads each waits for the other
between calls. Here each response is read once, while it is still in L1,
and one call releases the interpreter lock for a whole batch of tiles. Measured on
the 1,600-filter CIFAR-10 case (one thread, ~250-row tiles): 0.2-0.3 / 0.4 /
0.4 us a position after the GEMM for the soft threshold / two-sided /
triangle, against 0.6 / 1.0 / 1.3 us for the NumPy passes.

The patch rows took a dozen NumPy calls a batch (0.35-0.5 us a position,
13% of the GEMM); here they are one pass (0.1 us).

This module imports numba; :func:`skconvfeat._backend.cpu.compiled_kernels`
imports it only when numba is installed (the ``fast`` extra). Without numba
the NumPy path gives the same features (to float rounding).
"""

import numba
import numpy as np

from .. import _layer

# The compiled case of each rule of _layer.NONLINEARITY_TABLE (thresholds already subtracted by the folded GEMM).
_RULE_CODES = {
    "none": 0,
    "relu": 1,  # max(g, 0); two-sided: 2, max(g, 0) then max(-g - 2 alpha, 0)
    "triangle": 3,  # g is a squared distance
    "abs": 4,
    "square": 5,
}


def _code(nonlinearity):
    rule = _layer.NONLINEARITY_TABLE[nonlinearity]
    return 2 if rule.two_sided else _RULE_CODES[rule.rule]


# Sums may be reassociated (vectorised): the row mean of the triangle then
# differs from a sequential sum by float rounding only. No "nnan"/"ninf":
# non-finite values must propagate as in NumPy, not be assumed away.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# How every pass is compiled. error_model="numpy": a division by zero gives inf or NaN, as NumPy's passes do,
# for the layer's finiteness check to name; numba's default raised a bare ZeroDivisionError (a patch whose
# variance and eps_norm both round to 0 in float32).
_JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")


def patch_rows(x, folded, rows):
    """Write ``[q, 1, 0...]`` of every position of the padded batch ``x`` ``(B, H, W, C)`` into ``rows`` ``(B*H'*W', >= D+1)``.

    ``q`` is the im2col patch (order ``kh, kw, C``), normalised as in
    :func:`skconvfeat._layer.folded_layer`'s NumPy rows when ``folded.patch_norm``; the
    triangle's ``s`` is 0 (:class:`skconvfeat._layer.FoldedBank`).
    """
    n_images, height, width, channels = x.shape
    flat = np.ascontiguousarray(x).reshape(n_images, height, width * channels)
    kh, kw = folded.kernel_hw
    # Scalars in the images' dtype: a float64 one would widen every float32 operation.
    one, eps, inverse_dim = (x.dtype.type(v) for v in (1, folded.eps_norm, 1 / (kh * kw * channels)))
    _patch_rows(flat, kh, kw * channels, channels, folded.patch_norm, one, eps, inverse_dim, rows)


@numba.njit(**_JIT)
def _patch_rows(flat, kh, row_length, channels, patch_norm, one, eps, inverse_dim, rows):  # pragma: no cover - compiled
    n_images, height, flat_width = flat.shape
    map_h, map_w = height - kh + 1, (flat_width - row_length) // channels + 1
    dim = kh * row_length
    p = 0
    for b in range(n_images):
        for y in range(map_h):
            for x in range(map_w):
                row = rows[p]
                total = one - one
                # A kernel window is kh contiguous runs of kw*C values. Copied and summed
                # element by element: a slice assignment per run took 1.7x as long (measured).
                for dy in range(kh):
                    source, start, first = flat[b, y + dy], x * channels, dy * row_length
                    for i in range(row_length):
                        row[first + i] = source[start + i]
                        total += source[start + i]
                if patch_norm:
                    mean = total * inverse_dim
                    squares = one - one
                    for i in range(dim):
                        row[i] -= mean
                        squares += row[i] * row[i]
                    scale = one / np.sqrt(squares * inverse_dim + eps)
                    for i in range(dim):
                        row[i] *= scale
                row[dim] = one
                for i in range(dim + 1, row.shape[0]):
                    row[i] = one - one
                p += 1


def encode_pool_tiles(rows, matrix, tile, members, acc, spec):
    """Responses ``rows @ matrix`` of a batch, ``tile`` positions at a time, encoded and pooled into ``acc``.

    ``rows`` ``(positions, D')``; ``members[p]`` lists the rows of ``acc``
    ``(regions, maps)`` position ``p`` pools into, padded with -1
    (:func:`skconvfeat._layer.position_regions`); ``acc`` holds sums for average
    pooling, maxima for max pooling. One call for the whole batch: the
    interpreter lock is released once, not around each of its NumPy calls.
    """
    buffer = np.empty((min(tile, rows.shape[0]), matrix.shape[1]), dtype=matrix.dtype)
    code, use_max = _code(spec.nonlinearity), spec.pooling == "max"
    n_filters = acc.shape[1] // (2 if code == 2 else 1)
    # Scalars in the responses' dtype: a float64 one would widen every float32 operation.
    alpha, inverse_k = (matrix.dtype.type(v) for v in (_layer.threshold(spec), 1 / n_filters))
    _encode_pool_tiles(rows, matrix, tile, buffer, members, code, n_filters, alpha, inverse_k, use_max, acc)


@numba.njit(**_JIT)
def _encode_pool_tiles(rows, matrix, tile, buffer, members, code, n_filters, alpha, inverse_k, use_max, acc):  # pragma: no cover
    for p0 in range(0, rows.shape[0], tile):
        p1 = min(p0 + tile, rows.shape[0])
        g = buffer[: p1 - p0]
        np.dot(rows[p0:p1], matrix, g)  # BLAS, as NumPy's matmul; one thread inside run_cpu
        _encode_pool(g, members[p0:p1], code, n_filters, alpha, inverse_k, use_max, acc)


@numba.njit(**_JIT)
def _encode_pool(g, members, code, n_filters, alpha, inverse_k, use_max, acc):  # pragma: no cover - compiled
    """Encode each row of ``g`` and pool it into its ``acc`` rows: see :func:`encode_pool_tiles`.

    For the triangle a row of ``g`` is ``[d.d - 2 d.z | z]`` (``FoldedBank``).
    """
    if code == 3 and not use_max:
        _triangle_avg_pool(g, members, n_filters, inverse_k, acc)
        return
    zero = alpha - alpha  # typed constants, for the same reason as alpha's
    shift = -(alpha + alpha)
    # Average pooling of the thresholds adds each encoded value straight
    # into the pooled sums; the other cases encode a row into this scratch first.
    direct = not use_max and (code == 1 or code == 2)
    encoded = np.empty(acc.shape[1], dtype=acc.dtype)
    # The triangle's distances: a scratch apart from g. Written over g, the loop
    # fails LLVM's run-time overlap check and runs scalar (3x slower, measured).
    dist = np.empty(n_filters if code == 3 else 0, dtype=acc.dtype)
    mean = zero
    for p in range(g.shape[0]):
        row = g[p]
        if code == 3:
            mean = _distances(row, n_filters, inverse_k, dist)
            row = dist
        if not direct:
            _encode_row(row, code, zero, shift, mean, encoded)
        for t in range(members.shape[1]):
            region = members[p, t]
            if region < 0:
                break
            out = acc[region]
            if direct:
                for k in range(n_filters):
                    out[k] += max(row[k], zero)
                if code == 2:
                    # A second loop rather than two stores in one: each then vectorises.
                    negative = out[n_filters:]
                    for k in range(n_filters):
                        negative[k] += max(shift - row[k], zero)
            elif use_max:
                for k in range(encoded.shape[0]):
                    out[k] = max(out[k], encoded[k])
            else:
                for k in range(encoded.shape[0]):
                    out[k] += encoded[k]


@numba.njit(**_JIT)
def _triangle_avg_pool(g, members, n_filters, inverse_k, acc):  # pragma: no cover - compiled
    """The triangle with average pooling, software-pipelined: one loop takes row p's square roots and pools row p-1.

    The square roots keep one execution port busy while the others wait, and
    pooling needs only loads, subtractions, maxima and stores: in one loop
    each hides the other. Measured on a 243 x 1,708 tile of the 1,600-filter
    CIFAR-10 case (one thread): 0.43 us a position against 0.53 us for two
    loops in turn. Relies on every position lying in at least one region
    (:func:`skconvfeat._layer.position_regions`).
    """
    zero = inverse_k - inverse_k
    dist = np.empty((2, n_filters), dtype=acc.dtype)  # rows p and p-1, alternately
    mean = _distances(g[0], n_filters, inverse_k, dist[0])  # of row p-1
    for p in range(1, g.shape[0]):
        current, previous = dist[p % 2], dist[1 - p % 2]
        row, out = g[p], acc[members[p - 1, 0]]
        z_norm, total = _squared_norm(row, n_filters), zero
        for k in range(n_filters):
            d = np.sqrt(abs(row[k] + z_norm))  # abs: as in _distances
            current[k] = d
            total += d
            out[k] += max(mean - previous[k], zero)
        _triangle_pool(previous, mean, members[p - 1, 1:], acc)  # where adaptive regions overlap
        mean = total * inverse_k
    _triangle_pool(dist[(g.shape[0] - 1) % 2], mean, members[g.shape[0] - 1], acc)


@numba.njit(**_JIT)
def _triangle_pool(dist, mean, regions, acc):  # pragma: no cover - compiled
    """Add the triangle encoding ``max(mean - dist, 0)`` of one position to its ``regions`` of ``acc`` (-1 padded)."""
    zero = mean - mean
    for region in regions:
        if region < 0:
            break
        out = acc[region]
        for k in range(dist.shape[0]):
            out[k] += max(mean - dist[k], zero)


@numba.njit(**_JIT)
def _squared_norm(row, start):  # pragma: no cover - compiled
    """``|row[start:]|^2`` (indexing rather than a slice: numba vectorises this loop, not one over a slice)."""
    total = row.dtype.type(0)
    for k in range(start, row.shape[0]):
        total += row[k] * row[k]
    return total


@numba.njit(**_JIT)
def _distances(row, n_filters, inverse_k, dist):  # pragma: no cover - compiled
    """Distances to the centroids of a triangle row ``[d.d - 2 d.z | z]`` into ``dist``; returns their mean."""
    z_norm, total = _squared_norm(row, n_filters), inverse_k - inverse_k
    for k in range(n_filters):
        # abs: rounding leaves tiny negative squared distances near a centroid.
        dist[k] = np.sqrt(abs(row[k] + z_norm))
        total += dist[k]
    return total * inverse_k


@numba.njit(**_JIT)
def _encode_row(row, code, zero, shift, mean, encoded):  # pragma: no cover - compiled
    """The encoding of one row of responses (distances for the triangle) into ``encoded``."""
    n_filters = encoded.shape[0] // (2 if code == 2 else 1)
    if code == 3:
        for k in range(n_filters):
            encoded[k] = max(mean - row[k], zero)
    elif code == 1 or code == 2:
        for k in range(n_filters):
            encoded[k] = max(row[k], zero)
        if code == 2:
            negative = encoded[n_filters:]
            for k in range(n_filters):
                negative[k] = max(shift - row[k], zero)
    elif code == 4:
        for k in range(n_filters):
            encoded[k] = abs(row[k])
    elif code == 5:
        for k in range(n_filters):
            encoded[k] = row[k] * row[k]
    else:
        encoded[:] = row
