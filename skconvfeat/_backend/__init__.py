"""The one place that picks the array backend: NumPy on the CPU, CuPy on a GPU.

The layer itself (:mod:`skconvfeat._layer`) is written once against an array
namespace ``xp``; this module decides which one, and moves arrays between
host and device.
"""

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


class _SingleThreadedBLAS:
    """Holds BLAS at one thread while any transform runs, then restores the limit exactly.

    A limiter per call (save, lower, restore) races when calls overlap: a call
    that starts while another has lowered the limit saves 1, and if it ends
    last it "restores" 1 for good. Here only the first call to enter saves and
    lowers, and only the last to leave restores. Both happen on one thread of
    our own because threadpoolctl (>= 3.6 for OpenBLAS's shared pool) lets only
    the thread that set a limit change it again: a restore from another thread
    would be silently ignored. When some other thread holds that control (a
    user's ``threadpool_limits`` block), our lowering is ignored too and the
    limit is left exactly as it was.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._control = None  # the one thread that lowers and restores
        self.saved_threads = None  # the BLAS thread counts in force before the first call entered

    def _on_control_thread(self, func, *args, **kwargs):
        if self._control is None:
            self._control = ThreadPoolExecutor(1, thread_name_prefix="skconvfeat-blas")
        return self._control.submit(func, *args, **kwargs).result()

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._depth == 0:
                controller = blas_controller()
                self.saved_threads = [info["num_threads"] for info in controller.info()]
                self._limiter = self._on_control_thread(controller.limit, limits=1)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._on_control_thread(self._limiter.restore_original_limits)
                    self._limiter = self.saved_threads = None


single_threaded_blas = _SingleThreadedBLAS()
# A forked child has none of the parent's transforms running, nor its control thread.
os.register_at_fork(after_in_child=single_threaded_blas.__init__)


def cpu_threads():
    """Threads the CPU path may use: the BLAS pool size in force here.

    Following the BLAS limit means ``OMP_NUM_THREADS``, ``threadpoolctl``
    contexts and joblib's per-worker limits (e.g. inside ``GridSearchCV(n_jobs=2)``)
    are all respected without a setting of our own.
    """
    # While another transform holds BLAS at one thread, the limit in force is the one it saved.
    blas = single_threaded_blas.saved_threads or [info["num_threads"] for info in blas_controller().info()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(blas + [cores or 1]))
