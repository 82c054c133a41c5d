"""Tests of skconvfeat.datasets: fetchers, file formats, corrupt and hostile files.

No test touches the internet: the real data comes from the shared read-only
copy when present, everything else from small files written in tmp_path.
Download tests live in test_datasets_download.py, image folders and archive
attacks in test_datasets_archives.py.
"""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from sklearn.utils import Bunch

import skconvfeat.datasets as ds
from skconvfeat.datasets import _download, _fetchers
from skconvfeat.datasets._errors import CorruptFileError, ForbiddenPickleError
from skconvfeat.datasets._idx import read_idx


def _shared_data():
    """The shared read-only data folder, or skip the test."""
    folder = os.environ.get("SKCONVFEAT_SHARED_DATA")
    if folder is None:
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "shared", "data")
    if not os.path.isdir(os.path.join(folder, "mnist")):
        pytest.skip(f"shared data folder {os.path.abspath(folder)} with mnist/ not found")
    return folder


# --- IDX ---------------------------------------------------------------------------


def write_idx(path, array, compress=True):
    """Write ``array`` (uint8) as an IDX file, gzipped like the canonical files."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return raw


def write_idx_dataset(folder, subset, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = _fetchers._IDX_NAMES[subset]
    write_idx(folder / image_name, images)
    write_idx(folder / label_name, labels)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_public_api():
    for name in ["fetch_mnist", "fetch_fashion_mnist", "fetch_kmnist", "fetch_cifar10",
                 "fetch_cifar100", "fetch_svhn", "load_image_folder", "get_data_home",
                 "load_dataset"]:
        assert callable(getattr(ds, name)), name
    assert "PIL" not in ds.__dict__


def test_get_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("SKCONVFEAT_DATA", raising=False)
    assert ds.get_data_home() == os.path.expanduser(os.path.join("~", "skconvfeat_data"))
    monkeypatch.setenv("SKCONVFEAT_DATA", str(tmp_path / "env"))
    assert ds.get_data_home() == str(tmp_path / "env")
    assert ds.get_data_home(tmp_path / "arg") == str(tmp_path / "arg")
    assert not (tmp_path / "env").exists()  # never created just by asking


@pytest.mark.parametrize("fetch", [ds.fetch_mnist, ds.fetch_fashion_mnist, ds.fetch_kmnist,
                                   ds.fetch_cifar10, ds.fetch_cifar100, ds.fetch_svhn])
def test_subset_is_validated(fetch, tmp_path):
    expected = (f"The 'subset' parameter of {fetch.__name__} must be one of "
                "{'train', 'test'}. Got 'tset' instead.")
    with pytest.raises(ValueError) as excinfo:
        fetch(data_home=tmp_path, subset="tset")
    assert str(excinfo.value) == expected
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fetch, folder", [(ds.fetch_mnist, "mnist"),
                                           (ds.fetch_cifar10, "cifar10"),
                                           (ds.fetch_svhn, "svhn")])
def test_missing_file_without_download(fetch, folder, tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        fetch(data_home=tmp_path, download_if_missing=False)
    message = str(excinfo.value)
    assert str(tmp_path) in message and "download_if_missing=False" in message
    assert any(remote.filename in message
               for remote in _fetchers.DATASETS[folder].files["train"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fetch, name, target_names", [
    (ds.fetch_mnist, "mnist", [str(d) for d in range(10)]),
    (ds.fetch_fashion_mnist, "fashion_mnist", None),
    (ds.fetch_kmnist, "kmnist", None),
])
@pytest.mark.parametrize("subset", ["train", "test"])
def test_idx_fetchers_round_trip(fetch, name, target_names, subset, tmp_path, rng):
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    write_idx_dataset(tmp_path / name, subset, images, labels)

    bunch = fetch(data_home=tmp_path, subset=subset, download_if_missing=False)
    assert isinstance(bunch, Bunch)
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.data, images.reshape(7, 784))
    np.testing.assert_array_equal(bunch.target, labels)
    assert bunch.images.dtype == np.uint8 and bunch.target.dtype == np.int64
    assert len(bunch.target_names) == 10 and isinstance(bunch.DESCR, str)
    if target_names:
        assert list(bunch.target_names) == target_names
    X, y = fetch(data_home=tmp_path, subset=subset, return_X_y=True)
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_read_idx_other_types_and_uncompressed(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    raw = bytes([0, 0, 0x0C, 3]) + struct.pack(">3I", 2, 3, 4) + array.tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx", max_total_bytes=96), array)


@pytest.mark.parametrize("damage", ["magic", "short", "long", "truncated_gzip", "bad_gzip"])
def test_corrupt_idx(damage, tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, "test", images, np.zeros(5, np.uint8))
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    damaged = {
        "magic": lambda: gzip.compress(b"\x00\x00\x99\x03" + raw[4:]),
        "short": lambda: gzip.compress(raw[:-1]),
        "long": lambda: gzip.compress(raw + b"\0"),
        "truncated_gzip": lambda: path.read_bytes()[:-20],
        "bad_gzip": lambda: b"\x1f\x8b" + b"garbage" * 10,
    }[damage]()
    path.write_bytes(damaged)
    with pytest.raises(CorruptFileError, match="Delete it and fetch") as excinfo:
        ds.fetch_mnist(data_home=tmp_path, subset="test")
    assert str(path) in str(excinfo.value)


def test_labels_not_matching_images(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx_dataset(tmp_path / "mnist", "test", images, np.zeros(4, np.uint8))
    with pytest.raises(CorruptFileError, match="t10k-labels-idx1-ubyte.gz"):
        ds.fetch_mnist(data_home=tmp_path, subset="test")


# --- MNIST from the shared read-only copy ------------------------------------------


def test_shared_mnist(monkeypatch):
    data_home = _shared_data()
    before = sorted(os.listdir(os.path.join(data_home, "mnist")))
    # Not a single download may be attempted.
    monkeypatch.setattr(_download, "_stream", pytest.fail)

    train = ds.fetch_mnist(data_home=data_home, download_if_missing=False)
    assert train.images.shape == (60000, 28, 28) and train.data.shape == (60000, 784)
    assert train.images.dtype == np.uint8
    assert train.target.min() == 0 and train.target.max() == 9
    assert list(train.target[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    # The well-known MNIST normalisation constant: mean 0.1307 of the [0, 1] scale.
    assert train.images.mean() / 255 == pytest.approx(0.1307, abs=1e-4)

    test = ds.fetch_mnist(data_home=data_home, subset="test")
    assert test.images.shape == (10000, 28, 28)
    assert np.bincount(test.target).tolist()[:2] == [980, 1135]
    assert sorted(os.listdir(os.path.join(data_home, "mnist"))) == before


def test_load_dataset(tmp_path, rng):
    images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    write_idx_dataset(tmp_path / "kmnist", "test", images, np.arange(3, dtype=np.uint8))
    bunch = ds.load_dataset("kmnist", data_home=tmp_path, subset="test",
                            download_if_missing=False)
    np.testing.assert_array_equal(bunch.images, images)
    with pytest.raises(ValueError, match="did you mean 'cifar10'.*'svhn', 'cifar10-jpeg'"):
        ds.load_dataset("cifar_10")
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg.tar.gz"):
        ds.load_dataset("cifar10-jpeg", data_home=tmp_path)


# --- CIFAR python batches -----------------------------------------------------------


class Py2StylePickler(pickle._Pickler):
    """Write pickles like Python 2's cPickle did for the CIFAR batches.

    Every str and bytes becomes a Python 2 ``str`` (BINSTRING opcodes), which
    Python 3 reads back as bytes with ``encoding="bytes"``.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj):
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    # The real files name numpy's pre-2.0 module.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_tar_gz(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def make_cifar(data_home, rng, cifar100=False, replace=None, dump=None):
    """Write a small CIFAR archive; return {subset: (images HWC, labels)}.

    ``dump`` pickles the batches and meta file; Python 2's way by default.
    """
    dump = dump or py2_pickle
    if cifar100:
        folder, archive = "cifar-100-python", "cifar-100-python.tar.gz"
        batches = {"train": ["train"], "test": ["test"]}
        label_key, meta = "fine_labels", ("meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                                                   "coarse_label_names": ["x"]})
        n_classes, dataset = 100, "cifar100"
    else:
        folder, archive = "cifar-10-batches-py", "cifar-10-python.tar.gz"
        batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, meta = "labels", ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
        n_classes, dataset = 10, "cifar10"
    members, expected = {}, {}
    for subset, names in batches.items():
        all_images, all_labels = [], []
        for name in names:
            chw = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, n_classes, size=3).tolist()
            batch = {"data": chw.reshape(3, 3072), label_key: labels, "batch_label": name,
                     "filenames": [f"{name}_{i}.png" for i in range(3)]}
            if cifar100:
                batch["coarse_labels"] = [0, 0, 0]
            members[f"{folder}/{name}"] = dump(batch)
            all_images.append(chw.transpose(0, 2, 3, 1))
            all_labels += labels
        expected[subset] = (np.concatenate(all_images), np.array(all_labels))
    members[f"{folder}/{meta[0]}"] = dump(meta[1])
    members[f"{folder}/readme.html"] = b"<html></html>"
    members.update(replace or {})
    (data_home / dataset).mkdir(parents=True, exist_ok=True)
    write_tar_gz(data_home / dataset / archive, members)
    return expected


