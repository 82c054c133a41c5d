"""Tests of load_image_folder and of the safe archive reader (hostile archives)."""

import io
import os
import sys
import tarfile
import time
import warnings
import zipfile

import numpy as np
import pytest

from skconvfeat.datasets import load_dataset, load_image_folder
from skconvfeat.datasets._archive import iter_archive_files
from skconvfeat.datasets._errors import CorruptFileError, LimitExceededError, UnsafeArchiveError

Image = pytest.importorskip("PIL.Image")

CLASSES = ["cat", "dog", "emu"]  # sorted: label order


def encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def make_images(rng, splits=("train", "test"), shape=(5, 4, 3), per_class=2):
    """Return {relative name: pixels} for a [split/]class/image layout."""
    images = {}
    for split in splits:
        for class_name in CLASSES:
            for i in range(per_class):
                prefix = f"{split}/" if split else ""
                name = f"{prefix}{class_name}/{i:03d}.png"
                images[name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return images


def write_source(kind, tmp_path, images):
    """Write ``images`` as a folder or an archive of PNGs; return its path."""
    files = {name: encode(pixels) for name, pixels in images.items()}
    files["README.txt"] = b"not an image"
    files[".hidden/cat/x.png"] = b"ignored"
    if kind == "folder":
        root = tmp_path / "images"
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root
    if kind == "zip":
        path = tmp_path / "images.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return path
    path = tmp_path / f"images.{kind}"
    mode = {"tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}.get(kind, "w")
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("kind", ["folder", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz", "zip"])
@pytest.mark.parametrize("subset", ["train", "test"])
def test_split_layout_round_trip(kind, subset, tmp_path, rng):
    images = make_images(rng)
    path = write_source(kind, tmp_path, images)
    bunch = load_image_folder(path, subset=subset)
    names = sorted(name for name in images if name.startswith(subset + "/"))
    assert list(bunch.filenames) == names
    np.testing.assert_array_equal(bunch.images, np.stack([images[n] for n in names]))
    np.testing.assert_array_equal(bunch.data, bunch.images.reshape(len(names), -1))
    assert list(bunch.target) == [0, 0, 1, 1, 2, 2]
    assert list(bunch.target_names) == CLASSES
    assert bunch.images.dtype == np.uint8 and bunch.target.dtype == np.int64
    assert sorted(os.listdir(tmp_path)) == [path.name]  # nothing extracted


def test_no_split_layout_grayscale_and_resize(tmp_path, rng):
    images = make_images(rng, splits=(None,), shape=(6, 6))
    path = write_source("zip", tmp_path, images)
    bunch = load_image_folder(path, grayscale=True)
    assert bunch.images.shape == (6, 6, 6)
    np.testing.assert_array_equal(bunch.images[0], images["cat/000.png"])
    X, y = load_image_folder(path, image_size=(3, 2), return_X_y=True)
    assert X.shape == (6, 3 * 2 * 3) and list(y) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="no split folders"):
        load_image_folder(path, subset="train")


def test_jpeg_images(tmp_path):
    flat = np.full((8, 8, 3), 200, dtype=np.uint8)  # flat colours survive JPEG exactly
    root = tmp_path / "jpegs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.jpg").write_bytes(encode(flat, "JPEG"))
    (root / "a" / "2.JPEG").write_bytes(encode(flat, "JPEG"))
    bunch = load_image_folder(root)
    assert bunch.images.shape == (2, 8, 8, 3)
    assert np.abs(bunch.images.astype(int) - 200).max() <= 1


def test_subset_required_and_all(tmp_path, rng):
    images = make_images(rng)
    path = write_source("tar.gz", tmp_path, images)
    with pytest.raises(ValueError, match=r"split into \['test', 'train'\]"):
        load_image_folder(path)
    with pytest.raises(ValueError, match="The 'subset' parameter of load_image_folder must be "
                                         "one of {'test', 'train', 'all'}. Got 'val' instead."):
        load_image_folder(path, subset="val")
    both = load_image_folder(path, subset="all")
    assert len(both.target) == 12
    assert list(both.split) == ["test"] * 6 + ["train"] * 6


def test_mixed_sizes_need_image_size(tmp_path, rng):
    images = make_images(rng, splits=(None,))
    images["dog/000.png"] = np.zeros((7, 7, 3), np.uint8)
    path = write_source("folder", tmp_path, images)
    with pytest.raises(ValueError, match="dog/000.png.*image_size"):
        load_image_folder(path)
    assert load_image_folder(path, image_size=4).images.shape == (6, 4, 4, 3)


def test_bad_layouts(tmp_path, rng):
    images = make_images(rng, splits=(None,))
    images["a/b/c/d.png"] = images["cat/000.png"]
    with pytest.raises(ValueError, match="class/image or split/class/image"):
        load_image_folder(write_source("zip", tmp_path, images))
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing.tar.gz")
    (tmp_path / "x.rar").write_bytes(b"x")
    with pytest.raises(ValueError, match="neither a folder nor an archive"):
        load_image_folder(tmp_path / "x.rar")


def test_undecodable_image(tmp_path, rng):
    images = make_images(rng, splits=(None,))
    path = write_source("folder", tmp_path, images)
    (path / "dog" / "001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CorruptFileError, match="dog/001.png"):
        load_image_folder(path)


def test_pillow_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install pillow.*skconvfeat\[images\]"):
        load_image_folder(tmp_path)


# --- hostile archives ---------------------------------------------------------------


def tar_with(path, info, data=b""):
    """A gzipped tar with one good image member then the ``info`` member."""
    good = encode(np.zeros((2, 2, 3), np.uint8))
    with tarfile.open(path, "w:gz") as archive:
        first = tarfile.TarInfo("cat/ok.png")
        first.size = len(good)
        archive.addfile(first, io.BytesIO(good))
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data) if data else None)
    return path


def tar_member(name, type_=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    return info


@pytest.mark.parametrize("member, data", [
    (tar_member("../evil.png"), b"x"),
    (tar_member("cat/../../evil.png"), b"x"),
    (tar_member("/abs/evil.png"), b"x"),
    (tar_member("..\\evil.png"), b"x"),
    (tar_member("cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), b""),
    (tar_member("cat/hard.png", tarfile.LNKTYPE, "cat/ok.png"), b""),
    (tar_member("cat/dev.png", tarfile.CHRTYPE), b""),
    (tar_member("cat/blk.png", tarfile.BLKTYPE), b""),
    (tar_member("cat/fifo.png", tarfile.FIFOTYPE), b""),
])
def test_hostile_tar_members_are_refused(member, data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = tar_with(work / "evil.tar.gz", member, data)
    before = sorted(p for p in tmp_path.parent.glob("*evil*"))
    with pytest.raises(UnsafeArchiveError) as excinfo:
        load_image_folder(path)
    assert repr(member.name) in str(excinfo.value)
    assert sorted(os.listdir(work)) == ["evil.tar.gz"]
    assert sorted(p for p in tmp_path.parent.glob("*evil*")) == before
    assert not os.path.exists("/abs/evil.png")


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/abs.png"])
def test_hostile_zip_member_is_refused(name, tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat/ok.png", encode(np.zeros((2, 2, 3), np.uint8)))
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # ZipInfo() itself strips a leading "/"
        archive.writestr(info, b"x")
    with pytest.raises(UnsafeArchiveError, match=repr(name).replace(".", r"\.")):
        load_image_folder(path)
    assert os.listdir(tmp_path) == ["evil.zip"]


def test_zip_symlink_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("cat/link.png")
        info.external_attr = (0o120777 << 16)  # S_IFLNK
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="cat/link.png"):
        load_image_folder(path)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_caps_on_members_and_size(kind, tmp_path, rng):
    path = write_source(kind, tmp_path, make_images(rng))
    with pytest.raises(LimitExceededError, match="max_members=5"):
        load_image_folder(path, subset="train", max_members=5)
    with pytest.raises(LimitExceededError, match="max_total_bytes=100"):
        load_image_folder(path, subset="train", max_total_bytes=100)
    assert len(load_image_folder(path, subset="train", max_members=100).target) == 6


def test_corrupt_archive(tmp_path, rng):
    path = write_source("tar.gz", tmp_path, make_images(rng))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CorruptFileError, match="images.tar.gz.*Delete it"):
        load_image_folder(path, subset="train")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CorruptFileError, match="bad.zip"):
        list(iter_archive_files(tmp_path / "bad.zip"))


# --- the shared CIFAR-10 JPEG archive ------------------------------------------------


def _shared_data():
    folder = os.environ.get("SKCONVFEAT_SHARED_DATA") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    if not os.path.isfile(os.path.join(folder, "cifar10-jpeg.tar.gz")):
        pytest.skip(f"{os.path.abspath(folder)}/cifar10-jpeg.tar.gz not found")
    return folder


@pytest.mark.slow
def test_shared_cifar10_jpeg():
    data_home = _shared_data()
    start = time.perf_counter()
    test = load_dataset("cifar10-jpeg", data_home=data_home, subset="test")
    print(f"cifar10-jpeg test split loaded in {time.perf_counter() - start:.1f} s")
    assert test.images.shape == (10000, 32, 32, 3) and test.images.dtype == np.uint8
    assert list(test.target_names) == ["airplane", "automobile", "bird", "cat", "deer",
                                       "dog", "frog", "horse", "ship", "truck"]
    assert np.bincount(test.target).tolist() == [1000] * 10


# --- names: duplicates and Unicode spellings -------------------------------------------


CAFE_NFC, CAFE_NFD = "caf\u00e9", "cafe\u0301"


def write_tar(path, members):
    """A .tar.gz of ``[(name, data)]`` in that order, repeats included."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("second", ["cat/1.png", "./cat/1.png", "cat\\1.png"])
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_member_listed_twice_is_refused(kind, second, tmp_path):
    image = encode(np.zeros((2, 2, 3), np.uint8))
    members = [("cat/1.png", image), ("dog/2.png", image), (second, image)]
    path = tmp_path / f"twice.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
            for name, data in members:
                archive.writestr(name, data)
    else:
        write_tar(path, members)
    with pytest.raises(UnsafeArchiveError, match="twice.*'cat/1.png' twice"):
        load_image_folder(path)


def test_class_spelled_nfc_and_nfd_is_one_class(tmp_path, rng):
    pixels = rng.integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    path = write_tar(tmp_path / "accents.tar.gz", [
        (f"train/{CAFE_NFC}/1.png", encode(pixels[0])),
        ("train/dog/2.png", encode(pixels[1])),
        (f"test/{CAFE_NFD}/3.png", encode(pixels[2])),
    ])
    bunch = load_image_folder(path, subset="all")
    assert list(bunch.target_names) == [CAFE_NFC, "dog"]
    assert list(bunch.target) == [0, 0, 1]  # test/café/3.png, train/café/1.png, train/dog/2.png
    assert list(bunch.filenames) == [f"test/{CAFE_NFC}/3.png", f"train/{CAFE_NFC}/1.png",
                                     "train/dog/2.png"]


def test_file_spelled_nfc_and_nfd_in_a_folder_is_refused(tmp_path):
    image = encode(np.zeros((2, 2, 3), np.uint8))
    for spelling in (CAFE_NFC, CAFE_NFD):
        (tmp_path / "images" / spelling).mkdir(parents=True)
        (tmp_path / "images" / spelling / "1.png").write_bytes(image)
    with pytest.raises(UnsafeArchiveError, match=f"'{CAFE_NFC}/1.png' twice"):
        load_image_folder(tmp_path / "images")
