"""Where datasets are cached on disk."""

import os
from pathlib import Path

#: Environment variable that overrides the default data folder.
DATA_HOME_ENV = "SKCONVFEAT_DATA"


def get_data_home(data_home=None):
    """Return the folder where skconvfeat looks for (and caches) datasets.

    Like :func:`sklearn.datasets.get_data_home`, but the folder is *not*
    created here: it may be a shared read-only copy, and it is created only
    when a file has to be downloaded into it.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder to use. If None, the ``SKCONVFEAT_DATA`` environment
        variable, else ``~/skconvfeat_data``. ``~`` is expanded.

    Returns
    -------
    data_home : str
        The absolute path of the folder. Each dataset lives in a subfolder
        named after it (``<data_home>/mnist/``, ``<data_home>/cifar10/``, ...).

    Examples
    --------
    >>> from skconvfeat.datasets import get_data_home
    >>> get_data_home("/tmp/my_data")
    '/tmp/my_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or os.path.join("~", "skconvfeat_data")
    return str(Path(os.path.expanduser(os.fspath(data_home))).absolute())
