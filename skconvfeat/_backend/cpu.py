"""Drive the layer over a whole dataset in bounded batches on CPU threads (``cuda.py`` is the GPU's).

Each thread takes contiguous runs of small batches whose im2col patches and
full-resolution maps stay in cache, so the nonlinearity
and the pooling happen while the convolution output is still hot; only the
pooled features ever reach main memory.
"""

import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _layer
from . import blas_controller, cpu_threads

# Per-thread scratch memory the automatic batch size aims for. Measured with
# benchmarks/bench_transform.py on a 2-core Xeon (2 MiB L2 per core): 2-8 MiB
# all ran within ~5% of the best, 1 MiB was 1.7x slower on CIFAR-sized images
# (too few images per matrix product), and beyond that memory grows for nothing.
CPU_WORKING_SET_BYTES = 4 << 20
# Scratch of one tile on the folded path (patch rows plus maps of a band of
# positions), about the 2 MiB L2. Measured one thread on the 1,600-filter CIFAR
# case (busy 2-core machine, 2026-11-23): 1 MiB tiles (135 GEMM rows) reached
# 57-65% of the bare GEMM's rate, 2 MiB 73-79%, 4 MiB 71-72%.
CPU_TILE_BYTES = 2 << 20
# Up to this many runs of batches per thread, so a slow thread does not hold
# the others up at the end (fewer when there are fewer batches).
_TASKS_PER_THREAD = 4


@functools.cache
def _thread_pool(n_threads):
    """A pool kept for the process: starting threads costs ~0.6 ms, a third of transforming digits."""
    return ThreadPoolExecutor(n_threads, thread_name_prefix="skconvfeat")


# A forked child inherits the cache but not the threads: start afresh there.
os.register_at_fork(after_in_child=_thread_pool.cache_clear)


def run_cpu(images, filters, spec, dtype, batch_size, n_threads=None, preprocessing=None):
    """Features of ``images`` ``(n, h, w, c)`` computed by NumPy threads.

    Extra memory beyond the returned array: ``n_threads * batch_size`` images'
    worth of scratch (see :func:`skconvfeat._layer.bytes_per_image`); on the
    folded path (``preprocessing`` or a dictionary encoding) each thread's
    maps stay within one tile of ``CPU_TILE_BYTES``.
    """
    n_threads = n_threads or cpu_threads()
    kernel_hw = filters.shape[2:]
    weights = _layer.prepare_weights(filters, spec, dtype, np, preprocessing)
    n = images.shape[0]
    n_out = _layer.n_features_out(images.shape[1:], kernel_hw, spec, filters.shape[0])
    out = np.empty((n, n_out), dtype=dtype)

    def work(start, stop):
        for b in range(start, stop, batch_size):
            e = min(b + batch_size, stop)
            x = images[b:e].astype(dtype, copy=False)
            out[b:e] = _layer.layer(x, weights, kernel_hw, spec, np, tile_bytes=CPU_TILE_BYTES)

    n_tasks = max(min(n_threads, n), min(n_threads * _TASKS_PER_THREAD, -(-n // batch_size)))
    bounds = np.linspace(0, n, n_tasks + 1).astype(int)
    ranges = [(s, e) for s, e in itertools.pairwise(bounds) if e > s]
    # Our threads replace BLAS's: one BLAS thread each avoids oversubscription.
    with blas_controller().limit(limits=1):
        if n_threads == 1 or len(ranges) == 1:
            for s, e in ranges:
                work(s, e)
        else:
            list(_thread_pool(n_threads).map(lambda r: work(*r), ranges))
    return out
