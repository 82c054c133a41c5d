"""Which devices exist and where arrays live: CuPy detection, device names, host memory.

Kept apart from the drivers (:mod:`skconvfeat._backend`) so that banks,
patches and input conversion can ask "is this a GPU array?" or "how much
memory is there?" without importing the driver package.
"""

import functools
import os
import warnings

import numpy as np

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


def physical_memory_bytes():
    """This machine's physical memory in bytes (1 TiB where the OS does not say).

    Used to refuse absurd sizes up front with the memory they would need,
    rather than failing deep inside NumPy or swapping.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return 1 << 40


def memory_text(nbytes):
    """``nbytes`` for a message: in GiB from 1 GiB on, else in MiB (so a small limit does not read "0.0 GiB")."""
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.1f} MiB"


def transform_device(requested, images, owner):
    """Where a fitted model computes ``images``: on the GPU for CuPy input, else the ``device`` parameter's choice.

    A model fitted on a GPU machine (``device="cuda"``) must still work where
    it is loaded: without a GPU it computes on the CPU, with a warning.
    """
    if is_device_array(images):
        return "cuda"
    if requested == "cuda" and not gpu_available():
        warnings.warn(
            f"This {owner} has device='cuda' but no usable GPU is present; "
            "transforming on the CPU. Call set_params(device='cpu') to silence this.",
            UserWarning,
        )
        return "cpu"
    return resolve_device(requested)
