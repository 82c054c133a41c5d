"""Exceptions and argument checks shared by the dataset loaders."""

import pickle


class CorruptFileError(ValueError):
    """A dataset file exists but cannot be parsed (corrupt, truncated, wrong format)."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that could escape or abuse the reader."""


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
