"""Presets build valid, clonable transformers that fit and transform images of their datasets' shapes."""

import copy

import numpy as np
import pytest
from sklearn.base import clone

from skconvfeat import PRESETS, FixedConvTransformer, make_preset

# preset: the image shape it is meant for, and its scale of pixel values.
SHAPES = {
    "coates-cifar10": ((32, 32, 3), 255),
    "coates-cifar10-1600": ((32, 32, 3), 255),
    "nearest-cifar10": ((32, 32, 3), 255),
    "coates-mnist": ((28, 28), 255),
    "coates-mnist-grid4": ((28, 28), 255),
    "coates-digits": ((8, 8), 16),
}


def test_every_preset_is_described_here():
    assert set(PRESETS) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_get_params_and_clone(name):
    conv = make_preset(name, random_state=0)
    params = conv.get_params()
    assert {key: params[key] for key in PRESETS[name]} == PRESETS[name]
    cloned = clone(conv)
    assert cloned.get_params() == params
    assert FixedConvTransformer(**params).get_params() == params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_fits_and_transforms_its_images(name):
    shape, top = SHAPES[name]
    images = np.random.default_rng(0).uniform(0, top, size=(6, *shape))
    # Fewer filters and patches than the real preset, so the test stays fast; the rest is the preset's.
    conv = make_preset(name, bank_params={"n_filters": 8}, n_patches=2_000, random_state=0).fit(images)
    features = conv.transform(images)
    n_maps = 8 * (2 if conv.nonlinearity.startswith("two_sided") else 1)  # two maps per filter
    assert features.shape == (6, n_maps * conv.pool_grid**2) == (6, conv.n_features_out_)
    assert np.isfinite(features).all() and (features >= 0).all() and features.any()


def test_overrides_win_and_leave_the_preset_untouched():
    before = copy.deepcopy(PRESETS)
    conv = make_preset("coates-cifar10", pool_grid=2, eps_zca=0.1)
    assert (conv.pool_grid, conv.eps_zca, conv.bank) == (2, 0.1, "kmeans")
    make_preset("coates-mnist").bank_params["n_filters"] = 5  # edited in place by a user
    assert PRESETS == before


def test_unknown_preset_names_the_choices_and_the_closest():
    with pytest.raises(ValueError, match=r"'name' parameter of make_preset must be one of .*Got 'coates-cifar' instead\. "
                                         r"Did you mean 'coates-cifar10'\?"):
        make_preset("coates-cifar")
