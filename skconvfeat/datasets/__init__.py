"""Standard image datasets as scikit-learn Bunches, and a loader of image folders.

Every ``fetch_*`` function follows :mod:`sklearn.datasets`: it reads the files
from ``<data_home>/<dataset>/``, downloads (and verifies) those that are
missing, and returns a :class:`~sklearn.utils.Bunch` with ``data`` (flattened),
``images``, ``target``, ``target_names`` and ``DESCR``.
"""

from ._data_home import get_data_home
from ._fetchers import (
    fetch_cifar10,
    fetch_cifar100,
    fetch_fashion_mnist,
    fetch_kmnist,
    fetch_mnist,
    fetch_svhn,
    list_datasets,
    load_dataset,
)
from ._image_folder import load_image_folder

__all__ = [
    "fetch_mnist",
    "fetch_fashion_mnist",
    "fetch_kmnist",
    "fetch_cifar10",
    "fetch_cifar100",
    "fetch_svhn",
    "load_image_folder",
    "list_datasets",
    "load_dataset",
    "get_data_home",
]
