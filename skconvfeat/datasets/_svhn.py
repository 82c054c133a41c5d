"""Read the SVHN cropped-digits ``.mat`` files.

Before scipy reads anything, the file's data elements are walked here (MAT 5
format: a 128-byte header, then one tagged element per variable, possibly
zlib-compressed): every variable's dimensions and name are checked to be of a
sane size, and the data element of ``X`` and ``y`` to hold exactly what their
dimensions say. scipy allocates each element at the size its tag declares, so
a tag claiming 1 GiB in a file whose header says 3 kB is refused here instead.
"""

import math
import struct
import zlib

import numpy as np

from ._errors import check_labels, corrupt_file, too_large

_VARIABLES = ("X", "y")
_HEADER_BYTES = 128
_MI_MATRIX, _MI_COMPRESSED, _MI_INT8, _MI_INT32, _MI_UINT32 = 14, 15, 1, 5, 6
# Element types of numeric data -> their numpy type (miUTF* hold text).
_ELEMENT_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
                   12: "i8", 13: "u8"}
# MATLAB classes of numeric arrays (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15).
_CLASS_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
                 14: "i8", 15: "u8"}
_COMPLEX_FLAG = 0x800
_MAX_DIMS = 32
_MAX_NAME_BYTES = 4096  # MATLAB names have at most 63 characters


def read_svhn_mat(path, *, max_total_bytes):
    """Read ``train_32x32.mat`` or ``test_32x32.mat``.

    The file holds ``X``, uint8 of shape (32, 32, 3, n), and ``y`` of shape
    (n, 1) with labels 1..10, where 10 stands for the digit 0. What loading
    both takes (their data as stored, as converted to their class, and the
    arrays returned) is counted from the file's tags and checked against
    ``max_total_bytes`` before anything is loaded.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), uint8
    target : ndarray of shape (n,), int64, digits 0..9
    """
    # Imported here: scipy.io is slow to import and only SVHN needs it.
    from scipy.io import loadmat

    nbytes = _bytes_to_load(path)
    if nbytes > max_total_bytes:
        raise too_large(path, nbytes, max_total_bytes, what="load 'X' and 'y' into")
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


def _bytes_to_load(path):
    """Walk the elements of a MAT 5 file; return the bytes loading ``X`` and ``y`` takes.

    Raises CorruptFileError for a file that is not MAT 5, an element that
    overruns the file, oversized dimensions or names, and an ``X`` or ``y``
    that is not a real numeric array whose data element matches its dimensions.
    """
    with open(path, "rb") as file:
        header = file.read(_HEADER_BYTES)
        indicator = header[126:128]
        if len(header) < _HEADER_BYTES or indicator not in (b"IM", b"MI"):
            raise corrupt_file(path, "not a MAT 5 file (no MAT 5 header)")
        order = "<" if indicator == b"IM" else ">"
        if struct.unpack(order + "H", header[124:126])[0] != 0x0100:
            raise corrupt_file(path, "not a MAT 5 file (MATLAB 7.3 files are HDF5)")
        file_size = file.seek(0, 2)
        position, nbytes = _HEADER_BYTES, 0
        while position < file_size:
            file.seek(position)
            element, size, _ = _read_tag(file, order, path)
            position = file.tell() + size
            if position > file_size:
                raise corrupt_file(path, f"an element of {size} bytes runs past the end")
            # The next element starts right after this one, as scipy reads it.
            stream = _Inflated(file, size, path) if element == _MI_COMPRESSED else file
            if element == _MI_COMPRESSED:
                element = _read_tag(stream, order, path)[0]
            if element != _MI_MATRIX:
                raise corrupt_file(path, f"a top-level element of type {element}, not a matrix")
            nbytes += _matrix_bytes(stream, order, path)
    return nbytes


def _read_tag(stream, order, path):
    """Read a data element's tag; return (type, byte count, bytes its data takes).

    A small element packs its count in the tag's upper 16 bits and its data in
    the tag's last 4 bytes; other elements' data is padded to 8 bytes.
    """
    tag = stream.read(8)
    if len(tag) < 8:
        raise corrupt_file(path, "a data element is cut short")
    element, size = struct.unpack(order + "II", tag)
    if element >> 16:
        stream.seek(-4, 1)
        return element & 0xFFFF, element >> 16, 4
    return element, size, size + -size % 8


def _read_data(stream, tag, limit, what, path):
    """Read the data of the element of ``tag``, refusing more than ``limit`` bytes."""
    _, size, padded = tag
    if size > limit:
        raise corrupt_file(path, f"{what} of {size} bytes")
    data = stream.read(padded)
    if len(data) < size:
        raise corrupt_file(path, f"{what} cut short")
    return data[:size]


def _matrix_bytes(stream, order, path):
    """Check one variable's matrix headers; return the bytes loading it takes (0 unless X, y)."""
    tag = _read_tag(stream, order, path)
    flags = _read_data(stream, tag, 8, "array flags", path)
    if tag[:2] != (_MI_UINT32, 8):
        raise corrupt_file(path, "a matrix without array flags")
    flags = struct.unpack(order + "II", flags)[0]
    tag = _read_tag(stream, order, path)
    dims = _read_data(stream, tag, 4 * _MAX_DIMS, "dimensions", path)
    if tag[0] != _MI_INT32 or len(dims) % 4:
        raise corrupt_file(path, "a matrix without dimensions")
    shape = struct.unpack(f"{order}{len(dims) // 4}i", dims)
    tag = _read_tag(stream, order, path)
    name = _read_data(stream, tag, _MAX_NAME_BYTES, "a variable name", path).decode("latin-1")
    if name not in _VARIABLES:
        return 0  # skipped by loadmat, which reads only X and y
    matlab_class = _CLASS_DTYPES.get(flags & 0xFF)
    if matlab_class is None or flags & _COMPLEX_FLAG or min(shape, default=-1) < 0:
        raise corrupt_file(path, f"{name!r} is not a real numeric array")
    element, size, _ = _read_tag(stream, order, path)
    stored = _ELEMENT_DTYPES.get(element)
    count = math.prod(shape)
    if stored is None or size != count * np.dtype(stored).itemsize:
        raise corrupt_file(
            path, f"the data of {name!r} ({size} bytes of type {element}) does not match its "
            f"shape {shape}"
        )
    converted = 0 if stored == matlab_class else count * np.dtype(matlab_class).itemsize
    # Returned: X as a transposed uint8 copy; y as int64 labels, twice (check, shift).
    returned = count if name == "X" else 2 * 8 * count
    return size + converted + returned


class _Inflated:
    """The start of a zlib-compressed element, decompressed only as far as it is read."""

    def __init__(self, file, size, path):
        self.file = file
        self.left = size
        self.path = path
        self.inflater = zlib.decompressobj()
        self.buffer = b""
        self.offset = 0

    def read(self, n):
        while len(self.buffer) - self.offset < n and (self.left or self.inflater.unconsumed_tail):
            chunk = self.inflater.unconsumed_tail or self.file.read(min(self.left, 2**16))
            if not self.inflater.unconsumed_tail:
                self.left -= len(chunk)
            try:
                # max_length: a zlib bomb is never inflated beyond what is asked.
                self.buffer = self.buffer[self.offset:] + self.inflater.decompress(chunk, n)
            except zlib.error as exc:
                raise corrupt_file(self.path, f"invalid compressed data: {exc}") from exc
            self.offset = 0
        data = self.buffer[self.offset:self.offset + n]
        self.offset += len(data)
        return data

    def seek(self, offset, whence):
        """Step back within what was read (whence=1 and offset <= 0 only)."""
        self.offset += offset
