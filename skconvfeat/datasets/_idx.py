"""Read IDX files (the MNIST format), gzipped or not."""

import gzip
import zlib

import numpy as np

from ._errors import corrupt_file

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


def read_idx(path):
    """Read an IDX file into an array of its stored shape.

    The header is two zero bytes, a type code, the number of dimensions and one
    big-endian uint32 per dimension; the data follows in C order.

    Parameters
    ----------
    path : path-like
        An IDX file; gzip-compressed if it starts with the gzip magic bytes.

    Returns
    -------
    array : ndarray
        In native byte order.

    Raises
    ------
    CorruptFileError
        On a bad magic number, a size that does not match the header, or a
        truncated or invalid gzip stream.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise corrupt_file(path, f"bad IDX magic number {raw[:4].hex() or 'none'}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise corrupt_file(path, "IDX header cut short")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise corrupt_file(
            path, f"header says {expected} bytes for shape {shape}, file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _read_bytes(path):
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: truncated stream; BadGzipFile (an OSError): bad header.
        raise corrupt_file(path, f"invalid gzip data: {exc}") from exc
