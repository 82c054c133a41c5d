"""Read the SVHN cropped-digits ``.mat`` files."""

import numpy as np

from ._errors import corrupt_file


def read_svhn_mat(path):
    """Read ``train_32x32.mat`` or ``test_32x32.mat``.

    The file holds ``X``, uint8 of shape (32, 32, 3, n), and ``y`` of shape
    (n, 1) with labels 1..10, where 10 stands for the digit 0.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), uint8
    target : ndarray of shape (n,), int64, digits 0..9
    """
    # Imported here: scipy.io is slow to import and only SVHN needs it.
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise corrupt_file(path, f"cannot read it as a .mat file: {exc}") from exc
    X, y = mat.get("X"), mat.get("y")
    if X is None or y is None:
        raise corrupt_file(path, "variables 'X' and 'y' not found")
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.dtype != np.uint8:
        raise corrupt_file(path, f"'X' has shape {X.shape} and dtype {X.dtype}")
    labels = np.asarray(y).ravel()
    if labels.shape != (X.shape[3],) or labels.size and not (
        labels.min() >= 1 and labels.max() <= 10
    ):
        raise corrupt_file(path, "'y' does not hold one label in 1..10 per image")
    images = np.ascontiguousarray(X.transpose(3, 0, 1, 2))
    return images, (labels % 10).astype(np.int64)