@pytest.mark.parametrize("cifar100", [False, True])
@pytest.mark.parametrize("subset", ["train", "test"])
def test_cifar_round_trip(cifar100, subset, tmp_path, rng):
    expected = make_cifar(tmp_path, rng, cifar100=cifar100)
    fetch = ds.fetch_cifar100 if cifar100 else ds.fetch_cifar10
    bunch = fetch(data_home=tmp_path, subset=subset, download_if_missing=False)
    images, labels = expected[subset]
    assert bunch.images.shape == (len(labels), 32, 32, 3)
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.data, images.reshape(len(labels), -1))
    np.testing.assert_array_equal(bunch.target, labels)
    assert list(bunch.target_names[:2]) == ["c0", "c1"]
    assert len(bunch.target_names) == (100 if cifar100 else 10)
    # Read in memory: nothing extracted next to the archive.
    assert len(list((tmp_path / ("cifar100" if cifar100 else "cifar10")).iterdir())) == 1


class RunsACommand:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_malicious_pickle_is_refused(protocol, tmp_path, rng):
    target = tmp_path / "pwned"
    evil = pickle.dumps({"data": RunsACommand(target)}, protocol=protocol)
    make_cifar(tmp_path, rng, replace={"cifar-10-batches-py/test_batch": evil})
    with pytest.raises(pickle.UnpicklingError) as excinfo:
        ds.fetch_cifar10(data_home=tmp_path, subset="test")
    assert isinstance(excinfo.value, ForbiddenPickleError)
    assert "cifar-10-python.tar.gz" in str(excinfo.value)
    assert "test_batch" in str(excinfo.value) and "system" in str(excinfo.value)
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_cifar_pickled_by_python_3_loads(protocol, tmp_path, rng):
    # Protocol 2 from Python 3 spells bytes as _codecs.encode(text, "latin1"), and
    # keys and names are str, not bytes: once refused as unsafe.
    expected = make_cifar(tmp_path, rng, dump=lambda obj: pickle.dumps(obj, protocol=protocol))
    bunch = ds.fetch_cifar10(data_home=tmp_path, subset="train")
    np.testing.assert_array_equal(bunch.images, expected["train"][0])
    np.testing.assert_array_equal(bunch.target, expected["train"][1])
    assert list(bunch.target_names[:2]) == ["c0", "c1"]


