"""Exceptions and argument checks shared by the dataset loaders."""

import pickle

import numpy as np


class CorruptFileError(ValueError):
    """A dataset file exists but cannot be parsed (corrupt, truncated, wrong format)."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that could escape or abuse the reader."""


class LimitExceededError(ValueError):
    """Reading a file would take more members or bytes than the caller allowed."""


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the short allow-list of the format."""


class DownloadError(OSError):
    """A file could not be downloaded (network or HTTP error, truncated transfer)."""


class ChecksumMismatchError(DownloadError):
    """A complete download does not have the published checksum."""


def corrupt_file(path, reason):
    """Build the error raised for a file that cannot be parsed.

    The message names the file and says how to recover, because the usual cause
    is an interrupted copy or a file replaced by something else.
    """
    return CorruptFileError(
        f"{path} is corrupt, truncated or not in the expected format ({reason}). "
        "Delete it and fetch the dataset again."
    )


def too_large(source, nbytes, max_total_bytes, what="decode into"):
    """Build the error raised when ``source`` needs more than ``max_total_bytes``.

    Raised from headers, before the bytes are allocated; the message gives both
    ways out, since a header claiming too much may just be damaged.
    """
    return LimitExceededError(
        f"{source} would {what} {nbytes} bytes, more than max_total_bytes={max_total_bytes}; "
        "pass a larger max_total_bytes if you trust it (if it should be smaller, it is "
        "corrupt: delete it and fetch it again)."
    )


def check_labels(labels, source, n_classes, first=0):
    """Return ``labels - first`` as int64 after checking them; raise naming ``source``.

    Labels must be a one-dimensional array of integers from ``first`` to
    ``first + n_classes - 1``. Floats are accepted when integral (MATLAB files
    store doubles); NaN, fractions, strings, booleans and out-of-range values
    are refused, since casting them would give silently wrong targets.

    Examples
    --------
    >>> check_labels([1, 10, 2], "y.mat", n_classes=10, first=1)
    array([0, 9, 1])
    >>> check_labels([0.0, 2.5], "labels.idx", n_classes=10)
    Traceback (most recent call last):
    ...
    skconvfeat.datasets._errors.CorruptFileError: labels.idx is corrupt, ... (label 2.5 is not an integer). Delete it ...
    """
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise corrupt_file(source, f"labels are not an array: {exc}") from exc
    if labels.ndim != 1:
        raise corrupt_file(source, f"labels must be one-dimensional, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        fractional = ~np.isfinite(labels) | (labels != np.round(labels))
        if fractional.any():
            raise corrupt_file(source, f"label {labels[fractional][0]} is not an integer")
    elif labels.dtype.kind not in "iu":
        raise corrupt_file(
            source, f"labels must be integers, not {labels.dtype.name} such as {labels[:3]}"
        )
    last = first + n_classes - 1
    outside = (labels < first) | (labels > last)
    if outside.any():
        raise corrupt_file(
            source, f"label {labels[outside][0]:g} is outside {first}..{last} "
            f"({n_classes} classes)"
        )
    return labels.astype(np.int64) - first


def check_choice(value, *, param, func, choices):
    """Raise a scikit-learn style ValueError unless ``value`` is in ``choices``.

    Examples
    --------
    >>> check_choice("tset", param="subset", func="fetch_mnist",
    ...              choices=("train", "test"))
    Traceback (most recent call last):
    ...
    ValueError: The 'subset' parameter of fetch_mnist must be one of {'train', 'test'}. Got 'tset' instead.
    """
    # `in` on a tuple of str would compare unhashable values fine, but a list or
    # an array as `value` should get the same message, not a TypeError.
    if not isinstance(value, str) or value not in choices:
        expected = "{" + ", ".join(repr(choice) for choice in choices) + "}"
        raise ValueError(
            f"The {param!r} parameter of {func} must be one of {expected}. "
            f"Got {value!r} instead."
        )
