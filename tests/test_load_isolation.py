"""Loading a model never changes the process: its custom banks travel with it and serve it alone."""

import subprocess
import sys
import textwrap

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits

import skconvfeat
from skconvfeat import FixedConvTransformer, make_bank

# Another session: it replaces the built-in "gaussian" (with the usual warning) and registers a bank of
# its own in __main__, then saves a model fitted with its own bank and that model's features.
_SAVING_SESSION = textwrap.dedent(
    """
    import sys, warnings
    import joblib, numpy as np
    from sklearn.datasets import load_digits
    from skconvfeat import FixedConvTransformer, register_bank

    warnings.simplefilter("ignore")

    @register_bank("gaussian")
    def one_blob(kernel_size, n_channels):
        return np.ones((1, n_channels, *kernel_size))

    @register_bank("_session_diagonals")
    def diagonals(kernel_size, n_channels):
        kh, kw = kernel_size
        return np.stack([np.eye(kh, kw), -np.eye(kh, kw)[::-1]])[:, None].repeat(n_channels, axis=1)

    X = load_digits().data[:50]
    model = FixedConvTransformer("_session_diagonals", kernel_size=3, pool_grid=2).fit(X)
    joblib.dump((model, model.transform(X)), sys.argv[1])
    """
)


def _saved_model(tmp_path):
    path = tmp_path / "model.joblib"
    subprocess.run([sys.executable, "-c", _SAVING_SESSION, str(path)], check=True, timeout=120)
    return path


def test_loading_a_model_leaves_the_bank_registry_and_builtin_banks_alone(tmp_path):
    path = _saved_model(tmp_path)
    X = load_digits().data[:50]
    names = skconvfeat.list_banks()
    gaussian = make_bank("gaussian", kernel_size=3)
    n_features = FixedConvTransformer("gaussian", kernel_size=3, pool_grid=2).fit(X).n_features_out_

    model, features = joblib.load(path)

    assert skconvfeat.list_banks() == names
    np.testing.assert_array_equal(make_bank("gaussian", kernel_size=3), gaussian)
    assert FixedConvTransformer("gaussian", kernel_size=3, pool_grid=2).fit(X).n_features_out_ == n_features
    np.testing.assert_array_equal(model.transform(X), features)


def test_a_loaded_model_refits_with_its_own_banks(tmp_path):
    model, features = joblib.load(_saved_model(tmp_path))
    X = load_digits().data[:50]
    # Its clone (as GridSearchCV or FixedConvNet makes) and its re-pickled copy know the bank too,
    # while the process still does not.
    np.testing.assert_array_equal(clone(model).fit(X).transform(X), features)
    again = joblib.load(_dump(model, tmp_path / "again.joblib"))
    np.testing.assert_array_equal(clone(again).fit(X).transform(X), features)
    assert "_session_diagonals" not in skconvfeat.list_banks()


def _dump(model, path):
    joblib.dump(model, path)
    return path