class Calls:
    """Pickles as ``function(*args)``, or with ``state`` set after."""

    def __init__(self, function, *args, state=None):
        self.reduced = (function, args) if state is None else (function, args, state)

    def __reduce__(self):
        return self.reduced


def _multiarray():
    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


N_HOSTILE = 2000  # images a hostile batch claims (6 MB) in a pickle of a few kB


def hostile_batches():
    """Batches that reach a big array by another path than numpy's own pickles."""
    reconstruct, shape = _multiarray()._reconstruct, (N_HOSTILE, 3072)
    state = (1, shape, np.dtype(np.uint8), False, b"\0" * 10)
    return {
        "ndarray_called": Calls(np.ndarray, shape, "u1"),
        "reconstruct_big": Calls(reconstruct, np.ndarray, shape, b"b"),
        "bytes_short_of_the_shape": Calls(reconstruct, np.ndarray, (0,), b"b", state=state),
        "object_dtype": np.array([None] * 3, dtype=object),
    }


@pytest.mark.parametrize("kind", list(hostile_batches()))
def test_cifar_arrays_only_by_numpy_s_path_with_the_bytes_in_the_file(kind, tmp_path, rng):
    batch = {"data": hostile_batches()[kind], "labels": [0] * N_HOSTILE}
    make_cifar(tmp_path, rng, replace={"cifar-10-batches-py/test_batch": py2_pickle(batch)})
    with pytest.raises(CorruptFileError, match="test_batch"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test")


@pytest.mark.parametrize("bad", [b"not a pickle", py2_pickle({"data": b"x"}), b"\x80\x02}q"])
def test_cifar_bad_batch(bad, tmp_path, rng):
    make_cifar(tmp_path, rng, replace={"cifar-10-batches-py/data_batch_3": bad})
    with pytest.raises(CorruptFileError, match="data_batch_3.*Delete it"):
        ds.fetch_cifar10(data_home=tmp_path)


def test_cifar_truncated_archive(tmp_path, rng):
    make_cifar(tmp_path, rng)
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CorruptFileError, match="cifar-10-python.tar.gz.*Delete it"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test")


def test_cifar_missing_member(tmp_path, rng):
    write_tar_gz(tmp_path / "cifar10.tar.gz", {})
    (tmp_path / "cifar10").mkdir()
    write_tar_gz(tmp_path / "cifar10" / "cifar-10-python.tar.gz", {"other": b"x"})
    with pytest.raises(CorruptFileError, match="test_batch"):
        ds.fetch_cifar10(data_home=tmp_path, subset="test")


# --- SVHN ---------------------------------------------------------------------------


def write_svhn(path, images, labels):
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"X": images.transpose(1, 2, 3, 0), "y": labels.reshape(-1, 1)})


