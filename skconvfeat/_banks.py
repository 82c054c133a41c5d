"""Named filter banks and their registry.

A bank is a pure function returning a float64 array of kernels shaped
``(n_filters, n_channels, kh, kw)``. The kernels are applied as
cross-correlations (the CNN convention, as in ``torch.nn.functional.conv2d``);
every built-in bank is point-symmetric or comes in sign pairs, so flipping
them would change nothing a classifier can see.

The registry follows timm: :func:`list_banks` names what exists,
:func:`make_bank` builds one by name with its parameters, and a typo gets an
error that lists the valid names and the closest one.
"""

import inspect
import numbers
import warnings

import numpy as np
from sklearn.utils import check_random_state

from ._hints import did_you_mean

__all__ = ["list_banks", "make_bank", "register_bank"]

_REGISTRY = {}


def register_bank(name):
    """Register ``func`` as the bank called ``name`` (a decorator).

    The function takes ``kernel_size`` (a ``(kh, kw)`` pair), ``n_channels``
    and, if it needs randomness, ``random_state``, plus its own keyword
    parameters, and returns an array ``(n_filters, n_channels, kh, kw)``.
    Registering a name that is already taken replaces that bank with a
    ``UserWarning``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconvfeat import register_bank, make_bank
    >>> @register_bank("box")
    ... def box_bank(kernel_size, n_channels):
    ...     kh, kw = kernel_size
    ...     return np.full((1, n_channels, kh, kw), 1.0 / (kh * kw * n_channels))
    >>> make_bank("box", kernel_size=3).shape
    (1, 1, 3, 3)
    """

    def decorator(func):
        if name in _REGISTRY and _REGISTRY[name] is not func:
            # As timm's registry: replacing a bank silently would change every
            # estimator that names it, so say so (re-running a cell is common).
            warnings.warn(
                f"register_bank: the bank {name!r} is already registered "
                f"({_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}); "
                f"replacing it with {func.__module__}.{func.__qualname__}.",
                UserWarning,
                stacklevel=2,
            )
        _REGISTRY[name] = func
        return func

    return decorator


def user_banks():
    """``{name: function}`` of the banks registered by the program rather than skconvfeat."""
    return {name: func for name, func in _REGISTRY.items() if _BUILTINS.get(name) is not func}


def pack_user_banks():
    """The program's banks as bytes that travel inside a pickled estimator.

    A bank registered at run time (in a notebook, a script's ``__main__`` or a
    function) is unknown in joblib/loky and Dask worker processes, which never
    ran the registration. cloudpickle (which joblib and Dask use) stores such functions by
    value, so any pickler can carry the bytes; a bank it cannot store is left
    out and the worker reports it as unknown.
    """
    import cloudpickle

    packed = {}
    for name, func in user_banks().items():
        try:
            packed[name] = cloudpickle.dumps(func)
        except Exception:  # e.g. a closure over a lock: the worker will name the bank it lacks
            continue
    return packed


def unpack_user_banks(packed):
    """Register the banks that travelled with an unpickled estimator.

    A name this process does not know is registered; a known name with the
    same function (same qualified name and code) is left alone; a different
    function under a known name replaces it with a warning, as
    :func:`register_bank` does, so a worker follows the caller's latest version.
    """
    import pickle

    for name, data in packed.items():
        func = pickle.loads(data)
        known = _REGISTRY.get(name)
        if known is None:
            _REGISTRY[name] = func
        elif not _same_function(known, func):
            register_bank(name)(func)


def _same_function(a, b):
    return (a.__module__, a.__qualname__, getattr(a, "__code__", None)) == (
        b.__module__,
        b.__qualname__,
        getattr(b, "__code__", None),
    )


def list_banks():
    """Return the sorted names of the registered banks.

    Examples
    --------
    >>> from skconvfeat import list_banks
    >>> {"gabor", "gaussian", "identity", "random", "sharpen"} <= set(list_banks())
    True
    """
    return sorted(_REGISTRY)


