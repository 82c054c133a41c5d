"""Property-based tests of every loader on generated, often broken, files (hypothesis).

The property, for any file: the loader returns images of the documented shape
and dtype with every label in ``0..len(target_names) - 1``, or raises a
ValueError (CorruptFileError, LimitExceededError, ...) or FileNotFoundError
whose message names the file. Examples are few and small so that the whole
module stays within a few seconds of CI.
"""

import gzip
import math
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_datasets import py2_pickle, write_tar_gz

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import skconvfeat.datasets as ds  # noqa: E402
from skconvfeat.datasets._fetchers import _IDX_NAMES  # noqa: E402
from skconvfeat.datasets._idx import _IDX_DTYPES  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
MAX_BYTES = 1 << 20  # keeps a header claiming huge dimensions from allocating


def assert_valid(result, n_channels=None):
    """The documented shape of a loader's Bunch, and labels within the class names."""
    n = len(result.images)
    assert n > 0 and result.images.dtype == np.uint8
    assert result.data.shape == (n, math.prod(result.images.shape[1:]))
    if n_channels is not None:
        assert result.images.shape[3:] == ((n_channels,) if n_channels > 1 else ())
    assert result.target.shape == (n,) and result.target.dtype == np.int64
    assert 0 <= result.target.min() and result.target.max() < len(result.target_names)


def load_or_error(load, *files):
    """``load()``, or the error it raised, which must name one of ``files``."""
    try:
        result = load()
    except (ValueError, TypeError, FileNotFoundError, pickle.UnpicklingError) as exc:
        assert any(str(file) in str(exc) for file in files), exc
        hypothesis.event(f"refused: {type(exc).__name__}")
        return None
    hypothesis.event("loaded")  # --hypothesis-show-statistics: both outcomes occur
    return result


# --- IDX ---------------------------------------------------------------------------------

label_values = st.one_of(st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def idx_file(draw, n):
    """An IDX file of ``n`` items, sometimes with another type, shape or size."""
    type_code = draw(st.sampled_from([0x08] * 4 + [0x09, 0x0B, 0x0D, 0x0E, 0x07]))
    shape = draw(st.sampled_from([(n,)] * 4 + [(n, 3, 4), (n, 2), (), (2**32 - 1, 2**32 - 1)]))
    dtype = _IDX_DTYPES.get(type_code, np.dtype("u1"))
    count = min(math.prod(shape), 64)  # too few for a huge shape: a truncated file
    values = draw(st.lists(st.one_of(st.integers(0, 9), label_values),
                           min_size=count, max_size=count))
    with np.errstate(invalid="ignore", over="ignore"):
        data = np.array(values, dtype=np.float64).astype(dtype).tobytes()
    cut, extra = (draw(st.sampled_from([0, 0, 0, 1])) for _ in range(2))
    data = data[: len(data) - cut] + b"\0" * extra
    raw = bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data
    return gzip.compress(raw) if draw(st.booleans()) else raw


@FUZZ
@given(data=st.data(), n=st.integers(0, 4))
def test_fuzz_idx(data, n):
    images = np.arange(n * 12, dtype=np.uint8).reshape(n, 3, 4)
    image_raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 3, 4) + images.tobytes()
    image_raw = data.draw(st.sampled_from([image_raw, image_raw, image_raw[:-1], b"\0\0\x08"]))
    with tempfile.TemporaryDirectory() as home:
        folder = Path(home) / "mnist"
        folder.mkdir()
        image_path, label_path = (folder / name for name in _IDX_NAMES["test"])
        image_path.write_bytes(gzip.compress(image_raw))
        label_path.write_bytes(data.draw(idx_file(n)))
        result = load_or_error(lambda: ds.fetch_mnist(
            data_home=home, subset="test", max_total_bytes=MAX_BYTES), image_path, label_path)
        if result is not None:
            assert_valid(result)
            np.testing.assert_array_equal(result.images, images)


# --- CIFAR ----------------------------------------------------------------------------------

anything = st.one_of(st.none(), st.integers(-2, 12), st.floats(), st.text(st.characters(max_codepoint=255), max_size=3),
                     st.binary(max_size=3), st.booleans())


