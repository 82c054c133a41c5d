"""Read the CIFAR-10/100 python batches straight from their tar.gz, safely.

The batches are pickles (written by Python 2), and unpickling runs whatever
callables the pickle names. A downloaded or copied file is untrusted, so the
unpickler here only resolves the few globals that a pickled numpy array needs
and refuses everything else.
"""

import io
import pickle
from dataclasses import dataclass

import numpy as np

from ._archive import iter_archive_files
from ._errors import ForbiddenPickleError, check_labels, corrupt_file


def _reconstruct():
    # numpy 2 moved the private module; pickles may name either location.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle dicts of arrays, lists and bytes, and nothing that can run code.

    Parameters
    ----------
    file : binary file
    source : str
        Named in error messages.
    """

    def __init__(self, file, *, source):
        # Python 2 ``str`` values (keys, label names, raw array data) stay bytes.
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise ForbiddenPickleError(
                f"{self.source} asks to load the global {module}.{name}, which a CIFAR "
                "batch never needs; refusing to unpickle it (it could run arbitrary code)."
            )
        return resolve()


def restricted_loads(data, source):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    ForbiddenPickleError
        If the pickle names a global outside the allow-list.
    CorruptFileError
        If it is not a valid pickle.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except ForbiddenPickleError:
        raise
    except Exception as exc:  # a damaged pickle can fail in many ways
        raise corrupt_file(source, f"invalid pickle: {exc!r}") from exc


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR archive keeps its batches and which keys they use."""

    folder: str
    batches: dict
    meta: str
    label_key: bytes
    names_key: bytes


CIFAR10_LAYOUT = CifarLayout(
    folder="cifar-10-batches-py",
    batches={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
)
CIFAR100_LAYOUT = CifarLayout(
    folder="cifar-100-python",
    batches={"train": ("train",), "test": ("test",)},
    meta="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
)


def read_cifar_archive(path, layout, subset, *, max_total_bytes):
    """Read one subset of a CIFAR python-batches tar.gz without extracting it.

    Labels are checked against the class names of the archive's meta file.
    ``max_total_bytes`` bounds the archive's uncompressed members, which is
    about what the unpickled batches take.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), uint8
    target : ndarray of shape (n,), int64
    target_names : ndarray of str
    """
    names = [f"{layout.folder}/{name}" for name in layout.batches[subset]]
    meta_name = f"{layout.folder}/{layout.meta}"
    wanted = set(names) | {meta_name}
    members = dict(iter_archive_files(path, wanted=wanted.__contains__,
                                      max_total_bytes=max_total_bytes))
    missing = sorted(wanted - members.keys())
    if missing:
        raise corrupt_file(path, f"members {missing} not found")

    def source(name):
        return f"{path} (member {name})"

    meta = restricted_loads(members[meta_name], source(meta_name))
    try:
        target_names = np.array([name.decode() for name in meta[layout.names_key]])
    except (TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise corrupt_file(source(meta_name), f"no usable {layout.names_key!r}") from exc
    batches = [_parse_batch(members[name], layout, source(name), len(target_names))
               for name in names]
    images = np.concatenate([images for images, _ in batches])
    if len(images) == 0:
        raise corrupt_file(path, f"the {subset} batches hold no images")
    target = np.concatenate([target for _, target in batches])
    return images, target, target_names


def _parse_batch(data, layout, source, n_classes):
    batch = restricted_loads(data, source)
    try:
        pixels, labels = batch[b"data"], batch[layout.label_key]
    except (TypeError, KeyError) as exc:
        raise corrupt_file(source, f"not a CIFAR batch: {exc!r}") from exc
    target = check_labels(labels, source, n_classes)
    n = len(target)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != (n, 3072):
        raise corrupt_file(source, "data is not uint8 of shape (n_labels, 3072)")
    # Rows are 1024 red, then 1024 green, then 1024 blue values (CHW order).
    images = pixels.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), target