def _unknown_bank_message(name, owner="make_bank"):
    names = list_banks()
    return (
        f"The 'bank' parameter of {owner} must be one of {set(names)} or an array of "
        f"kernels. Got {name!r} instead.{did_you_mean(name, names)}"
    )


def check_kernel_size(kernel_size, owner="make_bank"):
    """Return ``kernel_size`` as a ``(kh, kw)`` pair of positive ints."""
    pair = _as_pair(kernel_size)
    if pair is None:
        raise ValueError(
            f"The 'kernel_size' parameter of {owner} must be a positive int or a pair "
            f"of positive ints (kh, kw). Got {kernel_size!r} instead."
        )
    return pair


def _as_pair(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
        and all(v >= 1 for v in value)
    ):
        return int(value[0]), int(value[1])
    return None


def make_bank(name, *, kernel_size=5, n_channels=1, random_state=None, **params):
    """Build the registered bank ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_banks`.
    kernel_size : int or (int, int), default=5
        Kernel height and width in pixels. The ``identity`` bank ignores it
        (its kernels are 1x1, so raw pixels keep every position).
    n_channels : int, default=1
        Input channels each kernel spans.
    random_state : int, RandomState instance or None, default=None
        Seed of the ``random`` bank; the other banks are deterministic.
    **params
        The bank's own parameters (see each ``*_bank`` function).

    Returns
    -------
    filters : ndarray of shape (n_filters, n_channels, kh, kw), float64

    Examples
    --------
    >>> from skconvfeat import make_bank
    >>> make_bank("gabor", kernel_size=7, n_orientations=4).shape
    (16, 1, 7, 7)
    >>> make_bank("gabr")
    Traceback (most recent call last):
    ...
    ValueError: The 'bank' parameter of make_bank must be one of ... Did you mean 'gabor'?
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(_unknown_bank_message(name))
    if not isinstance(n_channels, numbers.Integral) or n_channels < 1:
        raise ValueError(
            f"The 'n_channels' parameter of make_bank must be a positive int. "
            f"Got {n_channels!r} instead."
        )
    func = _REGISTRY[name]
    accepted = inspect.signature(func).parameters
    unknown = sorted(set(params) - set(accepted) - {"kernel_size", "n_channels"})
    if unknown:
        valid = sorted(set(accepted) - {"kernel_size", "n_channels", "random_state"})
        raise ValueError(
            f"The {name!r} bank got unexpected parameter(s) {unknown}; "
            f"its parameters are {valid}."
        )
    if "random_state" in accepted:
        params["random_state"] = random_state
    filters = func(
        kernel_size=check_kernel_size(kernel_size), n_channels=int(n_channels), **params
    )
    return np.asarray(filters, dtype=np.float64)


def _grid(kernel_size):
    """Pixel offsets from the kernel centre, shape (kh, kw) each."""
    kh, kw = kernel_size
    y = np.arange(kh) - (kh - 1) / 2
    x = np.arange(kw) - (kw - 1) / 2
    return np.meshgrid(y, x, indexing="ij")


def _replicate(kernels, n_channels):
    """Spread 2-D kernels ``(n, kh, kw)`` evenly over ``n_channels``.

    Dividing by the channel count makes a summed-over-channels response the
    kernel applied to the channel mean, so a blur stays a blur on colour.
    """
    stacked = np.repeat(kernels[:, None], n_channels, axis=1)
    return stacked / n_channels


def _check_positive_sequence(values, param, bank):
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be a non-empty sequence "
            f"of positive numbers. Got {values!r} instead."
        )
    return arr


def _check_count(value, param, bank):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be a positive int. "
            f"Got {value!r} instead."
        )
    return int(value)


def _gaussian_2d(kernel_size, sigma):
    y, x = _grid(kernel_size)
    g = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return g / g.sum()


@register_bank("gaussian")
def gaussian_bank(kernel_size, n_channels, sigmas=(0.5, 1.0, 2.0)):
    """Gaussian blurs, one per standard deviation in ``sigmas`` (pixels), each summing to 1."""
    sigmas = _check_positive_sequence(sigmas, "sigmas", "gaussian")
    kernels = np.stack([_gaussian_2d(kernel_size, s) for s in sigmas])
    return _replicate(kernels, n_channels)


@register_bank("gabor")
def gabor_bank(
    kernel_size,
    n_channels,
    n_orientations=4,
    frequencies=(0.15, 0.3),
    phases=(0.0, np.pi / 2),
    bandwidth=1.0,
):
    """Gabor filters: ``n_orientations`` x ``frequencies`` x ``phases``.

    ``frequencies`` are in cycles per pixel; the Gaussian envelope's sigma is
    ``bandwidth / frequency`` capped at a third of the kernel, so low
    frequencies still fit. Each kernel is made zero-mean (no response to flat
    regions, like V1 simple cells) and scaled to unit L2 norm.
    """
    n_orientations = _check_count(n_orientations, "n_orientations", "gabor")
    frequencies = _check_positive_sequence(frequencies, "frequencies", "gabor")
    bandwidth = _check_positive_sequence(bandwidth, "bandwidth", "gabor")[0]
    phases = np.atleast_1d(np.asarray(phases, dtype=float))
    y, x = _grid(kernel_size)
    max_sigma = max(min(kernel_size) / 3, 0.5)
    kernels = []
    for theta in np.arange(n_orientations) * np.pi / n_orientations:
        rotated = x * np.cos(theta) + y * np.sin(theta)
        for freq in frequencies:
            sigma = min(bandwidth / freq, max_sigma)
            envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
            for phase in phases:
                k = envelope * np.cos(2 * np.pi * freq * rotated + phase)
                k -= k.mean()
                kernels.append(_unit_norm(k))
    return _replicate(np.stack(kernels), n_channels)


def _unit_norm(kernel):
    norm = np.linalg.norm(kernel)
    # A 1x1 zero-mean kernel is all zeros: leave it rather than divide by 0.
    return kernel / norm if norm > 0 else kernel


@register_bank("sharpen")
def sharpen_bank(kernel_size, n_channels, strengths=(0.5, 1.0, 2.0), sigma=1.0):
    """Unsharp masks ``delta + strength * (delta - gaussian(sigma))``, one per strength."""
    strengths = _check_positive_sequence(strengths, "strengths", "sharpen")
    sigma = _check_positive_sequence(sigma, "sigma", "sharpen")[0]
    delta = np.zeros(kernel_size)
    delta[(kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2] = 1.0
    detail = delta - _gaussian_2d(kernel_size, sigma)
    kernels = np.stack([delta + a * detail for a in strengths])
    return _replicate(kernels, n_channels)


@register_bank("random")
def random_bank(kernel_size, n_channels, n_filters=16, zero_mean=True, random_state=None):
    """``n_filters`` Gaussian random kernels, each zero-mean (optional) and of unit L2 norm.

    The same ``random_state`` always gives the same bank.
    """
    n_filters = _check_count(n_filters, "n_filters", "random")
    rng = check_random_state(random_state)
    kernels = rng.standard_normal((n_filters, n_channels, *kernel_size))
    if zero_mean and kernels[0].size > 1:
        kernels -= kernels.mean(axis=(1, 2, 3), keepdims=True)
    norms = np.linalg.norm(kernels.reshape(n_filters, -1), axis=1)
    return kernels / norms[:, None, None, None]


@register_bank("identity")
def identity_bank(kernel_size, n_channels):
    """One 1x1 kernel per channel that copies it: raw pixels through the same pooling.

    This is the "fully-connected layer on the image" baseline; ``kernel_size``
    is ignored so no border pixel is lost.
    """
    return np.eye(n_channels).reshape(n_channels, n_channels, 1, 1)


# The banks above; anything else in the registry came from the program.
_BUILTINS = dict(_REGISTRY)
