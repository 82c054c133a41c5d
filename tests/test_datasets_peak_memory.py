"""Hostile files against the loaders' caps: peak resident memory stays under ``max_total_bytes``.

Each case builds a small file that declares (or decompresses to) far more than
the cap, loads it in a fresh interpreter under a cap (10 MiB unless said), and
reads the process's peak resident memory (``ru_maxrss``) before and after:
the load must fail with the library's error and add less than the cap, and a
load that fits the cap must stay under it.
"""

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib

import numpy as np
import pytest
from test_datasets import Calls, make_cifar, py2_pickle

resource = pytest.importorskip("resource")  # ru_maxrss: Unix only
Image = pytest.importorskip("PIL.Image")

CAP = 10 * 2**20
HOSTILE = 256 * 2**20  # what the hostile files declare: 25x the cap
MiB = 2**20


def _script(call):
    return textwrap.dedent(f"""
        import json, resource, sys
        import numpy, PIL.Image, scipy.io  # imported before the measure starts
        import skconvfeat.datasets as ds
        from skconvfeat.datasets._archive import iter_archive_files
        from skconvfeat.datasets._svhn import read_svhn_mat
        path = sys.argv[1]
        def peak():  # ru_maxrss is in bytes on macOS, kB elsewhere
            unit = 1 if sys.platform == "darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
        before, error = peak(), None
        try:
            {call}
        except Exception as exc:
            error = type(exc).__name__ + ": " + str(exc)
        print(json.dumps([error, peak() - before]))
    """)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_peak(call, path):
    """Run ``call`` (Python source using ``path``) in a fresh interpreter.

    Returns (the error as "Class: message", or None; peak RSS growth in bytes during the call).
    """
    result = subprocess.run(
        [sys.executable, "-c", _script(call), str(path)],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO},
    )
    error, growth = json.loads(result.stdout.splitlines()[-1])
    return error, growth


