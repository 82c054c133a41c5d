"""A NumPy-backed stand-in for the few CuPy APIs skconvfeat uses.

It lets CI (no GPU) run the GPU driver's own logic -- batching, the two-stream
staging pipeline, sizing batches from free memory, retrying after running out
of memory -- with NumPy doing the arithmetic. It says nothing about CuPy
itself: tests/test_gpu.py does that on a real device.
"""

import types

import numpy as np


class OutOfMemoryError(MemoryError):
    pass


class ndarray(np.ndarray):
    """A 'device' array: NumPy memory whose type lives in module 'cupy'."""

    __module__ = "cupy"

    def set(self, host, stream=None):
        self[...] = host

    def get(self, stream=None, out=None):
        host = self.view(np.ndarray)
        if out is None:
            return host.copy()
        out[...] = host
        return out


class FakeCupy(types.ModuleType):
    """Module 'cupy': NumPy functions whose array results are 'device' arrays.

    ``allocation_limit`` (elements) makes any larger result raise
    ``cuda.memory.OutOfMemoryError``, as a full device would.
    """

    def __init__(self, free_bytes=1 << 30, allocation_limit=None):
        super().__init__("cupy")
        self.allocation_limit = allocation_limit
        self.allocations = []  # sizes of results, to see the batches
        self.pool_frees = 0
        fake = self
        self.ndarray = ndarray
        self.lib = types.SimpleNamespace(
            stride_tricks=types.SimpleNamespace(sliding_window_view=self._wrap(np.lib.stride_tricks.sliding_window_view))
        )
        self.cuda = types.SimpleNamespace(
            Device=lambda: types.SimpleNamespace(mem_info=(free_bytes, 2 * free_bytes)),
            Stream=_Stream,
            alloc_pinned_memory=bytearray,
            memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        )
        self.get_default_memory_pool = lambda: types.SimpleNamespace(free_all_blocks=fake._free)

    def _free(self):
        self.pool_frees += 1

    def _wrap(self, func):
        def wrapped(*args, **kwargs):
            result = func(*args, **kwargs)
            if isinstance(result, np.ndarray):
                if self.allocation_limit is not None and result.size > self.allocation_limit:
                    raise OutOfMemoryError(f"fake device: {result.size} elements")
                self.allocations.append(result.size)
                return result.view(ndarray)
            return result

        return wrapped

    def __getattr__(self, name):
        value = getattr(np, name)
        return self._wrap(value) if callable(value) else value  # constants (cupy.inf) as they are


class _Stream:
    def __init__(self, non_blocking=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass
