"""Named filter banks and their registry.

A bank is a pure function returning a float64 array of kernels shaped
``(n_filters, n_channels, kh, kw)``. The kernels are applied as
cross-correlations (the CNN convention, as in ``torch.nn.functional.conv2d``);
every built-in bank is point-symmetric or comes in sign pairs, so flipping
them would change nothing a classifier can see.

The registry follows timm: :func:`list_banks` names what exists,
:func:`make_bank` builds one by name with its parameters, and a typo gets an
error that lists the valid names and the closest one.

Data-derived banks (``"patches"``, ``"kmeans"``, ``"pca"``, or a user's bank
registered with ``needs_data=True``) receive a matrix of preprocessed patches
sampled from the training images; :class:`~skconvfeat.FixedConvTransformer`
samples and preprocesses them in ``fit`` (see :mod:`skconvfeat._patches`).
"""

import inspect
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from sklearn.utils import check_random_state

from ._device import memory_text, physical_memory_bytes
from ._hints import did_you_mean

__all__ = ["list_banks", "make_bank", "register_bank"]

_REGISTRY = {}


@dataclass(frozen=True)
class BankInfo:
    """What the transformer must know about a bank besides its function."""

    needs_data: bool  # the function's first argument is the patch matrix
    whiten: bool  # whether whiten="auto" whitens its patches (data-derived banks only)


_BANK_INFO = {}


def bank_info(name, carried=None):
    """The :class:`BankInfo` of a bank an estimator carries or the registry holds (plain banks registered by assignment need no data)."""
    if carried and name in carried:
        return carried[name].info
    return _BANK_INFO.get(name, BankInfo(needs_data=False, whiten=False))


def register_bank(name, *, needs_data=False, whiten=True):
    """Register ``func`` as the bank called ``name`` (a decorator).

    The function takes ``kernel_size`` (a ``(kh, kw)`` pair), ``n_channels``
    and, if it needs randomness, ``random_state``, plus its own keyword
    parameters, and returns an array ``(n_filters, n_channels, kh, kw)``.
    Registering a name that is already taken replaces that bank with a
    ``UserWarning``.

    With ``needs_data=True`` the bank is derived from data: its function
    takes the preprocessed patches as its first argument, ``patches``, an
    array ``(n_patches, n_channels, kh, kw)`` (float64), and returns kernels
    meant for patches preprocessed the same way. In
    :class:`~skconvfeat.FixedConvTransformer`, ``fit`` samples the patches
    from ``X`` (never from ``y``), normalises them per patch unless
    ``patch_norm=False``, and whitens them when ``whiten=True``, or when
    ``whiten="auto"`` and the bank was registered with ``whiten=True`` (the
    default here; ``"pca"`` is registered with ``whiten=False``).
    ``make_bank`` needs ``patches=`` for such a bank.

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

    A data-derived bank: the mean of the patches it is given.

    >>> @register_bank("mean-patch", needs_data=True)
    ... def mean_patch_bank(patches, kernel_size, n_channels):
    ...     return patches.mean(axis=0, keepdims=True)
    >>> patches = np.ones((10, 1, 3, 3))
    >>> make_bank("mean-patch", kernel_size=3, patches=patches).shape
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
        _BANK_INFO[name] = BankInfo(needs_data=bool(needs_data), whiten=bool(whiten))
        return func

    return decorator


def user_banks():
    """``{name: function}`` of the banks registered by the program rather than skconvfeat."""
    return {name: func for name, func in _REGISTRY.items() if _BUILTINS.get(name) is not func}


@dataclass(frozen=True)
class CarriedBank:
    """A bank that travelled inside a pickled estimator: its :class:`BankInfo` and its pickled function.

    The function stays pickled until a fit needs it, so loading a model never
    runs (or fails on) the code of a bank the model does not use.
    """

    info: BankInfo
    data: bytes

    def function(self):
        import pickle

        return pickle.loads(self.data)


def pack_banks(carried=None):
    """The program's banks, and those an estimator ``carried`` in, as picklable values.

    A bank registered at run time (in a notebook, a script's ``__main__`` or a
    function) is unknown in joblib/loky and Dask worker processes, which never
    ran the registration. cloudpickle (which joblib and Dask use) stores such
    functions by value, so any pickler can carry the bytes; a bank it cannot
    store is left out and the worker reports it as unknown. A carried bank
    wins over the registry's bank of the same name: the model keeps its own.
    """
    import cloudpickle

    packed = {}
    for name, func in user_banks().items():
        try:
            packed[name] = CarriedBank(bank_info(name), cloudpickle.dumps(func))
        except Exception:  # e.g. a closure over a lock: the worker will name the bank it lacks
            continue
    return {**packed, **(carried or {})}


def unpack_banks(packed):
    """The ``{name: CarriedBank}`` of an unpickled estimator; the process registry is left untouched.

    Loading a model must not change the process: registering its banks would
    replace a bank of the same name (even a built-in) for every other
    estimator. Pickles of 0.1.0 stored a bare pickled function per name.
    """
    return {
        name: value if isinstance(value, CarriedBank) else CarriedBank(BankInfo(needs_data=False, whiten=False), value)
        for name, value in packed.items()
    }


def list_banks():
    """Return the sorted names of the registered banks.

    Examples
    --------
    >>> from skconvfeat import list_banks
    >>> {"gabor", "gaussian", "identity", "random", "sharpen"} <= set(list_banks())
    True
    """
    return sorted(_REGISTRY)


def is_registered(name, carried=None):
    """Whether ``name`` is a bank an estimator carries or the registry holds."""
    return name in _REGISTRY or bool(carried) and name in carried


def unknown_bank_message(name, owner="make_bank", carried=None):
    """The error for a bank name that is not registered, with the closest known names."""
    names = sorted(set(_REGISTRY) | set(carried or ()))
    return (
        f"The 'bank' parameter of {owner} must be one of {set(names)} or an array of "
        f"kernels. Got {name!r} instead.{did_you_mean(name, names)}"
    )


def check_kernel_size(kernel_size, owner="make_bank"):
    """Return ``kernel_size`` as a ``(kh, kw)`` pair of positive ints."""
    pair = as_pair(kernel_size)
    if pair is None:
        raise ValueError(
            f"The 'kernel_size' parameter of {owner} must be a positive int or a pair "
            f"of positive ints (kh, kw). Got {kernel_size!r} instead."
        )
    return pair


def as_pair(value):
    """``value`` (an int or a pair of ints) as a ``(a, b)`` tuple, or None when it is neither."""
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


def make_bank(name, *, kernel_size=5, n_channels=1, random_state=None, patches=None, **params):
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
        Seed of the ``random`` bank and of the data-derived banks' choices;
        the other banks are deterministic.
    patches : ndarray of shape (n_patches, n_channels, kh, kw), default=None
        The (preprocessed) patches a data-derived bank is built from; required
        for those banks and refused by the others.
    **params
        The bank's own parameters (see each ``*_bank`` function).

    Returns
    -------
    filters : ndarray of shape (n_filters, n_channels, kh, kw), float64
        Always finite: a bank whose parameters give NaN or infinite kernels
        is an error naming the bank and the parameters.

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
    return make_bank_of(None, name, kernel_size=kernel_size, n_channels=n_channels, random_state=random_state,
                        patches=patches, params=params)


def make_bank_of(carried, name, *, kernel_size, n_channels, random_state, patches, params):
    """:func:`make_bank` looking ``name`` up in an estimator's ``carried`` banks first, then in the registry."""
    if not isinstance(name, str) or not is_registered(name, carried):
        raise ValueError(unknown_bank_message(name, carried=carried))
    if not isinstance(n_channels, numbers.Integral) or isinstance(n_channels, bool) or n_channels < 1:
        raise ValueError(
            f"The 'n_channels' parameter of make_bank must be a positive int. "
            f"Got {n_channels!r} instead."
        )
    kernel_size = check_kernel_size(kernel_size)
    func = carried[name].function() if carried and name in carried else _REGISTRY[name]
    accepted = inspect.signature(func).parameters
    reserved = {"kernel_size", "n_channels", "random_state", "patches"}
    unknown = sorted(set(params) - set(accepted) - reserved)
    if unknown:
        valid = sorted(set(accepted) - reserved)
        raise ValueError(
            f"The {name!r} bank got unexpected parameter(s) {unknown}; "
            f"its parameters are {valid}."
        )
    call = dict(params, kernel_size=kernel_size, n_channels=int(n_channels))
    if "random_state" in accepted:
        call["random_state"] = random_state
    if bank_info(name, carried).needs_data:
        call["patches"] = _check_patches(patches, name, kernel_size, int(n_channels))
    elif patches is not None:
        raise ValueError(
            f"The {name!r} bank is not derived from data, so make_bank takes no 'patches' for it."
        )
    filters = np.asarray(func(**call), dtype=np.float64)
    return _check_filters(filters, name, params, int(n_channels))


def _check_patches(patches, name, kernel_size, n_channels):
    if patches is None:
        raise ValueError(
            f"The {name!r} bank is derived from data: pass patches=, an array "
            f"(n_patches, {n_channels}, {kernel_size[0]}, {kernel_size[1]}) of preprocessed "
            "patches, or use it in FixedConvTransformer, whose fit samples and preprocesses "
            "them from X."
        )
    patches = np.asarray(patches, dtype=np.float64)
    expected = (n_channels, *kernel_size)
    if patches.ndim != 4 or patches.shape[1:] != expected or patches.shape[0] < 1:
        raise ValueError(
            f"The 'patches' of the {name!r} bank must be an array (n_patches, "
            f"{', '.join(map(str, expected))}) with at least one patch. Got shape {patches.shape}."
        )
    if not np.all(np.isfinite(patches)):
        raise ValueError(f"The 'patches' of the {name!r} bank contain NaN or infinity.")
    return patches


def _check_filters(filters, name, params, n_channels):
    """No bank may hand back NaN, infinite or misshapen kernels."""
    if filters.ndim != 4 or filters.shape[0] < 1 or filters.shape[1] != n_channels:
        raise ValueError(
            f"The {name!r} bank returned kernels of shape {filters.shape}; a bank must return "
            f"(n_filters >= 1, {n_channels}, kh, kw)."
        )
    if not np.all(np.isfinite(filters)):
        raise ValueError(
            f"The {name!r} bank gave non-finite (NaN or infinite) kernels with bank_params="
            f"{params!r}. Change those parameters (e.g. larger sigmas or lower frequencies)."
        )
    return filters


def check_bank_memory(n_filters, n_channels, kernel_size, bank, what):
    """Refuse a bank whose float64 kernels alone would take more than half this machine's memory.

    Half, not all: the layer needs room for the kernels' compute-dtype copy and
    its batches, and drawing such a bank alone would take minutes.
    """
    needed = float(n_filters) * n_channels * kernel_size[0] * kernel_size[1] * 8
    available = physical_memory_bytes()
    if needed > available / 2:
        raise ValueError(
            f"The {bank!r} bank would hold {n_filters:,} kernels ({what}), "
            f"{memory_text(needed)} of float64, more than half of this machine's "
            f"{memory_text(available)} of memory. Ask for fewer kernels."
        )


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
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be a non-empty sequence "
            f"of positive numbers. Got {values!r} instead."
        )
    return arr


def _check_finite_sequence(values, param, bank):
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be a non-empty sequence "
            f"of finite numbers. Got {values!r} instead."
        )
    return arr


def _check_count(value, param, bank):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be a positive int. "
            f"Got {value!r} instead."
        )
    return int(value)


def _check_bool(value, param, bank):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"The {param!r} parameter of the {bank!r} bank must be True or False. Got {value!r} instead."
        )
    return bool(value)


def _envelope(kernel_size, sigma):
    """``exp(-r^2 / (2 sigma^2))`` scaled so its peak is 1, finite for any sigma > 0.

    Dividing by the peak first (subtracting the smallest squared radius in the
    exponent) keeps even-sized kernels, whose pixels all lie at least half a
    pixel from the centre, from underflowing to all zeros when sigma is tiny:
    the limit is then the nearest pixels, equally weighted.
    """
    y, x = _grid(kernel_size)
    excess = x**2 + y**2
    excess = excess - excess.min()
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        scaled = np.where(excess == 0, 0.0, excess / (2 * sigma**2))
    return np.exp(-scaled)


def _gaussian_2d(kernel_size, sigma):
    g = _envelope(kernel_size, sigma)
    return g / g.sum()


@register_bank("gaussian")
def gaussian_bank(kernel_size, n_channels, sigmas=(0.5, 1.0, 2.0)):
    """Gaussian blurs, one per standard deviation in ``sigmas`` (pixels), each summing to 1.

    As sigma goes to 0 a blur tends to the average of the pixels nearest the
    centre (one for odd sizes, two or four for even ones), never to NaN.
    """
    sigmas = _check_positive_sequence(sigmas, "sigmas", "gaussian")
    kernels = np.stack([_gaussian_2d(kernel_size, s) for s in sigmas])
    return _replicate(kernels, n_channels)


