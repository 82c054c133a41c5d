"""Learned 1x1 channel mixing on frozen spatial kernels (``LearnedConvClassifier(train="mixing")``)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skconvfeat import FixedConvNet, FixedConvTransformer, LearnedConvClassifier

torch = pytest.importorskip("torch")
from skconvfeat.learned import _network  # noqa: E402

_LAYER = dict(kernel_size=3, padding="same", nonlinearity="relu", pool_size=2)


def _description(depth):
    if depth == 1:
        return FixedConvTransformer("gabor", **_LAYER)
    return FixedConvNet([("conv1", FixedConvTransformer("random", random_state=0, **_LAYER)),
                         ("conv2", FixedConvTransformer("random", random_state=1, bank_params={"n_filters": 8},
                                                        **_LAYER))])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


def _fit(depth, train, digits, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LearnedConvClassifier(_description(depth), train=train, max_epochs=3, early_stopping=False,
                                     random_state=0, **params).fit(*digits)


@pytest.mark.parametrize("depth", [1, 2])
def test_identity_mixing_is_the_fixed_network(depth, digits):
    # The head-only model's state, with identity mixing added after every layer: same logits.
    model = _fit(depth, "head", digits)
    state = dict(model._state)
    specs = [layer.layer_.spec for layer in ([model.conv_] if depth == 1 else [l for _, l in model.conv_.layers_])]
    plain = _network.build_network(specs, "last", None, state, [10], torch.float64, "cpu")
    for i, layer in enumerate(plain.layers):
        state[_network.mixing_key(i)] = _network.identity_mixing(layer.kernels.shape[0])  # "joint" channels
    mixed = _network.build_network(specs, "last", None, state, [10], torch.float64, "cpu")
    images = _network.to_tensor(np.random.default_rng(0).random((7, 8, 8, 1)), "cpu", torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(mixed(images).numpy(), plain(images).numpy(), rtol=1e-12, atol=1e-12)
    # ... and the head-only network is the fixed pipeline (float32 features): the head on the fixed features.
    fixed = model.conv_.transform(digits[0][:7].reshape(7, 8, 8))
    feats = (fixed - state["mean"]) / state["scale"]
    logits = feats @ state["head.0.weight"].T + state["head.0.bias"]
    np.testing.assert_allclose(model.decision_function(digits[0][:7]), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2])
def test_mixing_trains_the_recombination_and_never_the_spatial_kernels(depth, digits):
    model = _fit(depth, "mixing", digits)
    for before, after in zip(model.initial_filters_, model.filters_):
        assert np.array_equal(before, after)  # bit for bit: not even rounded through float32
    for i, before in enumerate(model.initial_filters_):
        mixing = model._state[_network.mixing_key(i)]
        assert mixing.shape == (before.shape[0], before.shape[0], 1, 1)
        assert not np.allclose(mixing, _network.identity_mixing(before.shape[0]))
    assert model.train_ == "mixing"


def test_trainable_parameter_counts_follow_what_is_trained(digits):
    counts = {train: _fit(2, train, digits).n_trainable_params_ for train in ("head", "mixing", "all")}
    head = counts["head"]
    assert counts["mixing"] == head + 16 * 16 + 8 * 8  # one 1x1 mixing a layer, maps x maps
    assert counts["all"] == head + 16 * 1 * 9 + 8 * 16 * 9  # every spatial kernel
    # freeze_kernels keeps its meaning: train="head".
    assert _fit(1, None, digits, freeze_kernels=True).train_ == "head"


def test_train_and_freeze_kernels_must_agree(digits):
    with pytest.raises(ValueError, match="'freeze_kernels' and 'train' parameters of LearnedConvClassifier disagree"):
        LearnedConvClassifier(freeze_kernels=True, train="mixing").fit(*digits)
    with pytest.raises(ValueError, match="'train' parameter of LearnedConvClassifier must be"):
        LearnedConvClassifier(train="kernels").fit(*digits)


def test_a_mixing_model_survives_pickling(digits):
    import pickle

    model = _fit(1, "mixing", digits)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(digits[0][:20]), model.predict_proba(digits[0][:20]))


# The scikit-learn contract with train="mixing" runs with the other modes' in test_learned.py.
