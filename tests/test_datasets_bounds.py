"""Nothing silently wrong, nothing unbounded: labels, pixels and sizes of every loader.

Each test writes a small damaged or hostile file and asserts a clear error naming
the file (and the parameter to raise, for a bound), or a correct result.
"""

import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest
from test_datasets import make_cifar, py2_pickle, write_idx, write_idx_dataset, write_svhn

import skconvfeat.datasets as ds
from skconvfeat.datasets._errors import CorruptFileError, LimitExceededError

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- IDX (MNIST and friends) ---------------------------------------------------------


def idx_bytes(array, type_code=0x08):
    """An IDX file of ``array`` stored as ``type_code`` (see _idx._IDX_DTYPES)."""
    from skconvfeat.datasets._idx import _IDX_DTYPES

    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, dtype=_IDX_DTYPES[type_code]).tobytes()


def write_mnist_labels(tmp_path, rng, labels_raw, n=4):
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, "test", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                      np.zeros(n, np.uint8))
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(labels_raw))
    return path


@pytest.mark.parametrize("labels, type_code, why", [
    (np.array([0, 1, 10, 2]), 0x08, "10"),           # beyond the 10 class names
    (np.array([0, -1, 3, 2]), 0x09, "-1"),           # negative
    (np.array([0, 1.5, 3, 2]), 0x0D, "1.5"),         # fractional
    (np.array([0, np.nan, 3, 2]), 0x0E, "nan"),      # NaN
])
def test_idx_labels_out_of_range_or_not_integers(labels, type_code, why, tmp_path, rng):
    path = write_mnist_labels(tmp_path, rng, idx_bytes(labels, type_code))
    with pytest.raises(CorruptFileError) as excinfo:
        ds.fetch_mnist(data_home=tmp_path, subset="test")
    message = str(excinfo.value)
    assert str(path) in message and why in message and "Delete it" in message


def test_idx_zero_dimensional_labels(tmp_path, rng):
    path = write_mnist_labels(tmp_path, rng, bytes([0, 0, 8, 0, 7]))
    with pytest.raises(CorruptFileError, match="t10k-labels-idx1-ubyte.gz"):
        ds.fetch_mnist(data_home=tmp_path, subset="test")
    assert path.exists()


def test_idx_zero_images(tmp_path):
    write_idx_dataset(tmp_path / "mnist", "test", np.zeros((0, 28, 28), np.uint8),
                      np.zeros(0, np.uint8))
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte.gz.*no image"):
        ds.fetch_mnist(data_home=tmp_path, subset="test")


def test_idx_overflowing_dimensions(tmp_path, rng):
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, "test", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    path = folder / "t10k-images-idx3-ubyte.gz"
    # 2**32-1 cubed overflows int64: the header's size must be computed exactly.
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", *[2**32 - 1] * 3)))
    with pytest.raises(LimitExceededError, match="t10k-images-idx3-ubyte.gz.*max_total_bytes"):
        ds.fetch_mnist(data_home=tmp_path, subset="test")


def test_idx_header_beyond_max_total_bytes(tmp_path, rng):
    images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    write_idx_dataset(tmp_path / "mnist", "test", images, np.zeros(10, np.uint8))
    with pytest.raises(LimitExceededError, match="images-idx3-ubyte.gz.*7840 bytes.*max_total_bytes=7000"):
        ds.fetch_mnist(data_home=tmp_path, subset="test", max_total_bytes=7000)
    bunch = ds.fetch_mnist(data_home=tmp_path, subset="test", max_total_bytes=7856)
    np.testing.assert_array_equal(bunch.images, images)


def test_gzip_bomb_is_not_decompressed_beyond_the_header(tmp_path, rng):
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, "test", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + bytes(2 * 784)
    path.write_bytes(gzip.compress(raw + bytes(200 * 2**20), compresslevel=1))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte.gz.*more"):
            ds.fetch_mnist(data_home=tmp_path, subset="test")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_multi_member_gzip_still_reads(tmp_path, rng):
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, "test", images, np.array([1, 2, 3], np.uint8))
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = write_idx(path, images, compress=False)
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(ds.fetch_mnist(data_home=tmp_path, subset="test").images,
                                  images)


