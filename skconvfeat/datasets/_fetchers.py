"""Fetchers of the standard image classification datasets, scikit-learn style."""

import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_parameter_constraints

from .._hints import closest_name
from ._archive import DEFAULT_MAX_TOTAL_BYTES
from ._cifar import CIFAR10_LAYOUT, CIFAR100_LAYOUT, read_cifar_archive
from ._data_home import get_data_home
from ._download import DEFAULT_DEADLINE, RemoteFile, fetch_file
from ._errors import check_choice, check_labels, corrupt_file
from ._idx import read_idx
from ._image_folder import load_image_folder
from ._svhn import read_svhn_mat

SUBSETS = ("train", "test")

#: Where each dataset is downloaded from. Tests point these at a local server;
#: a private mirror with the same file names can be used the same way.
BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
}

# One record per file: name -> (the MD5 published with the dataset, the one
# torchvision checks; the size in bytes of the canonical file).
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_FILES = {
    "mnist": (("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
              ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
              ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
              ("ec29112dd5afa0611ce80d1b7f02629c", 4_542)),
    "fashion_mnist": (("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
                      ("25c81989df183df01b3e8a0aad5dffbe", 29_515),
                      ("bef4ecab320f06d8554ea6380940ec79", 4_422_102),
                      ("bb300cfdad3c16e7a12a480ee83cd310", 5_148)),
    "kmnist": (("bdb82020997e1d708af4cf47b453dcf7", 18_165_135),
               ("e144d726b3acfaa3e44228e80efcd344", 29_497),
               ("5c965bf0a639b31b8f53240b1b52f4d7", 3_041_136),
               ("7320c461ea6c1c855c0b718fb2a4b134", 5_120)),
}


def _idx_files(dataset):
    names = (*_IDX_NAMES["train"], *_IDX_NAMES["test"])
    files = {name: RemoteFile(name, f"md5:{md5}", size)
             for name, (md5, size) in zip(names, _IDX_FILES[dataset])}
    return {subset: tuple(files[name] for name in _IDX_NAMES[subset]) for subset in SUBSETS}


@dataclass(frozen=True)
class _Dataset:
    """What a fetcher needs to know about one dataset."""

    name: str
    files: dict  # subset -> tuple of RemoteFile
    title: str
    homepage: str
    target_names: tuple = ()  # read from the files when empty (CIFAR)


_DIGITS = tuple(str(digit) for digit in range(10))
DATASETS = {
    "mnist": _Dataset(
        "mnist", _idx_files("mnist"),
        "MNIST handwritten digits: 60,000 train + 10,000 test 28x28 grey images, 10 classes.",
        "http://yann.lecun.com/exdb/mnist/", _DIGITS,
    ),
    "fashion_mnist": _Dataset(
        "fashion_mnist", _idx_files("fashion_mnist"),
        "Fashion-MNIST (Zalando): 60,000 train + 10,000 test 28x28 grey images of "
        "clothes, 10 classes.",
        "https://github.com/zalandoresearch/fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
         "Sneaker", "Bag", "Ankle boot"),
    ),
    "kmnist": _Dataset(
        "kmnist", _idx_files("kmnist"),
        "Kuzushiji-MNIST: 60,000 train + 10,000 test 28x28 grey images of cursive "
        "Japanese hiragana, 10 classes.",
        "https://github.com/rois-codh/kmnist",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
    "cifar10": _Dataset(
        "cifar10",
        dict.fromkeys(SUBSETS, (RemoteFile(
            "cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a", 170_498_071),)),
        "CIFAR-10: 50,000 train + 10,000 test 32x32 colour images, 10 classes.",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": _Dataset(
        "cifar100",
        dict.fromkeys(SUBSETS, (RemoteFile(
            "cifar-100-python.tar.gz", "md5:eb9058c3a382ffc7106e4002c42a8d85", 169_001_437),)),
        "CIFAR-100: 50,000 train + 10,000 test 32x32 colour images, 100 fine classes.",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn": _Dataset(
        "svhn",
        {"train": (RemoteFile("train_32x32.mat", "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
                               182_040_794),),
         "test": (RemoteFile("test_32x32.mat", "md5:eb5a983be6a315427106f1b164d9cef3",
                              64_275_384),)},
        "SVHN cropped digits: 73,257 train + 26,032 test 32x32 colour images of house "
        "numbers, 10 classes (the 'extra' set is not included).",
        "http://ufldl.stanford.edu/housenumbers/", _DIGITS,
    ),
}

_JPEG_NAME = "cifar10-jpeg"
DATASET_NAMES = (*DATASETS, _JPEG_NAME)

_FETCH_DOC = """
    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding the datasets; this one is read from or downloaded to
        ``<data_home>/{name}/``. None means :func:`get_data_home`'s default.
    subset : {{"train", "test"}}, default="train"
        Which part of the dataset to load.
    download_if_missing : bool, default=True
        If False, raise FileNotFoundError instead of downloading missing files.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    n_retries : int, default=3
        Retries after a transient network error.
    delay : float, default=1.0
        Seconds between retries.
    deadline : float, default=3600.0
        Seconds allowed to download each missing file, retries included; a
        slower download stops with a DownloadError naming the file.
    max_total_bytes : int, default=4 GiB
        Refuse files that would decode into more bytes than this, checked from
        their headers before anything is decompressed or allocated (the error
        names the file and this parameter).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data``: ndarray of shape (n_samples, {n_features}), uint8, the flattened
        ``images``: ndarray of shape (n_samples, {shape}), uint8;
        ``target``: ndarray of shape (n_samples,), int64, checked to be in
        ``0..len(target_names) - 1``;
        ``target_names``: ndarray of str; ``DESCR``: str.
    (data, target) : tuple if ``return_X_y`` is True
"""

#: The constraints of the fetchers' parameters but ``subset`` (checked by
#: check_choice, whose message lists the choices in order).
_FETCH_CONSTRAINTS = {
    "data_home": [None, str, os.PathLike],
    "download_if_missing": ["boolean"],
    "return_X_y": ["boolean"],
    "n_retries": [Interval(Integral, 0, None, closed="left")],
    "delay": [Interval(Real, 0, None, closed="left")],
    "deadline": [Interval(Real, 0, None, closed="neither")],
    "max_total_bytes": [Interval(Integral, 1, None, closed="left")],
}


def _fill_doc(name, shape, n_features):
    def decorate(func):
        func.__doc__ = func.__doc__.replace(
            "{parameters}", _FETCH_DOC.format(name=name, shape=shape, n_features=n_features)
        )
        return func
    return decorate


def _read_idx_pair(paths, subset, dataset, max_total_bytes):
    images_path, labels_path = paths
    images = read_idx(images_path, max_total_bytes=max_total_bytes)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise corrupt_file(images_path, f"expected uint8 images (n, h, w), got {images.shape}")
    if len(images) == 0:
        raise corrupt_file(images_path, "it holds no images")
    labels = read_idx(labels_path, max_total_bytes=max_total_bytes)
    target = check_labels(labels, labels_path, len(dataset.target_names))
    if len(target) != len(images):
        raise corrupt_file(labels_path, f"{len(target)} labels for {len(images)} images")
    return images, target, np.array(dataset.target_names)


def _read_cifar(layout):
    def read(paths, subset, dataset, max_total_bytes):
        (archive,) = paths
        return read_cifar_archive(archive, layout, subset, max_total_bytes=max_total_bytes)
    return read


def _read_svhn(paths, subset, dataset, max_total_bytes):
    (mat,) = paths
    images, target = read_svhn_mat(mat, max_total_bytes=max_total_bytes)
    return images, target, np.array(dataset.target_names)


_READERS = {
    "mnist": _read_idx_pair,
    "fashion_mnist": _read_idx_pair,
    "kmnist": _read_idx_pair,
    "cifar10": _read_cifar(CIFAR10_LAYOUT),
    "cifar100": _read_cifar(CIFAR100_LAYOUT),
    "svhn": _read_svhn,
}


def _load(name, func, params):
    """The one body of the fetchers: check ``params``, fetch the files, read them.

    ``params`` are the fetcher's arguments, by name.
    """
    check_choice(params["subset"], param="subset", func=func, choices=SUBSETS)
    validate_parameter_constraints(_FETCH_CONSTRAINTS, params, caller_name=func)
    dataset, subset = DATASETS[name], params["subset"]
    folder = Path(get_data_home(params["data_home"])) / name
    paths = [
        fetch_file(remote, folder, BASE_URLS[name],
                   download_if_missing=params["download_if_missing"],
                   n_retries=params["n_retries"], delay=params["delay"],
                   deadline=params["deadline"])
        for remote in dataset.files[subset]
    ]
    images, target, target_names = _READERS[name](paths, subset, dataset,
                                                  params["max_total_bytes"])
    data = images.reshape(len(images), math.prod(images.shape[1:]))
    if params["return_X_y"]:
        return data, target
    descr = f"{dataset.title}\nSubset: {subset}, {len(images)} images.\nSource: {dataset.homepage}"
    return Bunch(data=data, images=images, target=target, target_names=target_names,
                 DESCR=descr)


@_fill_doc("mnist", "28, 28", 784)
def fetch_mnist(*, data_home=None, subset="train", download_if_missing=True,
                return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
                max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load the MNIST handwritten digits (28x28 grey, 10 classes).
    {parameters}
    Examples
    --------
    >>> from skconvfeat.datasets import fetch_mnist
    >>> mnist = fetch_mnist(subset="test")  # doctest: +SKIP
    >>> mnist.images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    return _load("mnist", "fetch_mnist", locals())


@_fill_doc("fashion_mnist", "28, 28", 784)
def fetch_fashion_mnist(*, data_home=None, subset="train", download_if_missing=True,
                        return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
                        max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load Fashion-MNIST, Zalando's images of clothes (28x28 grey, 10 classes).
    {parameters}"""
    return _load("fashion_mnist", "fetch_fashion_mnist", locals())


@_fill_doc("kmnist", "28, 28", 784)
def fetch_kmnist(*, data_home=None, subset="train", download_if_missing=True,
                 return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
                 max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load Kuzushiji-MNIST, cursive Japanese hiragana (28x28 grey, 10 classes).
    {parameters}"""
    return _load("kmnist", "fetch_kmnist", locals())


@_fill_doc("cifar10", "32, 32, 3", 3072)
def fetch_cifar10(*, data_home=None, subset="train", download_if_missing=True,
                  return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
                  max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load CIFAR-10 (32x32 colour, 10 classes) from its python-batches archive.

    The batches are read straight from ``cifar-10-python.tar.gz``, never
    extracted, with an unpickler that refuses anything but numpy arrays.
    {parameters}"""
    return _load("cifar10", "fetch_cifar10", locals())


@_fill_doc("cifar100", "32, 32, 3", 3072)
def fetch_cifar100(*, data_home=None, subset="train", download_if_missing=True,
                   return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
                   max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load CIFAR-100 (32x32 colour, 100 fine classes) from its python archive.

    ``target`` holds the fine labels. The batches are read straight from
    ``cifar-100-python.tar.gz``, never extracted, with an unpickler that
    refuses anything but numpy arrays.
    {parameters}"""
    return _load("cifar100", "fetch_cifar100", locals())


@_fill_doc("svhn", "32, 32, 3", 3072)
def fetch_svhn(*, data_home=None, subset="train", download_if_missing=True,
               return_X_y=False, n_retries=3, delay=1.0, deadline=DEFAULT_DEADLINE,
               max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Load SVHN cropped digits (32x32 colour house numbers, 10 classes).

    The label 10 of the original files is mapped to the digit 0.
    {parameters}"""
    return _load("svhn", "fetch_svhn", locals())


_FETCHERS = {
    "mnist": fetch_mnist,
    "fashion_mnist": fetch_fashion_mnist,
    "kmnist": fetch_kmnist,
    "cifar10": fetch_cifar10,
    "cifar100": fetch_cifar100,
    "svhn": fetch_svhn,
}


def list_datasets():
    """The names :func:`load_dataset` accepts.

    Returns
    -------
    names : tuple of str

    Examples
    --------
    >>> from skconvfeat.datasets import list_datasets
    >>> "mnist" in list_datasets()
    True
    """
    return DATASET_NAMES


def load_dataset(name, *, data_home=None, subset="train", download_if_missing=True):
    """Load a dataset by name (used by the command line).

    Parameters
    ----------
    name : {"mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", \
"cifar10-jpeg"}
        ``"cifar10-jpeg"`` is the image-folder archive
        ``<data_home>/cifar10-jpeg.tar.gz`` (a JPEG re-encoding of CIFAR-10,
        ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``); it is never
        downloaded.
    data_home : str or path-like, default=None
        See :func:`get_data_home`.
    subset : {"train", "test"}, default="train"
    download_if_missing : bool, default=True

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        As returned by the ``fetch_*`` functions.

    Examples
    --------
    >>> from skconvfeat.datasets import load_dataset
    >>> load_dataset("minst")
    Traceback (most recent call last):
    ...
    ValueError: Unknown dataset 'minst'; did you mean 'mnist'? Valid names: 'mnist', \
'fashion_mnist', 'kmnist', 'cifar10', 'cifar100', 'svhn', 'cifar10-jpeg'.
    """
    if name not in DATASET_NAMES:
        close = closest_name(name, DATASET_NAMES)
        hint = f"; did you mean {close!r}?" if close else "."
        valid = ", ".join(repr(valid_name) for valid_name in DATASET_NAMES)
        raise ValueError(f"Unknown dataset {name!r}{hint} Valid names: {valid}.")
    if name == _JPEG_NAME:
        check_choice(subset, param="subset", func="load_dataset", choices=SUBSETS)
        path = Path(get_data_home(data_home)) / f"{_JPEG_NAME}.tar.gz"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path.name} not found in data_home {path.parent}; it is not downloadable, "
                "copy it there."
            )
        bunch = load_image_folder(path, subset=subset)
        bunch.DESCR = ("CIFAR-10 re-encoded as JPEG (quality 75), read from an image-folder "
                       f"archive.\n{bunch.DESCR}")
        return bunch
    return _FETCHERS[name](data_home=data_home, subset=subset,
                           download_if_missing=download_if_missing)
