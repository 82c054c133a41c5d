"""Clear errors where a user's mistake used to give a raw TypeError, pass silently or name the wrong thing."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skconvfeat import FixedConvNet, FixedConvTransformer

X = np.random.default_rng(0).random((20, 8, 8))


@pytest.mark.parametrize("key", ["kernel_size", "random_state", "n_channels", "patches"])
def test_bank_params_may_not_set_what_the_layer_sets(key):
    with pytest.raises(ValueError, match=rf"'bank_params' parameter of FixedConvTransformer may not set \['{key}'\]"):
        FixedConvTransformer("gabor" if key != "random_state" else "random", bank_params={key: 5}).fit(X)


@pytest.mark.parametrize("shape", [(4, 0, 3), (4, 3, 0), (2, 0, 3, 3)])
def test_a_bank_with_an_empty_dimension_is_refused(shape):
    with pytest.raises(ValueError, match="'bank' parameter of FixedConvTransformer must hold kernels"):
        FixedConvTransformer(np.zeros(shape)).fit(X)


def test_fixed_conv_net_errors_name_the_layer():
    net = FixedConvNet([("first", FixedConvTransformer()), ("second", FixedConvTransformer(kernel_size=9,
                                                                                         padding="valid"))])
    with pytest.raises(ValueError, match=r"Layer 'second' \(2 of 2\) of FixedConvNet: The kernels \(9x9\)"):
        net.fit(X)


def test_image_folder_refuses_a_non_boolean_grayscale(tmp_path):
    pytest.importorskip("PIL")
    from skconvfeat.datasets import load_image_folder

    with pytest.raises(ValueError, match="'grayscale' parameter of load_image_folder must be an instance of 'bool'"):
        load_image_folder(tmp_path, grayscale="no")


def test_seed_errors_name_the_option(capsys):
    from skconvfeat.study._cli import main

    assert main(["--seed", "-5", "--no-transfer"]) == 2
    assert "argument --seed: The 'random_state' parameter" in capsys.readouterr().err


def test_warm_start_refuses_a_description_changed_since_fitting():
    pytest.importorskip("torch")
    from skconvfeat import LearnedConvClassifier

    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LearnedConvClassifier(FixedConvTransformer(kernel_size=3, random_state=np.random.RandomState(0)),
                                      warm_start=True, max_epochs=1, random_state=0).fit(X[:200], y[:200])
        model.fit(X[:200], y[:200])  # unchanged (a RandomState moves as it is used): continues
        model.set_params(conv__kernel_size=5)
        with pytest.raises(ValueError, match=r"'conv' changed since it was fitted \(kernel_size\)"):
            model.fit(X[:200], y[:200])
        model.set_params(conv__kernel_size=3, train="mixing")
        with pytest.raises(ValueError, match=r"changed since it was fitted \(train: 'all' -> 'mixing'\)"):
            model.fit(X[:200], y[:200])
