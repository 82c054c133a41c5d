"""Read the CIFAR-10/100 python batches straight from their tar.gz, safely.

The batches are pickles (written by Python 2), and unpickling runs whatever
callables the pickle names. A downloaded or copied file is untrusted, so the
unpickler here follows only the one path by which a real batch rebuilds its
numpy array, and checks every step of it:

* ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")`` makes an
  empty array (never a larger one: a hostile shape would be allocated);
* ``numpy.dtype(name, align, copy)`` and its state: a plain number type only;
* the array's state ``(1, shape, dtype, fortran, raw bytes)``: the bytes, which
  come from the file, must be exactly ``prod(shape) * itemsize`` long, so an
  array never takes more memory than the file holds.

``numpy.ndarray`` itself cannot be called. Pickles written by Python 3 with
protocol 2 spell bytes as ``_codecs.encode(text, "latin1")`` and empty bytes as
``bytes()``: both are accepted, with those arguments only.
"""

import codecs
import io
import math
import pickle
from dataclasses import dataclass

import numpy as np

from ._archive import iter_archive_files
from ._errors import ForbiddenPickleError, check_labels, corrupt_file

_MAX_NDIM = 32  # numpy's own limit


class _NdarrayType:
    """What ``numpy.ndarray`` resolves to: only an argument of ``_reconstruct``, never called."""

    def __call__(self, *args):
        raise pickle.UnpicklingError("the pickle calls numpy.ndarray directly")


class _Dtype:
    """A number dtype being unpickled: ``numpy.dtype(name, align, copy)``, then its state."""

    def __init__(self, name, align=False, copy=True):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        self.dtype = np.dtype(name)
        if self.dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"array of dtype {name!r}, not of numbers")

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags):
        # a number type has no subarray, names or fields.
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[2:5] == (None,) * 3
                and state[1] in ("<", ">", "|", "=", b"<", b">", b"|", b"=")):
            raise pickle.UnpicklingError("a dtype state that is not a plain number type's")
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _CheckedArray(np.ndarray):
    """The empty array ``_reconstruct`` makes; its state is checked before numpy sets it."""

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("an array state that is not numpy's")
        version, shape, dtype, fortran, raw = state
        valid = (version == 1 and isinstance(dtype, _Dtype)
                 and isinstance(raw, bytes) and isinstance(shape, tuple)
                 and isinstance(fortran, int) and fortran in (0, 1)
                 and len(shape) <= _MAX_NDIM
                 and all(isinstance(n, int) and n >= 0 for n in shape))
        if not valid:
            raise pickle.UnpicklingError("an array state that is not numpy's")
        expected = math.prod(shape) * dtype.dtype.itemsize
        if len(raw) != expected:
            raise pickle.UnpicklingError(
                f"array of shape {shape} and dtype {dtype.dtype} needs {expected} bytes, "
                f"the file holds {len(raw)}"
            )
        super().__setstate__((version, shape, dtype.dtype, fortran, raw))


def _reconstruct(subtype, shape, typecode):
    if not isinstance(subtype, _NdarrayType) or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(
            "a _reconstruct call other than numpy's (ndarray, (0,), b'b'), which would "
            "allocate an array the file does not hold"
        )
    return _CheckedArray((0,), np.uint8)


def _latin1(text, encoding):
    if not (isinstance(text, str) and encoding == "latin1"):
        raise pickle.UnpicklingError("_codecs.encode with other arguments than a latin1 text")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NdarrayType(),
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
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
        resolved = _ALLOWED_GLOBALS.get((module, name))
        if resolved is None:
            raise ForbiddenPickleError(
                f"{self.source} asks to load the global {module}.{name}, which a CIFAR "
                "batch never needs; refusing to unpickle it (it could run arbitrary code)."
            )
        return resolved


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
    label_key: str
    names_key: str


CIFAR10_LAYOUT = CifarLayout(
    folder="cifar-10-batches-py",
    batches={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
)
CIFAR100_LAYOUT = CifarLayout(
    folder="cifar-100-python",
    batches={"train": ("train",), "test": ("test",)},
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
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

    meta = _load_dict(members.pop(meta_name), source(meta_name))
    try:
        target_names = np.array([_text(name) for name in meta[layout.names_key]])
    except (TypeError, KeyError, UnicodeDecodeError) as exc:
        raise corrupt_file(source(meta_name), f"no usable {layout.names_key!r}") from exc
    # Popped: each pickle's bytes are freed once its batch is parsed.
    batches = [_parse_batch(members.pop(name), layout, source(name), len(target_names))
               for name in names]
    images = np.concatenate([images for images, _ in batches])
    if len(images) == 0:
        raise corrupt_file(path, f"the {subset} batches hold no images")
    target = np.concatenate([target for _, target in batches])
    return images, target, target_names


def _text(value):
    """A key or label name: bytes from Python 2 pickles, str from Python 3 ones."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"a {type(value).__name__} is not text")


def _load_dict(data, source):
    """Unpickle a batch or meta file: a dict, its keys as str."""
    loaded = restricted_loads(data, source)
    try:
        return {_text(key): value for key, value in loaded.items()}
    except (AttributeError, TypeError, UnicodeDecodeError) as exc:
        raise corrupt_file(source, f"not a dict with text keys: {exc!r}") from exc


def _parse_batch(data, layout, source, n_classes):
    batch = _load_dict(data, source)
    try:
        pixels, labels = batch["data"], batch[layout.label_key]
    except (TypeError, KeyError) as exc:
        raise corrupt_file(source, f"not a CIFAR batch: {exc!r}") from exc
    target = check_labels(labels, source, n_classes)
    n = len(target)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != (n, 3072):
        raise corrupt_file(source, "data is not uint8 of shape (n_labels, 3072)")
    # Rows are 1024 red, then 1024 green, then 1024 blue values (CHW order).
    images = pixels.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), target
