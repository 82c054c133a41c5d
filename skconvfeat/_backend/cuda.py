"""Drive the layer on a CUDA GPU with CuPy.

The layer is the same code as on the CPU (:mod:`skconvfeat._layer` with
``xp=cupy``); this module only moves data. For host input, batches travel in
their original dtype (uint8 images are 4x smaller than float32) through pinned
staging buffers on two streams, so the copy of batch ``i+1`` overlaps the
compute of batch ``i`` and only pooled features come back.
"""

import numpy as np

from .._device import is_device_array, namespace

# Fraction of the free device memory one batch's scratch may use; two batches
# are in flight (one per stream), and the memory pool needs slack.
_FREE_MEMORY_FRACTION = 0.25
_N_STREAMS = 2


def run(layer, images, *, dtype, batch_size):
    """Features of ``images`` ``(n, h, w, c)`` (NumPy or CuPy) through the fitted ``layer`` on the GPU.

    ``batch_size`` is images per batch or ``"auto"``: sized from the free
    device memory. Returns a CuPy array for CuPy input and a NumPy array for
    NumPy input. When the device runs out of memory the batch is halved and
    retried; at one image per batch a ``MemoryError`` names ``batch_size``.
    """
    cp = namespace("cuda")
    dtype = np.dtype(dtype)
    weights = layer.weights(dtype, cp)
    n_out = layer.n_features_out
    if batch_size == "auto":
        free, _ = cp.cuda.Device().mem_info
        batch_size = max(1, int(free * _FREE_MEMORY_FRACTION // layer.bytes_per_image(dtype.itemsize)))
    batch_size = min(batch_size, images.shape[0])

    def compute(x):
        return layer.forward(x, dtype=dtype, xp=cp, weights=weights)

    while True:
        try:
            if is_device_array(images):
                return _on_device(images, compute, n_out, dtype, batch_size, cp)
            return _from_host(images, compute, n_out, dtype, batch_size, cp)
        except cp.cuda.memory.OutOfMemoryError:
            cp.get_default_memory_pool().free_all_blocks()
            if batch_size == 1:
                raise MemoryError(
                    "The GPU ran out of memory even with batch_size=1. Free device memory "
                    "or use device='cpu'."
                ) from None
            batch_size = max(1, batch_size // 2)


def _on_device(images, compute, n_out, dtype, batch_size, cp):
    out = cp.empty((images.shape[0], n_out), dtype=dtype)
    for start in range(0, images.shape[0], batch_size):
        out[start : start + batch_size] = compute(images[start : start + batch_size])
    return out


def _pinned(shape, dtype, cp):
    count = int(np.prod(shape))
    memory = cp.cuda.alloc_pinned_memory(count * np.dtype(dtype).itemsize)
    return np.frombuffer(memory, dtype, count).reshape(shape)


def _from_host(images, compute, n_out, dtype, batch_size, cp):
    """Double-buffered host -> device -> host pipeline over ``_N_STREAMS`` streams."""
    n = images.shape[0]
    out = np.empty((n, n_out), dtype=dtype)
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(_N_STREAMS)]
    stage_in = [_pinned((batch_size, *images.shape[1:]), images.dtype, cp) for _ in streams]
    stage_out = [_pinned((batch_size, n_out), dtype, cp) for _ in streams]
    pending = [None] * _N_STREAMS  # (start, stop) whose result sits in stage_out[slot]

    def drain(slot):
        if pending[slot] is not None:
            streams[slot].synchronize()
            start, stop = pending[slot]
            out[start:stop] = stage_out[slot][: stop - start]
            pending[slot] = None

    for i, start in enumerate(range(0, n, batch_size)):
        slot = i % _N_STREAMS
        drain(slot)  # its buffers are free once the batch two steps back is home
        stop = min(start + batch_size, n)
        host_in = stage_in[slot][: stop - start]
        host_in[...] = images[start:stop]
        with streams[slot]:
            device_in = cp.empty(host_in.shape, host_in.dtype)
            device_in.set(host_in, stream=streams[slot])
            features = compute(device_in)
            features.get(stream=streams[slot], out=stage_out[slot][: stop - start])
        pending[slot] = (start, stop)
    for slot in range(_N_STREAMS):
        drain(slot)
    return out