def zeros_gz(nbytes):
    """gzip members decompressing to ``nbytes`` zero bytes, in a few kB (concatenated members)."""
    one = gzip.compress(bytes(MiB), compresslevel=9)
    return one * (nbytes // MiB) + gzip.compress(bytes(nbytes % MiB))


def hostile_header_tar(path, kind):
    """A .tar.gz whose first member has a ``kind`` header of HOSTILE bytes before a real file."""
    header = tarfile.TarInfo("././@LongLink" if kind == "longname" else "././@PaxHeader")
    header.type = tarfile.GNUTYPE_LONGNAME if kind == "longname" else tarfile.XHDTYPE
    header.size = HOSTILE
    real = tarfile.TarInfo("cat/x.png")
    real.size = 0
    end = bytes(2 * 512)
    # GzipFile reads concatenated gzip members as one stream.
    path.write_bytes(gzip.compress(header.tobuf(format=tarfile.USTAR_FORMAT))
                     + zeros_gz(HOSTILE) + gzip.compress(real.tobuf() + end))
    assert path.stat().st_size < MiB
    return path


@pytest.mark.parametrize("kind", ["longname", "pax"])
def test_tar_header_bytes_are_bounded(kind, tmp_path):
    path = hostile_header_tar(tmp_path / "hostile.tar.gz", kind)
    error, growth = run_peak(f"list(iter_archive_files(path, max_total_bytes={CAP}))", path)
    assert growth < CAP, f"peak grew by {growth / MiB:.0f} MiB"
    assert error is not None and error.startswith("LimitExceededError")
    assert "hostile.tar.gz" in error and "header" in error


def test_cifar_array_beyond_the_file_is_never_allocated(tmp_path):
    n = HOSTILE // 3072
    batch = {"data": Calls(np.ndarray, (n, 3072), "u1"), "labels": [0] * n}
    make_cifar(tmp_path, np.random.default_rng(0),
               replace={"cifar-10-batches-py/test_batch": py2_pickle(batch)})
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    assert path.stat().st_size < MiB
    error, growth = run_peak(
        f"ds.fetch_cifar10(data_home=path.rsplit('/', 2)[0], subset='test', "
        f"max_total_bytes={CAP})", path)
    assert growth < CAP, f"peak grew by {growth / MiB:.0f} MiB"
    assert error is not None and error.startswith("CorruptFileError") and "test_batch" in error


def png_16_bit_folder(root, side):
    """Two black side x side 16-bit grey PNGs (a few kB each), in classes a and b."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint16)).save(buffer, "PNG")
    for name in "ab":
        (root / name).mkdir(parents=True)
        (root / name / "x.png").write_bytes(buffer.getvalue())
    return root


@pytest.mark.parametrize("grayscale, refused_mb, fits_mb", [(True, 40, 80), (False, 60, 190)])
def test_16_bit_pixels_are_counted_as_decoded(grayscale, refused_mb, fits_mb, tmp_path):
    # 2 x 3000^2 pixels of 2 bytes: caps that counted 2 bytes per pixel and the
    # output (36 + 18 MB as grey, 54 + 54 as RGB) let them through, to a peak of
    # 200 MiB; the decoding steps after the first one were not counted.
    root = png_16_bit_folder(tmp_path / "images", 3000)
    load = f"ds.load_image_folder(path, grayscale={grayscale}, max_total_bytes={{}})"
    cap = refused_mb * 10**6
    error, growth = run_peak(load.format(cap), root)
    assert growth < cap, f"peak grew by {growth / MiB:.0f} MiB"
    assert error is not None and error.startswith("LimitExceededError"), error
    assert "a/x.png" in error and f"max_total_bytes={cap}" in error
    # Under a cap that fits the bound, loading works and keeps the promise.
    cap = fits_mb * 10**6
    error, growth = run_peak(load.format(cap), root)
    assert growth < cap, f"peak grew by {growth / MiB:.0f} MiB, cap {cap / MiB:.0f} MiB"
    assert error is None


def mat_element(element, data, small=False):
    """One MAT 5 data element: tag then data, padded (small: packed in the tag)."""
    if small:
        return struct.pack("<HH", element, len(data)) + data.ljust(4, b"\0")
    return struct.pack("<II", element, len(data)) + data + bytes(-len(data) % 8)


def mat_matrix(name, matlab_class, shape, element, data):
    """The content of a miMATRIX element (after its tag)."""
    return (mat_element(6, struct.pack("<II", matlab_class, 0))
            + mat_element(5, struct.pack(f"<{len(shape)}i", *shape))
            + mat_element(1, name.encode(), small=True) + mat_element(element, data))


def hostile_svhn(path):
    """X's header says 32x32x3x1 uint8 (3 kB); its compressed data element holds HOSTILE bytes."""
    inner = mat_matrix("X", 9, (32, 32, 3, 1), 2, b"")[:-8]  # all but the data tag
    inner += struct.pack("<II", 2, HOSTILE)
    compressor = zlib.compressobj(9)
    body = compressor.compress(struct.pack("<II", 14, len(inner) + HOSTILE) + inner)
    body += b"".join(compressor.compress(bytes(MiB)) for _ in range(HOSTILE // MiB))
    body += compressor.flush()
    y = mat_matrix("y", 6, (1, 1), 9, struct.pack("<d", 1.0))
    header = b"MATLAB 5.0 MAT-file".ljust(116) + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    path.parent.mkdir(parents=True)
    path.write_bytes(header + struct.pack("<II", 15, len(body)) + body
                     + struct.pack("<II", 14, len(y)) + y)
    assert path.stat().st_size < MiB
    return path


def test_svhn_data_element_beyond_its_dimensions_is_never_read(tmp_path):
    path = hostile_svhn(tmp_path / "svhn" / "test_32x32.mat")
    error, growth = run_peak(f"read_svhn_mat(path, max_total_bytes={CAP})", path)
    assert growth < CAP, f"peak grew by {growth / MiB:.0f} MiB"
    assert error is not None and error.startswith("CorruptFileError"), error
    assert "test_32x32.mat" in error and "'X'" in error
