"""The drivers that run a fitted layer over a dataset: one contract, ``run(layer, images, *, device, dtype, batch_size)``.

The layer itself (:mod:`skconvfeat._layer`) is written once against an array
namespace ``xp``; :mod:`.cpu` drives it over CPU threads and :mod:`.cuda`
over GPU streams, each with the same signature and its own automatic batch
size. Which device exists is :mod:`skconvfeat._device`'s business; this
package also holds the CPU thread policy (BLAS limits) the drivers share.
"""

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

def run(layer, images, *, device, dtype, batch_size):
    """Features of ``images`` ``(n, h, w, c)`` through the fitted ``layer`` on ``device`` ("cpu" or "cuda").

    ``batch_size`` is images per batch or ``"auto"``, which each driver sizes
    for its own memory: CPU caches or free device memory.
    """
    if device == "cuda":
        from . import cuda as driver
    else:
        from . import cpu as driver
    return driver.run(layer, images, dtype=dtype, batch_size=batch_size)


@functools.cache
def blas_controller():
    """threadpoolctl's handle on the BLAS libraries NumPy loaded.

    Scanning the loaded libraries costs about a millisecond, as much as
    transforming all of digits, so it is done once per process; NumPy's BLAS
    is loaded before this module and does not change.
    """
    return ThreadpoolController().select(user_api="blas")


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
    limit is left exactly as it was. The limiter is entered and exited as a
    context on that thread, which hands the control back when the last call
    leaves: a bare ``restore_original_limits`` keeps it for the thread's life,
    and every later ``threadpool_limits`` of any other thread, the user's
    included, would be silently ignored.
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
                self._limiter = self._on_control_thread(lambda: controller.limit(limits=1).__enter__())
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._on_control_thread(self._limiter.__exit__, None, None, None)
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