# Gabor frequencies above half a cycle per pixel alias to lower ones (Nyquist).
_NYQUIST = 0.5


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

    ``frequencies`` are in cycles per pixel, in ``(0, 0.5]`` (beyond 0.5 a
    sampled cosine aliases); ``phases`` in radians, finite; the Gaussian
    envelope's sigma is ``bandwidth / frequency`` capped at a third of the
    kernel, so low frequencies still fit. Each kernel is made zero-mean (no
    response to flat regions, like V1 simple cells) and scaled to unit L2
    norm; a kernel that is zero after removing its mean (a 1x1 kernel, or an
    envelope narrower than a pixel on an even grid) stays zero.
    """
    n_orientations = _check_count(n_orientations, "n_orientations", "gabor")
    frequencies = _check_positive_sequence(frequencies, "frequencies", "gabor")
    if np.any(frequencies > _NYQUIST):
        raise ValueError(
            "The 'frequencies' parameter of the 'gabor' bank must be in (0, 0.5] cycles per "
            f"pixel (higher ones alias). Got {list(frequencies)!r} instead."
        )
    bandwidth = _check_positive_sequence(bandwidth, "bandwidth", "gabor")
    if bandwidth.size != 1:
        raise ValueError(f"The 'bandwidth' parameter of the 'gabor' bank must be one positive number. Got {bandwidth!r}.")
    bandwidth = bandwidth[0]
    phases = _check_finite_sequence(phases, "phases", "gabor")
    n_filters = n_orientations * frequencies.size * phases.size
    check_bank_memory(n_filters, n_channels, kernel_size, "gabor", "n_orientations x frequencies x phases")
    y, x = _grid(kernel_size)
    max_sigma = max(min(kernel_size) / 3, 0.5)
    kernels = []
    for theta in np.arange(n_orientations) * np.pi / n_orientations:
        rotated = x * np.cos(theta) + y * np.sin(theta)
        for freq in frequencies:
            envelope = _envelope(kernel_size, min(bandwidth / freq, max_sigma))
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
    sigma = _check_positive_sequence(sigma, "sigma", "sharpen")
    if sigma.size != 1:
        raise ValueError(f"The 'sigma' parameter of the 'sharpen' bank must be one positive number. Got {sigma!r}.")
    delta = np.zeros(kernel_size)
    delta[(kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2] = 1.0
    detail = delta - _gaussian_2d(kernel_size, sigma[0])
    kernels = np.stack([delta + a * detail for a in strengths])
    return _replicate(kernels, n_channels)


@register_bank("random")
def random_bank(kernel_size, n_channels, n_filters=16, zero_mean=True, random_state=None):
    """``n_filters`` Gaussian random kernels, each zero-mean (optional) and of unit L2 norm.

    The same ``random_state`` always gives the same bank.
    """
    n_filters = _check_count(n_filters, "n_filters", "random")
    zero_mean = _check_bool(zero_mean, "zero_mean", "random")
    check_bank_memory(n_filters, n_channels, kernel_size, "random", "n_filters")
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


# -- data-derived banks: built in fit from preprocessed patches of X ---------

# Patches whose L2 norm is below this fraction of the largest are flat (zero
# after normalisation or whitening, up to rounding) and carry no direction for
# a unit-norm dictionary; also the norm below which a sum of unit patches has
# cancelled out.
_FLAT_PATCH_NORM = 1e-8
# Rows of the patch matrix per assignment step of k-means: bounds the
# (rows, n_filters) similarity block (4096 x 4000 float32 = 64 MiB).
_KMEANS_CHUNK = 4096


def _non_flat_rows(patches, n_filters, bank, unit):
    """The non-flat patches as rows (scaled to unit norm if ``unit``) and their distinct ones.

    Raises when there are fewer distinct rows than ``n_filters``: k-means and
    the patch dictionary would repeat kernels.
    """
    rows = patches.reshape(patches.shape[0], -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    keep = norms[:, 0] > _FLAT_PATCH_NORM * norms.max(initial=0.0)
    rows = rows[keep] / norms[keep] if unit else rows[keep]
    distinct = np.unique(rows, axis=0)
    if n_filters > distinct.shape[0]:
        raise ValueError(
            f"The 'n_filters' parameter of the {bank!r} bank is {n_filters}, but the sampled "
            f"patches hold only {distinct.shape[0]} distinct non-flat patch(es)"
            f"{' up to scale' if unit else ''} (of {patches.shape[0]} sampled). Ask for fewer "
            "filters, raise n_patches, or give more varied images (constant images have no "
            "non-flat patches)."
        )
    return rows, distinct


@register_bank("patches", needs_data=True)
def patches_bank(patches, kernel_size, n_channels, n_filters=256, random_state=None):
    """``n_filters`` distinct preprocessed (by default whitened) patches, picked at random, of unit L2 norm.

    The dictionary of Thiry et al. (2021): the kernels are the patches
    themselves, so a response is the similarity of a position's patch to each.
    """
    n_filters = _check_count(n_filters, "n_filters", "patches")
    check_bank_memory(n_filters, n_channels, kernel_size, "patches", "n_filters")
    _, distinct = _non_flat_rows(patches, n_filters, "patches", unit=True)
    picked = distinct[check_random_state(random_state).choice(distinct.shape[0], n_filters, replace=False)]
    return picked.reshape(n_filters, *patches.shape[1:])


@register_bank("kmeans", needs_data=True)
def kmeans_bank(patches, kernel_size, n_channels, n_filters=256, max_iter=10, spherical=True, random_state=None):
    """``n_filters`` k-means centroids of the preprocessed (by default whitened) patches.

    ``spherical=True`` (Coates & Ng 2012): patches and centroids are scaled to
    unit norm, each patch goes to the centroid of largest dot product, and
    each centroid is the renormalised mean of its patches. ``spherical=False``:
    Lloyd's k-means with Euclidean distances (Coates, Lee & Ng 2011).
    ``max_iter`` full passes over the patches; both start from distinct
    patches picked at random, and a centroid left without patches restarts
    at a random patch.

    Why not scikit-learn's ``KMeans``/``MiniBatchKMeans``: they minimise
    Euclidean distance to unnormalised centroids, so feeding unit-norm
    patches and renormalising only at the end is not spherical k-means
    (assignments depend on each centroid's shrinking norm), and their
    k-means++ start costs about ``2 + log(n_filters)`` extra passes at
    thousands of filters. The loop here is a few GEMMs per pass, in float32
    for the assignments and chunked to bound memory.
    """
    n_filters = _check_count(n_filters, "n_filters", "kmeans")
    max_iter = _check_count(max_iter, "max_iter", "kmeans")
    spherical = _check_bool(spherical, "spherical", "kmeans")
    check_bank_memory(n_filters, n_channels, kernel_size, "kmeans", "n_filters")
    rows, distinct = _non_flat_rows(patches, n_filters, "kmeans", unit=spherical)
    rng = check_random_state(random_state)
    centroids = distinct[rng.choice(distinct.shape[0], n_filters, replace=False)]
    rows32 = rows.astype(np.float32)
    for _ in range(max_iter):
        labels = _assign(rows32, centroids.astype(np.float32), spherical)
        counts = np.bincount(labels, minlength=n_filters)
        members = scipy.sparse.csr_matrix(
            (np.ones(labels.size), (labels, np.arange(labels.size))), shape=(n_filters, labels.size)
        )
        sums = members @ rows
        # A centroid with no patches, or (spherical) whose unit patches cancel out, restarts at a random patch.
        lost = counts == 0
        if spherical:
            lost |= np.linalg.norm(sums, axis=1) <= _FLAT_PATCH_NORM
        sums[lost] = rows[rng.randint(rows.shape[0], size=int(lost.sum()))]
        counts[lost] = 1
        centroids = sums / counts[:, None]
        if spherical:
            centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids.reshape(n_filters, *patches.shape[1:])


def _assign(rows, centroids, spherical):
    """Index of each row's centroid: largest dot product (spherical) or nearest (Euclidean)."""
    half_norms = 0.0 if spherical else 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    labels = np.empty(rows.shape[0], dtype=np.intp)
    for start in range(0, rows.shape[0], _KMEANS_CHUNK):
        # argmax of x.c - |c|^2/2 is argmin of |x - c|^2 (|x|^2 is the same for every c).
        scores = rows[start : start + _KMEANS_CHUNK] @ centroids.T - half_norms
        labels[start : start + _KMEANS_CHUNK] = scores.argmax(axis=1)
    return labels


@register_bank("pca", needs_data=True, whiten=False)
def pca_bank(patches, kernel_size, n_channels, n_filters=8):
    """The ``n_filters`` leading principal components of the preprocessed patches (PCANet).

    Unit-norm, ordered by decreasing variance, each signed so that its
    largest-magnitude entry is positive (a deterministic choice). Registered
    with ``whiten=False``: whitening makes every variance nearly equal, so
    the order of the components would be noise.
    """
    n_filters = _check_count(n_filters, "n_filters", "pca")
    rows = patches.reshape(patches.shape[0], -1)
    centred = rows - rows.mean(axis=0)
    variances, components = np.linalg.eigh(centred.T @ centred / rows.shape[0])
    order = np.argsort(variances)[::-1]
    variances, components = variances[order], components[:, order].T
    # Directions whose variance is rounding noise are not principal components.
    rank = int(np.sum(variances > variances[0] * rows.shape[1] * np.finfo(float).eps)) if variances[0] > 0 else 0
    if n_filters > rank:
        raise ValueError(
            f"The 'n_filters' parameter of the 'pca' bank is {n_filters}, but the sampled patches "
            f"vary in only {rank} direction(s) (a {'x'.join(map(str, patches.shape[1:]))} patch has "
            f"{rows.shape[1]} values). Ask for at most {rank} filters, a larger kernel_size, "
            "or more varied images."
        )
    top = components[:n_filters]
    signs = np.sign(top[np.arange(n_filters), np.abs(top).argmax(axis=1)])
    return (top * signs[:, None]).reshape(n_filters, *patches.shape[1:])


# The banks above; anything else in the registry came from the program.
_BUILTINS = dict(_REGISTRY)