@FUZZ
@given(data=st.data(), n_rows=st.integers(0, 4), dtype=st.sampled_from(["u1"] * 3 + ["i2", "f8"]),
       names=st.sampled_from([[f"c{i}" for i in range(10)]] * 3 + [["a"], [], [1, 2]]))
def test_fuzz_cifar(data, n_rows, dtype, names):
    labels = data.draw(st.one_of(
        st.lists(st.integers(0, 9), min_size=n_rows, max_size=n_rows),
        st.lists(st.one_of(st.integers(0, 9), anything), min_size=n_rows, max_size=n_rows),
        st.lists(anything, max_size=4), anything))
    pixels = np.zeros((n_rows, 3072), dtype=dtype)
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "cifar10" / "cifar-10-python.tar.gz"
        path.parent.mkdir()
        write_tar_gz(path, {
            "cifar-10-batches-py/test_batch": py2_pickle({"data": pixels, "labels": labels}),
            "cifar-10-batches-py/batches.meta": py2_pickle({"label_names": names}),
        })
        result = load_or_error(lambda: ds.fetch_cifar10(data_home=home, subset="test"), path)
        if result is not None:
            assert_valid(result, n_channels=3)


# --- SVHN -----------------------------------------------------------------------------------


@FUZZ
@given(shape=st.sampled_from([(32, 32, 3, 2), (32, 32, 3, 0), (32, 32, 2), (16, 32, 3, 2)]),
       dtype=st.sampled_from(["u1", "u1", "f8"]),
       labels=st.one_of(st.lists(label_values, max_size=3), st.lists(st.integers(1, 10),
                                                                     min_size=2, max_size=2)))
def test_fuzz_svhn(shape, dtype, labels):
    from scipy.io import savemat

    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "svhn" / "test_32x32.mat"
        path.parent.mkdir()
        savemat(path, {"X": np.zeros(shape, dtype), "y": np.array(labels, dtype=float)})
        result = load_or_error(lambda: ds.fetch_svhn(data_home=home, subset="test"), path)
        if result is not None:
            assert_valid(result, n_channels=3)


# --- image folders ----------------------------------------------------------------------------

Image = pytest.importorskip("PIL.Image")

_MODES = {  # Pillow mode -> how to draw its pixels
    "L": ("u1", ()), "RGB": ("u1", (3,)), "RGBA": ("u1", (4,)), "LA": ("u1", (2,)),
    "1": ("?", ()), "I;16": ("<u2", ()), "P": ("u1", ()),
}


@st.composite
def image_file(draw):
    mode = draw(st.sampled_from(sorted(_MODES)))
    dtype, channels = _MODES[mode]
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pixels = np.frombuffer(draw(st.binary(min_size=64 * height * width,
                                          max_size=64 * height * width)), np.uint8)
    array = pixels[: height * width * math.prod(channels) * np.dtype(dtype).itemsize]
    array = array.view(dtype).reshape(height, width, *channels)
    image = Image.fromarray(array)
    image = image.convert("P") if mode == "P" else image
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=draw(st.sampled_from(["PNG", "PNG", "JPEG"]))
               if mode in ("L", "RGB") else "PNG")
    blob = buffer.getvalue()
    return blob[: draw(st.sampled_from([len(blob), len(blob), len(blob) // 2]))]


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["a/1.png", "a/2.jpg", "b/3.png", "b/4.PNG",
                                             "c/d/4.png"]),
                             image_file(), min_size=1, max_size=3),
       image_size=st.sampled_from([None, 3, 3, (2, 5)]), grayscale=st.booleans())
def test_fuzz_image_folder(files, image_size, grayscale):
    with tempfile.TemporaryDirectory() as home:
        root = Path(home) / "images"
        for name, blob in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)
        result = load_or_error(lambda: ds.load_image_folder(
            root, image_size=image_size, grayscale=grayscale, max_total_bytes=MAX_BYTES), root)
        if result is not None:
            assert_valid(result, n_channels=1 if grayscale else 3)
