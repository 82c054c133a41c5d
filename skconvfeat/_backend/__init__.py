"""The one place that picks the array backend: NumPy on the CPU, CuPy on a GPU.

The layer itself (:mod:`skconvfeat._layer`) is written once against an array
namespace ``xp``; this module decides which one, and moves arrays between
host and device.
"""

import functools
import os

import numpy as np
from threadpoolctl import ThreadpoolController

DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def _cupy():
    """The ``cupy`` module when it imports and sees a CUDA device, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # ImportError, CUDA driver/runtime errors: all mean "no GPU".
        return None


def gpu_available():
    """Whether CuPy imports and a CUDA device is usable."""
    return _cupy() is not None


def resolve_device(device):
    """Map the ``device`` parameter to ``"cpu"`` or ``"cuda"``.

    ``"auto"`` never fails; ``"cuda"`` without a usable GPU raises.
    """
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    if device == "cuda" and not gpu_available():
        raise RuntimeError(
            "device='cuda' was requested but no usable GPU was found: CuPy is not "
            "installed or sees no CUDA device. Install the GPU extra "
            "(pip install 'skconvfeat[gpu]') on a machine with a GPU, or use "
            "device='cpu' or device='auto'."
        )
    return device


def namespace(device):
    """The array module for a resolved device."""
    return _cupy() if device == "cuda" else np


def is_device_array(x):
    """Whether ``x`` is a CuPy array (without importing CuPy when it is absent)."""
    return type(x).__module__.startswith("cupy")


def to_numpy(x):
    """Bring an array back to host memory."""
    return x.get() if is_device_array(x) else np.asarray(x)


@functools.cache
def blas_controller():
    """threadpoolctl's handle on the BLAS libraries NumPy loaded.

    Scanning the loaded libraries costs about a millisecond, as much as
    transforming all of digits, so it is done once per process; NumPy's BLAS
    is loaded before this module and does not change.
    """
    return ThreadpoolController().select(user_api="blas")


def physical_memory_bytes():
    """This machine's physical memory in bytes (1 TiB where the OS does not say).

    Used to refuse absurd sizes up front with the memory they would need,
    rather than failing deep inside NumPy or swapping.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return 1 << 40


def cpu_threads():
    """Threads the CPU path may use: the BLAS pool size in force here.

    Following the BLAS limit means ``OMP_NUM_THREADS``, ``threadpoolctl``
    contexts and joblib's per-worker limits (e.g. inside ``GridSearchCV(n_jobs=2)``)
    are all respected without a setting of our own.
    """
    blas = [info["num_threads"] for info in blas_controller().info()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(blas + [cores or 1]))
