"""Read the SVHN cropped-digits ``.mat`` files."""

import math

import numpy as np

from ._errors import check_labels, corrupt_file, too_large

_VARIABLES = ("X", "y")


def read_svhn_mat(path, *, max_total_bytes):
    """Read ``train_32x32.mat`` or ``test_32x32.mat``.

    The file holds ``X``, uint8 of shape (32, 32, 3, n), and ``y`` of shape
    (n, 1) with labels 1..10, where 10 stands for the digit 0. The sizes of
    both are read from the file's headers and checked against
    ``max_total_bytes`` before anything is loaded.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), uint8
    target : ndarray of shape (n,), int64, digits 0..9
    """
    # Imported here: scipy.io is slow to import and only SVHN needs it.
    from scipy.io import loadmat, whosmat

    _check_size(path, _read_mat(whosmat, path), max_total_bytes)
    mat = _read_mat(loadmat, path, variable_names=list(_VARIABLES))
    X, y = mat.get("X"), mat.get("y")
    if X is None or y is None:
        raise corrupt_file(path, "variables 'X' and 'y' not found")
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.dtype != np.uint8:
        raise corrupt_file(path, f"'X' has shape {X.shape} and dtype {X.dtype}")
    if X.shape[3] == 0:
        raise corrupt_file(path, "it holds no images")
    if y.dtype.kind not in "iuf" or y.size != X.shape[3]:
        raise corrupt_file(path, f"'y' ({y.dtype}, shape {y.shape}) is not one number per image")
    labels = check_labels(y.ravel(), path, n_classes=10, first=1)
    images = np.ascontiguousarray(X.transpose(3, 0, 1, 2))
    return images, (labels + 1) % 10


def _read_mat(function, path, **kwargs):
    """``function(path, **kwargs)``, with a damaged file reported as such."""
    from scipy.io.matlab import MatReadError

    try:
        return function(path, **kwargs)
    except FileNotFoundError:
        raise
    except (MatReadError, ValueError, TypeError, OSError, EOFError) as exc:
        raise corrupt_file(path, f"cannot read it as a .mat file: {exc}") from exc


def _check_size(path, variables, max_total_bytes):
    """Refuse the file if ``X`` and ``y`` would take more than ``max_total_bytes``."""
    nbytes = 0
    for name, shape, matlab_class in variables:
        if name in _VARIABLES:
            nbytes += math.prod(shape) * _itemsize(matlab_class)
    if nbytes > max_total_bytes:
        raise too_large(path, nbytes, max_total_bytes, what="load 'X' and 'y' into")


def _itemsize(matlab_class):
    # The MATLAB class names of numeric arrays are numpy's names (uint8,
    # double, ...); others (char, cell, struct) are counted at 8 bytes an element.
    try:
        return np.dtype(matlab_class).itemsize
    except TypeError:
        return 8
