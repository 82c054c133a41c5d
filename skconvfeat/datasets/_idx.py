"""Read IDX files (the MNIST format), gzipped or not, within a bound on bytes."""

import gzip
import math
import zlib

import numpy as np

from ._errors import corrupt_file, too_large

# Third byte of the magic number -> big-endian element type.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, *, max_total_bytes):
    """Read an IDX file into an array of its stored shape.

    The header is two zero bytes, a type code, the number of dimensions and one
    big-endian uint32 per dimension; the data follows in C order. The size the
    header announces is checked against ``max_total_bytes`` before the data is
    read, and a gzip stream is never decompressed beyond it.

    Parameters
    ----------
    path : path-like
        An IDX file; gzip-compressed if it starts with the gzip magic bytes.
    max_total_bytes : int
        Refuse files whose data would take more bytes.

    Returns
    -------
    array : ndarray
        In native byte order.

    Raises
    ------
    CorruptFileError
        On a bad magic number, a size that does not match the header, or a
        truncated or invalid gzip stream.
    LimitExceededError
        If the header announces more than ``max_total_bytes`` bytes.
    """
    with _open(path) as file:
        try:
            return _read(file, path, max_total_bytes)
        except (EOFError, OSError, zlib.error) as exc:
            # EOFError: truncated stream; BadGzipFile (an OSError): bad header.
            raise corrupt_file(path, f"invalid gzip data: {exc}") from exc


def _open(path):
    with open(path, "rb") as file:
        compressed = file.read(2) == _GZIP_MAGIC
    # GzipFile decompresses as it is read (and reads concatenated members).
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _read(file, path, max_total_bytes):
    magic = file.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_DTYPES:
        raise corrupt_file(path, f"bad IDX magic number {magic.hex() or 'none'}")
    dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
    dims = file.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise corrupt_file(path, "IDX header cut short")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    # Python ints: the product of uint32 dimensions can overflow int64.
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_total_bytes:
        raise too_large(path, nbytes, max_total_bytes, what=f"hold (shape {shape})")
    data = file.read(nbytes)
    if len(data) != nbytes or file.read(1):
        found = "fewer" if len(data) != nbytes else "more"
        raise corrupt_file(
            path, f"header says {4 + 4 * ndim + nbytes} bytes for shape {shape}, file has {found}"
        )
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))