@pytest.mark.parametrize("subset", ["train", "test"])
def test_svhn_round_trip(subset, tmp_path, rng):
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([1, 2, 10, 9, 10, 5], dtype=np.uint8)
    write_svhn(tmp_path / "svhn" / f"{subset}_32x32.mat", images, labels)
    bunch = ds.fetch_svhn(data_home=tmp_path, subset=subset, download_if_missing=False)
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.data, images.reshape(6, -1))
    np.testing.assert_array_equal(bunch.target, [1, 2, 0, 9, 0, 5])
    assert list(bunch.target_names) == [str(d) for d in range(10)]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "bad_labels"])
def test_svhn_corrupt(damage, tmp_path, rng):
    path = tmp_path / "svhn" / "test_32x32.mat"
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    write_svhn(path, images, np.array([1, 2, 3, 4]))
    if damage == "garbage":
        path.write_bytes(b"MATLAB" + bytes(300))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-1000])
    elif damage == "wrong_shape":
        write_svhn(path, images[:, :16], np.array([1, 2, 3, 4]))
    else:
        write_svhn(path, images, np.array([0, 2, 3, 11]))
    with pytest.raises(CorruptFileError, match="test_32x32.mat.*Delete it"):
        ds.fetch_svhn(data_home=tmp_path, subset="test")
