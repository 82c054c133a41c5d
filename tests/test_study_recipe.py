"""The learned arms' training recipe by design and dataset, and the holdout design's input standardisation."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skconvfeat.study import StudySettings, _design, _splits, learned_recipe, run_study


def test_cross_validation_uses_the_small_data_recipe():
    assert learned_recipe("cv", "digits") == _design.LEARNED
    fast = StudySettings(small_recipe={**_design.LEARNED, "max_epochs": 3})
    assert fast.learned_recipe("cv")["max_epochs"] == 3 and fast.learned_recipe("holdout")["max_epochs"] == 10


@pytest.mark.parametrize("dataset, augment", [("cifar10-jpeg", True), ("cifar10", True), ("mnist", False)])
def test_official_splits_use_the_large_recipe_and_augment_photographs_only(dataset, augment):
    recipe = learned_recipe("holdout", dataset)
    assert recipe["learning_rate"] == _design.LEARNED_LARGE["learning_rate"] != _design.LEARNED["learning_rate"]
    assert recipe["lr_schedule"] == "cosine"
    assert recipe["augment"] is augment


@pytest.mark.parametrize("n_train, large", [(None, True), (50_000, True), (10_001, True), (10_000, False), (2_000, False)])
def test_official_splits_subsampled_to_small_sizes_take_the_small_recipe(n_train, large):
    # The large recipe's 10 epochs left a 2,000-image MNIST network still improving (89.1% against 94.7%).
    recipe = learned_recipe("holdout", "cifar10-jpeg", n_train=n_train)
    expected = _design.LEARNED_LARGE if large else _design.LEARNED
    assert {k: recipe[k] for k in expected if k != "augment"} == {k: v for k, v in expected.items() if k != "augment"}
    assert recipe["augment"] is True  # photographs are augmented on an official split either way
    assert learned_recipe("cv", "digits", n_train=n_train) == _design.LEARNED


@pytest.mark.parametrize("kwargs, name, given", [
    ({"n_train": 0}, "n_train", "0"), ({"n_train": 2.5}, "n_train", "2.5"), ({"n_train": "2000"}, "n_train", "'2000'"),
    ({"design": "hold"}, "design", "'hold'"),
])
def test_learned_recipe_refuses_bad_arguments_by_name(kwargs, name, given):
    arguments = {"design": "holdout", "dataset": "mnist", **kwargs}
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of learned_recipe must be .* Got {given} instead"):
        learned_recipe(**arguments)


def test_run_study_sizes_the_recipe_by_its_training_images():
    digits = load_digits()
    images, target = digits.images[:400], digits.target[:400]
    settings = StudySettings(dataset="mnist", banks=("gabor",), train_size=200, n_seeds=1)
    results = run_study(images[:300], target[:300], settings, test_images=images[300:], test_target=target[300:])
    assert results["learned_training"]["learning_rate"] == _design.LEARNED["learning_rate"]
    assert results["learned_training"]["max_epochs"] == _design.LEARNED["max_epochs"]


def test_learned_params_override_the_recipe_and_are_stated_in_the_results():
    digits = load_digits()
    settings = StudySettings(banks=("gabor",), n_splits=2, n_repeats=1,
                             learned_params={"max_epochs": 1, "augment": {"crop_padding": 1}})
    results = run_study(digits.images[:300], digits.target[:300], settings)
    training = results["learned_training"]
    assert training["max_epochs"] == 1
    assert training["augmentation"] == "crop_padding 1"
    learned = next(a for a in results["arms"] if a["name"] == "learned")
    assert learned["converged"] == [False, False]  # one epoch cannot satisfy the patience rule


@pytest.mark.parametrize("key", ["random_state", "conv", "max_epoch"])
def test_learned_params_refuse_per_arm_and_unknown_keys(key):
    with pytest.raises(ValueError, match=rf"'learned_params' parameter of StudySettings may set .*{key}"):
        StudySettings(learned_params={key: 1})


def test_standardise_channels_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(30, 4, 4, 3)).astype(np.float32)
    images[..., 2] = 7.0  # a constant channel must not become NaN
    expected = images.astype(np.float64).copy()
    for c in range(3):  # independent slow reference: one channel at a time, training rows only
        values = expected[:20, :, :, c].ravel()
        std = values.std() or 1.0
        expected[..., c] = (expected[..., c] - values.mean()) / std
    out = _splits.standardise_channels(images.copy(), 20)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(out).all()
    train = out[:20]
    np.testing.assert_allclose(train[..., :2].mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(train[..., :2].std(axis=(0, 1, 2)), 1, atol=1e-5)