@pytest.mark.parametrize("fetch", [ds.fetch_mnist, ds.fetch_cifar10, ds.fetch_svhn])
@pytest.mark.parametrize("param, value", [("max_total_bytes", 0), ("max_total_bytes", 1.5),
                                          ("n_retries", -1), ("delay", -1.0)])
def test_fetcher_parameters_are_validated(fetch, param, value, tmp_path):
    with pytest.raises(ValueError, match=f"'{param}' parameter of {fetch.__name__}.*Got"):
        fetch(data_home=tmp_path, **{param: value})
    assert list(tmp_path.iterdir()) == []


# --- CIFAR ------------------------------------------------------------------------------


def cifar_batch(labels, n=None):
    n = len(labels) if n is None else n
    return py2_pickle({"data": np.zeros((n, 3072), np.uint8), "labels": labels})


@pytest.mark.parametrize("labels, why", [
    ([0, 10, 1], "10"),
    ([0, -1, 1], "-1"),
    ([0, 1.5, 1], "1.5"),
    ([0, float("nan"), 1], "nan"),
    (["0", "1", "2"], "bytes|str"),
    (3, "shape"),
])
def test_cifar_labels_out_of_range_or_not_integers(labels, why, tmp_path, rng):
    batch = cifar_batch(labels, n=3)
    make_cifar(tmp_path, rng, replace={"cifar-10-batches-py/test_batch": batch})
    with pytest.raises(CorruptFileError, match=f"test_batch.*({why}).*Delete it"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test")


def test_cifar_zero_images(tmp_path, rng):
    make_cifar(tmp_path, rng, replace={"cifar-10-batches-py/test_batch": cifar_batch([])})
    with pytest.raises(CorruptFileError, match="cifar-10-python.tar.gz.*no image"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test")


def test_cifar_bounded_by_max_total_bytes(tmp_path, rng):
    make_cifar(tmp_path, rng)
    with pytest.raises(LimitExceededError, match="cifar-10-python.tar.gz.*max_total_bytes=5000"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test", max_total_bytes=5000)


# --- SVHN -------------------------------------------------------------------------------


@pytest.mark.parametrize("labels, why", [
    (np.array([1.0, 2.5, 3.0, 4.0]), "2.5"),
    (np.array([1.0, np.nan, 3.0, 4.0]), "nan"),
    (np.array([0, 2, 3, 4]), "0"),
    (np.array([1, 2, 3, 11]), "11"),
])
def test_svhn_labels_out_of_range_or_not_integers(labels, why, tmp_path, rng):
    path = tmp_path / "svhn" / "test_32x32.mat"
    write_svhn(path, rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), labels)
    with pytest.raises(CorruptFileError, match=f"test_32x32.mat.*{why}.*Delete it"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")


def test_svhn_integral_float_labels_are_fine(tmp_path, rng):
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", images, np.array([10.0, 1.0, 9.0]))
    assert list(ds.fetch_svhn(data_home=tmp_path, subset="test").target) == [0, 1, 9]


def test_svhn_string_labels(tmp_path, rng):
    from scipy.io import savemat

    path = tmp_path / "svhn" / "test_32x32.mat"
    path.parent.mkdir()
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array(["ab"])})
    with pytest.raises(CorruptFileError, match="test_32x32.mat.*'y'"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")


def test_svhn_zero_images(tmp_path):
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", np.zeros((0, 32, 32, 3), np.uint8),
               np.zeros(0))
    with pytest.raises(CorruptFileError, match="test_32x32.mat.*no image"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")


def test_svhn_bounded_before_loading(tmp_path, rng):
    write_svhn(tmp_path / "svhn" / "test_32x32.mat",
               rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.array([1, 2, 3, 4]))
    # X: 4 * 32 * 32 * 3 bytes read and as many returned; y: 4 int64 read, 2 x 4 returned.
    with pytest.raises(LimitExceededError, match=r"test_32x32.mat.*24672 bytes.*max_total_bytes=10000"):
        ds.fetch_svhn(data_home=tmp_path, subset="test", max_total_bytes=10_000)


# --- image folders: pixels --------------------------------------------------------------


def png(array):
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("grayscale", [True, False])
def test_16_bit_png_is_scaled_not_clipped(grayscale, tmp_path, rng):
    deep = rng.integers(0, 2**16, size=(5, 6), dtype=np.uint16)
    deep[0, :3] = [0, 65535, 257 * 128]
    root = write_folder(tmp_path / "images", {"a/deep.png": png(deep)})
    assert Image.open(root / "a" / "deep.png").mode.startswith("I")
    images = ds.load_image_folder(root, grayscale=grayscale).images[0]
    # Independent reference: the nearest of the 256 levels of the 0..65535 scale.
    expected = np.round(deep / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(images if grayscale else images[..., 0], expected)
    if not grayscale:
        assert (images == expected[..., None]).all()


def test_16_bit_png_resized(tmp_path):
    deep = np.full((8, 8), 65535, np.uint16)
    root = write_folder(tmp_path / "images", {"a/deep.png": png(deep)})
    assert (ds.load_image_folder(root, image_size=4, grayscale=True).images == 255).all()


@pytest.mark.parametrize("mode, array", [
    ("RGBA", np.full((3, 3, 4), 200, np.uint8)),
    ("LA", np.full((3, 3, 2), 200, np.uint8)),
    ("1", np.ones((3, 3), bool)),
])
def test_other_png_modes_convert_to_8_bits(mode, array, tmp_path):
    root = write_folder(tmp_path / "images", {"a/x.png": png(array)})
    assert Image.open(root / "a" / "x.png").mode == mode
    images = ds.load_image_folder(root, grayscale=True).images
    assert images.dtype == np.uint8 and images.shape == (1, 3, 3)
    assert (images == (255 if mode == "1" else 200)).all()


@pytest.mark.parametrize("image_size", [0, (0, 4), (-1, 4), (2.5, 4), (4,), "4", True])
def test_image_size_is_validated(image_size, tmp_path):
    root = write_folder(tmp_path / "images", {"a/x.png": png(np.zeros((3, 3), np.uint8))})
    with pytest.raises((ValueError, TypeError), match="'image_size' parameter of load_image_folder"):
        ds.load_image_folder(root, image_size=image_size)


def test_decoded_pixels_are_bounded_before_decoding(tmp_path, monkeypatch):
    # Two 2000x2000 black PNGs: a few kB in the archive, 24 MB decoded as RGB.
    big = png(np.zeros((2000, 2000), np.uint8))
    root = write_folder(tmp_path / "images", {"a/1.png": big, "b/2.png": big})
    assert sum(f.stat().st_size for f in root.rglob("*.png")) < 100_000
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or 1 / 0)
    with pytest.raises(LimitExceededError, match=r"images.*a/1.png.*max_total_bytes=1000000"):
        ds.load_image_folder(root, max_total_bytes=1_000_000)
    assert decoded == []  # refused from the headers alone


def test_decoded_pixels_count_the_output_size(tmp_path):
    root = write_folder(tmp_path / "images", {
        f"a/{i}.png": png(np.full((10, 10), i, np.uint8)) for i in range(3)})
    assert sum(f.stat().st_size for f in root.rglob("*.png")) < 300
    # 3 grey images of 10x10: the files (< 300 bytes), an output of 300 bytes as
    # grey and 900 as RGB, and decoding one (200 bytes as grey, 800 as RGB).
    assert ds.load_image_folder(root, grayscale=True, max_total_bytes=1000).images.shape == (3, 10, 10)
    with pytest.raises(LimitExceededError, match="max_total_bytes=1000"):
        ds.load_image_folder(root, max_total_bytes=1000)


# --- image folders: symbolic links ------------------------------------------------------


def test_symlinked_class_folder_and_file_are_followed(tmp_path, rng):
    pixels = {name: rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for name in "xyz"}
    elsewhere = write_folder(tmp_path / "elsewhere", {
        "dog/x.png": png(pixels["x"]), "y.png": png(pixels["y"])})
    root = write_folder(tmp_path / "images", {"cat/z.png": png(pixels["z"])})
    os.symlink(elsewhere / "dog", root / "dog")
    os.symlink(elsewhere / "y.png", root / "cat" / "y.png")
    bunch = ds.load_image_folder(root)
    assert list(bunch.filenames) == ["cat/y.png", "cat/z.png", "dog/x.png"]
    assert list(bunch.target_names) == ["cat", "dog"]
    np.testing.assert_array_equal(bunch.images, np.stack([pixels[n] for n in "yzx"]))


def test_symlink_loop_is_refused(tmp_path):
    root = write_folder(tmp_path / "images", {"cat/a.png": png(np.zeros((2, 2), np.uint8))})
    os.symlink(root, root / "cat" / "loop")
    with pytest.raises(ValueError, match=r"cat/loop.*more than once"):
        ds.load_image_folder(root)


def test_broken_symlink_is_refused(tmp_path):
    root = write_folder(tmp_path / "images", {"cat/a.png": png(np.zeros((2, 2), np.uint8))})
    os.symlink(tmp_path / "gone.png", root / "cat" / "b.png")
    with pytest.raises(FileNotFoundError, match="cat/b.png"):
        ds.load_image_folder(root)


def test_special_file_named_like_an_image_is_refused(tmp_path):
    root = write_folder(tmp_path / "images", {"cat/a.png": png(np.zeros((2, 2), np.uint8))})
    os.symlink("/dev/zero", root / "cat" / "zero.png")
    with pytest.raises(ValueError, match="cat/zero.png.*not a regular file"):
        ds.load_image_folder(root)


def test_folder_file_bytes_are_bounded(tmp_path, rng):
    root = write_folder(tmp_path / "images", {
        f"a/{i}.png": png(rng.integers(0, 256, (10, 10), dtype=np.uint8)) for i in range(3)})
    with pytest.raises(LimitExceededError, match="images.*max_total_bytes=200"):
        ds.load_image_folder(root, max_total_bytes=200)
    with pytest.raises(LimitExceededError, match="images.*max_members=2"):
        ds.load_image_folder(root, max_members=2)


def test_svhn_compressed_mat_round_trip(tmp_path, rng):
    from scipy.io import savemat

    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "svhn" / "test_32x32.mat"
    path.parent.mkdir()
    savemat(path, {"X": images.transpose(1, 2, 3, 0), "y": np.array([[10.0], [1], [2], [3], [4]]),
                   "other_name_long_enough": np.zeros(3)}, do_compression=True)
    bunch = ds.fetch_svhn(data_home=tmp_path, subset="test")
    np.testing.assert_array_equal(bunch.images, images)
    assert list(bunch.target) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("damage, why", [
    ("name", "variable name of 1000000 bytes"),
    ("dims", "dimensions of 400 bytes"),
    ("data", "data of 'X'.*does not match its shape"),
    ("complex", "'X' is not a real numeric array"),
])
def test_svhn_element_sizes_are_checked_before_scipy_reads_them(damage, why, tmp_path):
    from test_datasets_peak_memory import mat_element, mat_matrix

    header = b"MATLAB 5.0 MAT-file".ljust(116) + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    x = mat_matrix("X", 9 | (0x800 if damage == "complex" else 0), (32, 32, 3, 1), 2,
                   bytes(3072 - (damage == "data")))
    if damage == "name":
        x = x[:x.index(b"X\0\0\0") - 4] + struct.pack("<II", 1, 10**6) + b"X" * 8
    if damage == "dims":
        x = mat_element(6, struct.pack("<II", 9, 0)) + mat_element(5, bytes(400))
    path = tmp_path / "svhn" / "test_32x32.mat"
    path.parent.mkdir()
    path.write_bytes(header + mat_element(14, x))
    with pytest.raises(CorruptFileError, match=f"test_32x32.mat.*{why}"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")


def test_svhn_mat_7_3_is_refused_as_not_mat_5(tmp_path):
    path = tmp_path / "svhn" / "test_32x32.mat"
    path.parent.mkdir()
    # MATLAB 7.3 files keep the 128-byte text header, with version 0x0200, then HDF5.
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + struct.pack("<H", 0x0200)
                     + b"IM" + b"\x89HDF\r\n\x1a\n" + bytes(500))
    with pytest.raises(CorruptFileError, match="test_32x32.mat.*not a MAT 5 file.*7.3"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")
