"""The bank registry and the banks themselves, against reference arrays."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skconvfeat import list_banks, make_bank, register_bank

# Reference arrays (computed by hand from the documented formulas).
GAUSSIAN_3X3_SIGMA1 = np.array(
    [
        [0.07511361, 0.12384140, 0.07511361],
        [0.12384140, 0.20417996, 0.12384140],
        [0.07511361, 0.12384140, 0.07511361],
    ]
)


def test_list_banks_has_the_builtins():
    assert {"gaussian", "gabor", "sharpen", "random", "identity"} <= set(list_banks())
    assert list_banks() == sorted(list_banks())


def test_gaussian_reference():
    bank = make_bank("gaussian", kernel_size=3, sigmas=(1.0,))
    assert bank.shape == (1, 1, 3, 3)
    assert_allclose(bank[0, 0], GAUSSIAN_3X3_SIGMA1, atol=1e-8)


def test_sharpen_reference():
    bank = make_bank("sharpen", kernel_size=3, strengths=(1.0,), sigma=1.0)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    assert_allclose(bank[0, 0], 2 * delta - GAUSSIAN_3X3_SIGMA1, atol=1e-8)
    assert_allclose(bank.sum(axis=(2, 3)), 1.0)  # unsharp masks keep flat regions


def test_gabor_zero_mean_unit_norm():
    bank = make_bank("gabor", kernel_size=7, n_orientations=6, frequencies=(0.1, 0.25), phases=(0,))
    assert bank.shape == (12, 1, 7, 7)
    assert_allclose(bank.sum(axis=(2, 3)), 0, atol=1e-12)
    assert_allclose(np.linalg.norm(bank.reshape(12, -1), axis=1), 1)
    # Orientation 90 degrees is orientation 0 transposed.
    four = make_bank("gabor", kernel_size=7, n_orientations=4, frequencies=(0.25,), phases=(0,))
    assert_allclose(four[2, 0], four[0, 0].T, atol=1e-12)


def test_random_is_seeded_and_normalised():
    a = make_bank("random", kernel_size=5, n_channels=3, n_filters=8, random_state=0)
    b = make_bank("random", kernel_size=5, n_channels=3, n_filters=8, random_state=0)
    c = make_bank("random", kernel_size=5, n_channels=3, n_filters=8, random_state=1)
    assert a.shape == (8, 3, 5, 5)
    assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert_allclose(np.linalg.norm(a.reshape(8, -1), axis=1), 1)
    assert_allclose(a.mean(axis=(1, 2, 3)), 0, atol=1e-12)


def test_identity_picks_each_channel():
    bank = make_bank("identity", kernel_size=5, n_channels=3)
    assert bank.shape == (3, 3, 1, 1)
    assert_array_equal(bank[:, :, 0, 0], np.eye(3))


def test_named_banks_spread_over_channels():
    grey = make_bank("gaussian", kernel_size=3)
    rgb = make_bank("gaussian", kernel_size=3, n_channels=3)
    assert_allclose(rgb.sum(axis=1), grey[:, 0])


def test_typo_lists_names_and_closest():
    with pytest.raises(ValueError, match=r"must be one of .*'gabor'.*Got 'gabr' instead\. Did you mean 'gabor'\?"):
        make_bank("gabr")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_size=0), "'kernel_size' parameter of make_bank must be a positive int"),
        (dict(kernel_size=(3, 2.5)), "'kernel_size'"),
        (dict(n_channels=0), "'n_channels'"),
        (dict(sigmas=(1.0, -2.0)), "'sigmas' parameter of the 'gaussian' bank"),
        (dict(sigma=1.0), r"unexpected parameter\(s\) \['sigma'\]; its parameters are \['sigmas'\]"),
    ],
)
def test_bad_bank_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_bank("gaussian", **kwargs)


def test_register_custom_bank():
    @register_bank("test-box")
    def box(kernel_size, n_channels, value=1.0):
        return np.full((1, n_channels, *kernel_size), value)

    assert "test-box" in list_banks()
    assert_array_equal(make_bank("test-box", kernel_size=2, value=3.0), np.full((1, 1, 2, 2), 3.0))


def test_register_bank_warns_when_it_replaces_a_name():
    from skconvfeat._banks import _REGISTRY

    original = _REGISTRY["gaussian"]
    try:
        with pytest.warns(UserWarning, match="'gaussian' is already registered"):

            @register_bank("gaussian")
            def my_gaussian(kernel_size, n_channels):
                return np.ones((1, n_channels, *kernel_size))

        assert make_bank("gaussian", kernel_size=3).sum() == 9
    finally:
        _REGISTRY["gaussian"] = original
