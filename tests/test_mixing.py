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


@pytest.mark.parametrize("depth", [1, 2])
def test_identity_normalisation_is_the_identity_in_evaluation_mode(depth, digits):
    model = _fit(depth, "head", digits)
    state = dict(model._state)
    specs = [layer.layer_.spec for layer in ([model.conv_] if depth == 1 else [l for _, l in model.conv_.layers_])]
    plain = _network.build_network(specs, "last", None, state, [10], torch.float64, "cpu")
    for i, layer in enumerate(plain.layers):
        state[_network.mixing_key(i)] = _network.identity_mixing(layer.kernels.shape[0])
        n_maps = layer.kernels.shape[0]
        rng = np.random.default_rng(i)  # any statistics: the scale and shift undo them
        state.update(_network.identity_norm(i, rng.normal(size=n_maps), rng.uniform(0.5, 50, size=n_maps)))
    normalised = _network.build_network(specs, "last", None, state, [10], torch.float64, "cpu")
    assert all(layer.norm is not None and not layer.norm.training for layer in normalised.layers)
    images = _network.to_tensor(np.random.default_rng(0).random((7, 8, 8, 1)), "cpu", torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(normalised(images).numpy(), plain(images).numpy(), rtol=1e-12, atol=1e-12)


def test_batch_norm_trains_with_the_mixing_and_predicts_with_its_running_statistics(digits):
    X, y = digits
    model = _fit(2, "mixing", digits, batch_norm=True)
    for before, after in zip(model.initial_filters_, model.filters_):
        assert np.array_equal(before, after)
    for i, n_maps in enumerate((16, 8)):
        keys = _network.norm_keys(i)
        assert model._state[keys["num_batches_tracked"]] > 0  # training updated the running statistics
        assert not np.allclose(model._state[keys["running_mean"]], 0)
        assert not np.allclose(model._state[keys["weight"]], np.sqrt(1 + _network.NORM_EPS))
        assert model._state[keys["weight"]].shape == (n_maps,)
    # Evaluation mode: an image's scores do not depend on the images predicted with it, and predicting
    # changes nothing (a second call gives the same scores).
    together = model.predict_proba(X[:20])
    np.testing.assert_allclose(np.vstack([model.predict_proba(X[:10]), model.predict_proba(X[10:20])]), together,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.predict_proba(X[:20]), together)
    assert model.n_trainable_params_ == _fit(2, "mixing", digits).n_trainable_params_ + 2 * (16 + 8)


def test_batch_norm_starts_as_the_fixed_network_in_training_mode_too(digits):
    """The normalisations start at the statistics of the maps entering them: after an epoch at a negligible
    rate (running statistics updated from training-mode batches, weights unchanged) the model predicts as
    the one without them. Started at zero mean and unit variance they divided MNIST-scale maps by tens."""
    X, y = digits
    common = dict(train="mixing", learning_rate=1e-12, max_epochs=1, early_stopping=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = LearnedConvClassifier(_description(2), **common).fit(X * 16, y)  # pixels up to 256, as MNIST's
        normed = LearnedConvClassifier(_description(2), batch_norm=True, **common).fit(X * 16, y)
    assert normed._state[_network.norm_keys(0)["running_var"]].max() > 100  # maps of that scale
    np.testing.assert_allclose(normed.decision_function(X[:50] * 16), plain.decision_function(X[:50] * 16),
                               rtol=0.05, atol=0.05)


def test_batch_norm_network_matches_a_numpy_reference(digits):
    """Without a nonlinearity and with average pooling, mixing and the evaluation-mode normalisation are
    per-pixel affine maps that commute with the pooling: the network is the fixed layer's NumPy features,
    mixed, normalised by the running statistics, standardised, then the head."""
    X, y = digits
    layer = FixedConvTransformer("gabor", kernel_size=3, padding="same", nonlinearity="none", pooling="avg",
                                 pool_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LearnedConvClassifier(layer, train="mixing", batch_norm=True, max_epochs=3, early_stopping=False,
                                      random_state=0).fit(X, y)
    state, keys = model._state, _network.norm_keys(0)
    fixed = model.conv_.transform(X[:15]).astype(np.float64)  # (n, maps * pixels), map-major
    n_maps = state[keys["weight"]].shape[0]
    maps = fixed.reshape(len(fixed), n_maps, -1)
    mixed = np.einsum("om,nmp->nop", state[_network.mixing_key(0)][:, :, 0, 0], maps)
    normed = ((mixed - state[keys["running_mean"]][:, None]) / np.sqrt(state[keys["running_var"]][:, None] + 1e-5)
              * state[keys["weight"]][:, None] + state[keys["bias"]][:, None])
    feats = (normed.reshape(len(fixed), -1) - state["mean"]) / state["scale"]
    logits = feats @ state["head.0.weight"].T + state["head.0.bias"]
    np.testing.assert_allclose(model.decision_function(X[:15]), logits, rtol=1e-4, atol=1e-4)


def test_batch_norm_is_refused_where_nothing_before_the_head_trains_and_on_a_changed_warm_start(digits):
    with pytest.raises(ValueError, match="'batch_norm' parameter of LearnedConvClassifier trains a normalisation"):
        LearnedConvClassifier(train="head", batch_norm=True).fit(*digits)
    with pytest.raises(ValueError, match="'batch_norm' parameter of LearnedConvClassifier trains a normalisation"):
        LearnedConvClassifier(freeze_kernels=True, batch_norm=True).fit(*digits)
    model = _fit(1, "mixing", digits, warm_start=True)
    with pytest.raises(ValueError, match=r"changed since it was fitted \(batch_norm: False -> True\)"):
        model.set_params(batch_norm=True).fit(*digits)


# The scikit-learn contract with train="mixing" (with and without batch_norm) runs with the other modes' in
# test_learned.py.
