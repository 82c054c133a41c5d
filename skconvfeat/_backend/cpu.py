"""Drive the layer over a whole dataset in bounded batches on CPU threads (``cuda.py`` is the GPU's).

Each thread takes contiguous runs of small batches whose im2col patches and
full-resolution maps stay in cache, so the nonlinearity
and the pooling happen while the convolution output is still hot; only the
pooled features ever reach main memory.
"""

import functools
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _layer
from . import cpu_threads, single_threaded_blas

# Per-thread scratch memory the automatic batch size aims for. Measured with
# benchmarks/bench_transform.py on a 2-core Xeon (2 MiB L2 per core): 2-8 MiB
# all ran within ~5% of the best, 1 MiB was 1.7x slower on CIFAR-sized images
# (too few images per matrix product), and beyond that memory grows for nothing.
CPU_WORKING_SET_BYTES = 4 << 20
# Scratch of one tile on the folded path (patch rows plus maps of a band of
# positions), about the 2 MiB L2. Measured one thread on the 1,600-filter CIFAR
# case (busy 2-core machine, 2026-11-23): 1 MiB tiles (135 GEMM rows) reached
# 57-65% of the bare GEMM's rate, 2 MiB 73-79%, 4 MiB 71-72%. With the compiled
# passes, two threads on the quiet machine: 6 MiB tiles (a whole image a product)
# came within -2% to +6% of 2 MiB, run to run, for three times the memory: kept.
CPU_TILE_BYTES = 2 << 20


@functools.cache
def _thread_pool(n_threads):
    """A pool kept for the process: starting threads costs ~0.6 ms, a third of transforming digits."""
    return ThreadPoolExecutor(n_threads, thread_name_prefix="skconvfeat")


# A forked child inherits the cache but not the threads: start afresh there.
os.register_at_fork(after_in_child=_thread_pool.cache_clear)


def compiled_kernels():
    """:mod:`.cpu_fused`, the folded layer's compiled passes, or None without numba (the NumPy passes run).

    Importing it costs ~0.3 s, paid on the first transform that takes the
    folded path, never at import; compiling costs seconds once per machine
    (numba caches the machine code on disk).
    """
    if importlib.util.find_spec("numba") is None:
        return None
    from . import cpu_fused

    return cpu_fused


def run(layer, images, *, dtype, batch_size):
    """Features of ``images`` ``(n, h, w, c)`` through the fitted ``layer``, computed by NumPy threads.

    ``batch_size`` is images per batch or ``"auto"``: each thread's scratch
    near ``CPU_WORKING_SET_BYTES``. Extra memory beyond the returned array:
    ``threads * batch_size`` images' worth of scratch
    (:meth:`~skconvfeat._fitted.FittedLayer.bytes_per_image`); on the folded
    path (preprocessing or a dictionary encoding) each thread's maps stay
    within one tile of ``CPU_TILE_BYTES``.
    """
    dtype = np.dtype(dtype)
    if batch_size == "auto":
        batch_size = _layer.auto_batch_size(layer.bytes_per_image(dtype.itemsize), CPU_WORKING_SET_BYTES)
    weights = layer.weights(dtype)
    kernels = compiled_kernels() if isinstance(weights, _layer.FoldedBank) else None
    n = images.shape[0]
    out = np.empty((n, layer.n_features_out), dtype=dtype)

    starts = iter(range(0, n, batch_size))
    lock = threading.Lock()

    def next_batch():
        with lock:  # a shared iterator: each thread takes the next batch when it is free
            return next(starts, None)

    def work():
        while (b := next_batch()) is not None:
            e = min(b + batch_size, n)
            out[b:e] = layer.forward(
                images[b:e], dtype=dtype, weights=weights, tile_bytes=CPU_TILE_BYTES, kernels=kernels
            )

    n_threads = min(cpu_threads(), -(-n // batch_size))
    # Our threads replace BLAS's: one BLAS thread each avoids oversubscription.
    with single_threaded_blas():
        if n_threads == 1:
            work()
        else:
            # Batch by batch, so no thread idles at the end while another still holds
            # a long run of batches (fixed runs of n/8 images cost ~10% of the wall time).
            list(_thread_pool(n_threads).map(lambda _: work(), range(n_threads)))
    return out
