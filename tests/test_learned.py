"""LearnedConvClassifier: a fixed network's description with its kernels trained in PyTorch."""

import itertools
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import FixedConvNet, FixedConvTransformer

torch = pytest.importorskip("torch")

from skconvfeat.learned import LearnedConvClassifier, transfer_bank  # noqa: E402

# Few epochs wherever the result of training does not matter: keeps the file fast.
QUICK = dict(max_epochs=2, random_state=0)
CONV3 = FixedConvTransformer(kernel_size=3)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def digits_model(digits_split):
    X_train, _, y_train, _ = digits_split
    return LearnedConvClassifier(random_state=0).fit(X_train, y_train)


# Every fit here is seeded: tests/conftest.py checks that no test draws from np.random's global state.


def _images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape)


def _two_layers(**kw):
    return FixedConvNet([
        ("conv1", FixedConvTransformer("random", kernel_size=3, padding="same", pooling="max", random_state=0)),
        ("conv2", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=1)),
    ], **kw)


# -- (1) at initialisation, the torch network is the fixed network ----------------

# Every nonlinearity x padding x (grey/sum, colour/sum, colour/separate), with
# the pooling and kernel shape cycling so that each pooling kind (avg/max,
# window/overlapping window/grid) meets odd and even kernels.
_POOLINGS = [
    dict(pooling="avg", pool_size=2),
    dict(pooling="max", pool_size=2, pool_stride=1),
    dict(pooling="avg", pool_grid=2),
    dict(pooling="max", pool_grid=(2, 3)),
    dict(pooling="max", pool_size=(1, 2)),
    dict(pooling="avg", pool_size=1),
]
_KERNELS = [3, (2, 4), 4, (3, 2), 5]
_CHANNELS = [("sum", 1), ("sum", 3), ("separate", 3)]
_LAYER_GRID = [
    dict(nonlinearity=nl, padding=pad, channel_mode=mode, n_channels=c,
         kernel_size=_KERNELS[i % len(_KERNELS)], **_POOLINGS[i % len(_POOLINGS)])
    for i, (nl, pad, (mode, c)) in enumerate(
        itertools.product(["none", "relu", "abs", "square", "two_sided_relu"], ["valid", "same", "reflect"], _CHANNELS)
    )
]


def _grid_id(cfg):
    return "-".join(str(v) for v in cfg.values()).replace(" ", "")


def _initial_features(conv, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        learned = LearnedConvClassifier(conv, freeze_kernels=True, early_stopping=False, max_epochs=1,
                                        random_state=0).fit(X, y)
    return learned, _features(learned, X, standardise=False)


def _features(est, X, standardise=True):
    """The fitted network's (standardised) features of ``X`` in float64, before the head."""
    import torch

    from skconvfeat.learned import _network

    net = est._network(torch.float64, torch.device("cpu"))
    with torch.no_grad():
        return net.features(_network.to_tensor(est._images(X), "cpu", torch.float64), standardise).numpy()


@pytest.mark.parametrize("cfg", _LAYER_GRID, ids=[_grid_id(c) for c in _LAYER_GRID])
def test_one_layer_network_equals_the_fixed_transformer(cfg):
    cfg = dict(cfg)
    n_channels = cfg.pop("n_channels")
    X = _images((7, 9, 10, n_channels) if n_channels > 1 else (7, 9, 10))
    conv = FixedConvTransformer(bank="random", random_state=3, device="cpu", **cfg)
    fixed = clone(conv).fit_transform(X)
    learned, feats = _initial_features(conv, X, np.arange(7) % 2)
    assert learned.n_features_out_ == fixed.shape[1] == feats.shape[1]
    assert_allclose(feats, fixed, rtol=1e-5, atol=1e-5 * np.abs(fixed).max())


@pytest.mark.parametrize("n_channels", [1, 3])
def test_images_become_a_fresh_channels_last_tensor(n_channels):
    # One grey channel: the NHWC -> NCHW view counts as contiguous to NumPy, which used to hand it over
    # uncopied, so torch shared (and training could write) the caller's read-only array.
    from skconvfeat.learned import _network

    images = np.random.default_rng(0).random((5, 6, 7, n_channels), dtype=np.float32)
    images.flags.writeable = False
    x = _network.to_tensor(images, "cpu", torch.float32)
    assert x.shape == (5, n_channels, 6, 7)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert_array_equal(x.numpy(), images.transpose(0, 3, 1, 2))
    x[0, 0, 0, 0] = -1.0  # writable, and not the caller's array
    assert images[0, 0, 0, 0] >= 0


def test_flat_rows_and_image_arrays_agree():
    X = _images((6, 8, 8))
    y = np.arange(6) % 3
    est = LearnedConvClassifier(FixedConvTransformer(kernel_size=3, padding="same"), **QUICK).fit(X, y)
    assert est.image_shape_ == (8, 8, 1)
    assert est.n_features_in_ == 64
    # Two memory layouts through BLAS may round differently (1 ulp on AVX-512 CPUs):
    # the promise is the same model, not the same bits.
    assert_allclose(est.decision_function(X), est.decision_function(X.reshape(6, -1)),
                    rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "net",
    [
        _two_layers(),
        _two_layers(output="all", output_grid=2),
        FixedConvNet([
            ("a", FixedConvTransformer("gabor", kernel_size=3, padding="reflect", nonlinearity="abs", pool_size=1)),
            ("b", FixedConvTransformer("gaussian", kernel_size=(2, 3), nonlinearity="two_sided_relu",
                                       channel_mode="separate", pooling="max", pool_grid=(2, 3))),
            ("c", FixedConvTransformer("random", kernel_size=1, random_state=0, pool_size=1)),
        ], output="all"),
    ],
    ids=["two-layers", "all-grid", "three-layers"],
)
def test_multi_layer_network_equals_the_fixed_network(net):
    X = _images((6, 10, 9, 2))
    fixed = clone(net).fit_transform(X)
    learned, feats = _initial_features(net, X, np.arange(6) % 3)
    assert [f.shape for f in learned.initial_filters_] == [f.shape for f in learned.filters_]
    assert_allclose(feats, fixed, rtol=1e-5, atol=1e-5 * np.abs(fixed).max())


def test_training_starts_at_the_standardised_fixed_features(digits_split):
    X_train, X_test, y_train, _ = digits_split
    est = LearnedConvClassifier(_two_layers(), freeze_kernels=True, **QUICK).fit(X_train, y_train)
    # The banks and the standardisation are fitted on the training part of the split.
    train_part = X_train[np.isin(np.arange(len(X_train)), _training_indices(est, y_train))]
    scaler = StandardScaler().fit(_two_layers().fit_transform(train_part))
    expected = scaler.transform(_two_layers().fit(train_part).transform(X_test))
    got = _features(est, X_test)
    assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _training_indices(est, y):
    """The training part of fit's validation split, redrawn with the same seed."""
    from sklearn.utils import check_random_state

    return est._split(y, check_random_state(est.random_state))[0]


# -- (2) frozen vs learned kernels -----------------------------------------------


@pytest.mark.parametrize("channel_mode", ["sum", "separate"])
def test_freeze_kernels(channel_mode):
    X = _images((40, 8, 8, 3))
    y = (X[:, :4, :4].mean(axis=(1, 2, 3)) > 0).astype(int)
    conv = FixedConvTransformer(kernel_size=3, channel_mode=channel_mode)
    common = dict(max_epochs=3, early_stopping=False, random_state=0)
    frozen = LearnedConvClassifier(conv, freeze_kernels=True, **common).fit(X, y)
    assert frozen.filters_[0].dtype == np.float64
    assert_array_equal(frozen.filters_[0], frozen.initial_filters_[0])
    learned = LearnedConvClassifier(conv, **common).fit(X, y)
    assert_array_equal(learned.initial_filters_[0], frozen.initial_filters_[0])
    assert np.abs(learned.filters_[0] - learned.initial_filters_[0]).max() > 1e-3
    assert [h["train_loss"] for h in frozen.history_] != [h["train_loss"] for h in learned.history_]


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("shape, grid", [((12, 8), (4, 2)), ((12, 8), (5, 3)), ((7, 7), (1, 1))])
def test_grid_pooling_is_adaptive_pooling_forward_and_backward(pooling, shape, grid):
    """The shortcut for grids that divide the maps (plain windows) gives adaptive pooling's cells and gradients."""
    import torch.nn.functional as F

    from skconvfeat.learned._network import grid_pool

    maps = torch.randn(3, 4, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    adaptive = F.adaptive_avg_pool2d if pooling == "avg" else F.adaptive_max_pool2d
    ours, reference = maps.clone().requires_grad_(), maps.clone().requires_grad_()
    weights = torch.randn(3, 4, *grid, dtype=torch.float64)
    out, expected = grid_pool(ours, grid, pooling), adaptive(reference, grid)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert_allclose(ours.grad.numpy(), reference.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_frozen_kernels_reuse_the_set_up_features(how, monkeypatch):
    """Frozen kernels train on the features the standardisation was fitted on: the torch network
    never recomputes them (one pass over the images, not two), and training matches the recomputed
    features' run up to float32 rounding."""
    from skconvfeat.learned import _network

    X = _images((40, 8, 8, 1))
    y = (X[:, :4, :4].mean(axis=(1, 2, 3)) > 0).astype(int)
    common = dict(freeze_kernels=True, max_epochs=2, early_stopping=False, random_state=0)
    calls = []
    features = _network.ConvNetwork.features
    monkeypatch.setattr(_network.ConvNetwork, "features", lambda net, x, **kw: calls.append(1) or features(net, x, **kw))
    est = LearnedConvClassifier(FixedConvTransformer(kernel_size=3), **common)
    est.fit(X, y) if how == "fit" else est.partial_fit(X, y, classes=[0, 1])
    assert calls == []
    # The second partial_fit has no set-up features: the network computes them, to the same training.
    again = LearnedConvClassifier(FixedConvTransformer(kernel_size=3), **common).partial_fit(X, y, classes=[0, 1])
    again.partial_fit(X, y)
    assert calls
    if how == "partial_fit":
        est.partial_fit(X, y)
        assert_allclose(est.decision_function(X), again.decision_function(X), rtol=1e-4, atol=1e-5)


def test_every_layer_is_trained_end_to_end(digits_split):
    X_train, _, y_train, _ = digits_split
    est = LearnedConvClassifier(_two_layers(), early_stopping=False, **QUICK).fit(X_train[:300], y_train[:300])
    for before, after in zip(est.initial_filters_, est.filters_):
        assert np.abs(after - before).max() > 1e-3


# -- (3) training: learns, stops on validation, continues ---------------------------


def test_learns_digits(digits_split, digits_model):
    _, X_test, _, y_test = digits_split
    assert digits_model.score(X_test, y_test) > 0.9
    assert digits_model.n_iter_ == len(digits_model.history_) <= digits_model.max_epochs
    assert_array_equal(digits_model.classes_, np.arange(10))
    proba = digits_model.predict_proba(X_test)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(digits_model.classes_[proba.argmax(axis=1)], digits_model.predict(X_test))


def test_early_stopping_judges_the_validation_split_and_keeps_the_best_epoch(digits_split, digits_model):
    X_train, _, y_train, _ = digits_split
    history = digits_model.history_
    accuracies = [h["valid_accuracy"] for h in history]
    assert digits_model.converged_ and digits_model.n_iter_ < digits_model.max_epochs
    best = digits_model.best_epoch_
    # Stopped n_iter_no_change epochs after the best validation accuracy, whatever the training loss did.
    assert digits_model.n_iter_ == best + digits_model.n_iter_no_change
    assert accuracies[best - 1] == max(accuracies)
    assert all(a <= accuracies[best - 1] + digits_model.tol for a in accuracies[best:])
    # The weights kept are those of the best epoch: their validation accuracy is the best one.
    valid = np.setdiff1d(np.arange(len(y_train)), _training_indices(digits_model, y_train))
    assert digits_model.score(X_train[valid], y_train[valid]) == pytest.approx(accuracies[best - 1])


def test_no_early_stopping_trains_max_epochs_and_warns_when_still_improving():
    X = _images((30, 8, 8))
    y = np.arange(30) % 3
    with pytest.warns(ConvergenceWarning, match="max_epochs=3 while the training loss was still improving"):
        est = LearnedConvClassifier(CONV3, early_stopping=False, max_epochs=3, random_state=0).fit(X, y)
    assert est.n_iter_ == 3 and not est.converged_ and est.best_epoch_ is None
    assert all(h["valid_accuracy"] is None for h in est.history_)
    with pytest.warns(ConvergenceWarning, match="validation accuracy was still improving"):
        LearnedConvClassifier(CONV3, max_epochs=1, random_state=0).fit(X, y)


def test_partial_fit_is_one_epoch_and_warm_start_continues(digits_split):
    X_train, _, y_train, _ = digits_split
    X, y = X_train[:200], y_train[:200]
    est = LearnedConvClassifier(CONV3, random_state=0)
    est.partial_fit(X, y, classes=np.arange(10))
    assert est.n_iter_ == 1 and len(est.history_) == 1
    est.partial_fit(X, y)
    assert est.n_iter_ == 2
    # Two partial_fit calls are two epochs of fit (same seed, same order of batches).
    full = LearnedConvClassifier(CONV3, early_stopping=False, max_epochs=2, random_state=0).fit(X, y)
    assert_allclose([h["train_loss"] for h in est.history_], [h["train_loss"] for h in full.history_], rtol=1e-5)
    assert_allclose(est.filters_[0], full.filters_[0], rtol=1e-5, atol=1e-7)
    # warm_start: a second fit continues from the first one's weights and optimiser state.
    warm = LearnedConvClassifier(CONV3, early_stopping=False, max_epochs=1, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        warm.fit(X, y)
    assert warm.n_iter_ == 2
    assert_allclose([h["train_loss"] for h in warm.history_], [h["train_loss"] for h in full.history_], rtol=1e-5)
    cold = clone(warm).set_params(warm_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold.fit(X, y).fit(X, y)
    assert cold.n_iter_ == 1
    with pytest.raises(ValueError, match="classes cannot change"):
        est.partial_fit(X[:5], np.array([0, 1, 2, 3, 11]))


def test_augmentation_off_by_default_and_recorded(digits_split, digits_model):
    assert digits_model.augmentation_ == {"crop_padding": 0, "horizontal_flip": False}
    X_train, _, y_train, _ = digits_split
    est = LearnedConvClassifier(CONV3, augment=True, **QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_train[:100], y_train[:100])
    assert est.augmentation_ == {"crop_padding": 1, "horizontal_flip": True}  # 8x8 images: 8 // 8
    est.set_params(augment={"crop_padding": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_train[:100], y_train[:100])
    assert est.augmentation_ == {"crop_padding": 2, "horizontal_flip": True}
    with pytest.raises(ValueError, match="'augment' parameter of LearnedConvClassifier takes the keys"):
        est.set_params(augment={"flip": True}).fit(X_train[:100], y_train[:100])


def test_augmenter_shifts_and_mirrors():
    from skconvfeat.learned._training import augmenter

    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).reshape(2, 1, 4, 5) + 1
    flipped = augmenter(0, True, np.random.default_rng(0))(x.repeat(16, 1, 1, 1))
    # Every image is itself or its mirror, and both happen.
    same = (flipped == x.repeat(16, 1, 1, 1)).flatten(1).all(1)
    mirrored = (flipped == x.repeat(16, 1, 1, 1).flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and bool(same.any()) and bool(mirrored.any())
    shifted = augmenter(1, False, np.random.default_rng(0))(x.repeat(16, 1, 1, 1))
    # A shift by at most one pixel: each output is a window of the zero-padded image.
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = {(i, dy, dx): padded[i, 0, dy : dy + 4, dx : dx + 5] for i in range(2) for dy in range(3) for dx in range(3)}
    for k, img in enumerate(shifted):
        assert any(torch.equal(img[0], windows[(k % 2, dy, dx)]) for dy in range(3) for dx in range(3))


def test_lr_schedule_cosine():
    X = _images((20, 6, 6))
    est = LearnedConvClassifier(CONV3, lr_schedule="cosine", early_stopping=False, max_epochs=4,
                                learning_rate=0.01, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, np.arange(20) % 2)
    assert_allclose([h["learning_rate"] for h in est.history_], [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.005,
                                                                   0.01 * (1 + np.cos(3 * np.pi / 4)) / 2])


def test_non_finite_loss_is_a_clear_error():
    # Finite in float64 (the fixed transform), beyond float32's range in training.
    conv = FixedConvTransformer(bank=np.full((2, 3, 3), 1e30), dtype="float64")
    X = _images((20, 6, 6)) * 1e10
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1, step 1. LearnedConvClassifier"):
        LearnedConvClassifier(conv, early_stopping=False, **QUICK).fit(X, np.arange(20) % 2)


def test_reproducible_with_random_state(digits_split, digits_model):
    X_train, X_test, y_train, _ = digits_split
    again = LearnedConvClassifier(random_state=0).fit(X_train, y_train)
    assert_array_equal(again.filters_[0], digits_model.filters_[0])
    assert again.history_[-1]["train_loss"] == digits_model.history_[-1]["train_loss"]
    assert_array_equal(again.predict_proba(X_test), digits_model.predict_proba(X_test))


def test_thread_rule_gives_mnist_sized_steps_more_threads_than_digits():
    """One torch thread per 5e6 multiply-adds of a step: digits' 128-image steps (~1e6) train on one
    thread, the 1-layer MNIST network's (1.4e7) on up to the cores the BLAS limit allows."""
    from skconvfeat._backend import cpu_threads
    from skconvfeat.learned._training import torch_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_threads(torch.device("cpu"), 1e6):
            assert torch.get_num_threads() == 1
        with torch_threads(torch.device("cpu"), 1.4e7):
            assert torch.get_num_threads() == min(2, cpu_threads())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_torch_threads_blocks_closing_out_of_order_restore_the_setting(monkeypatch):
    """Blocks open in two threads at once share torch's one setting: the smallest open cap holds while
    any is open, and the count from before comes back when both close, whatever the order (a
    save-and-restore per block left the second block's cap behind and lifted the first's too early)."""
    from skconvfeat.learned import _training

    monkeypatch.setattr(_training, "cpu_threads", lambda: 8)  # the rule, not this machine's core count
    cpu, before = torch.device("cpu"), torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        wide, narrow = _training.torch_threads(cpu, 3 * 5e6), _training.torch_threads(cpu, 1e6)
        wide.__enter__()
        assert torch.get_num_threads() == 3
        narrow.__enter__()
        assert torch.get_num_threads() == 1
        wide.__exit__(None, None, None)
        assert torch.get_num_threads() == 1  # the narrow block is still open
        narrow.__exit__(None, None, None)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_torch_threads_restored(digits_split):
    X_train, _, y_train, _ = digits_split
    before = torch.get_num_threads()
    LearnedConvClassifier(**QUICK).fit(X_train[:300], y_train[:300]).predict(X_train[:10])
    assert torch.get_num_threads() == before


def test_mlp_head_and_two_classes():
    X = _images((60, 8, 8))
    y = np.where(X[:, :, :4].mean(axis=(1, 2)) > 0, "left", "right")
    est = LearnedConvClassifier(CONV3, head="mlp", hidden_units=7, max_epochs=20, early_stopping=False,
                                random_state=0).fit(X, y)
    assert est._state["head.0.weight"].shape == (7, est.n_features_out_)
    scores = est.decision_function(X)
    assert scores.shape == (60,)
    assert_allclose(est.predict_proba(X)[:, 1], 1 / (1 + np.exp(-scores)))
    assert_array_equal(est.predict(X), est.classes_[(scores > 0).astype(int)])
    assert est.score(X, y) > 0.8


def test_verbose_prints_the_epochs(capsys):
    X = _images((20, 6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        LearnedConvClassifier(CONV3, verbose=1, **QUICK).fit(X, np.arange(20) % 2)
    assert "epoch 2: train loss" in capsys.readouterr().out


# -- (4) scikit-learn plumbing -----------------------------------------------------


def test_clone_pickle_pipeline(tmp_path, digits_split, digits_model):
    _, X_test, _, _ = digits_split
    copy = clone(digits_model)
    assert copy.get_params()["random_state"] == 0 and not hasattr(copy, "filters_")
    path = tmp_path / "model.joblib"
    joblib.dump(digits_model, path)
    loaded = joblib.load(path)
    assert_array_equal(loaded.predict_proba(X_test), digits_model.predict_proba(X_test))
    # No live torch objects in the fitted state.
    assert all(isinstance(v, np.ndarray) for v in loaded._state.values())
    assert "torch" not in str(joblib.hash(loaded._optimizer_state)) and not _holds_tensors(vars(loaded))


def _holds_tensors(obj):
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, dict):
        return any(_holds_tensors(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return any(_holds_tensors(v) for v in obj)
    return False


def test_in_pipeline_and_grid_search_over_the_description(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    pipe = Pipeline([("scale", MinMaxScaler()), ("cnn", LearnedConvClassifier(CONV3, max_epochs=5, random_state=0))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X_train[:500], y_train[:500])
        assert pipe.score(X_test, y_test) > 0.8
        search = GridSearchCV(
            LearnedConvClassifier(_two_layers(), max_epochs=2, random_state=0),
            {"conv__conv1__bank": ["random", "gabor"], "freeze_kernels": [False, True]},
            cv=2,
        ).fit(X_train[:200], y_train[:200])
    assert set(search.cv_results_["param_conv__conv1__bank"]) == {"random", "gabor"}
    assert search.best_estimator_.filters_[1].shape == (16, 16, 3, 3)


@pytest.mark.parametrize("conv", [CONV3, _two_layers()], ids=["one-layer", "two-layers"])
def test_transfer_learned_kernels_to_other_classes(digits_split, conv):
    """Kernels learned on digits 0-4, used as a fixed bank on digits 5-9."""
    X_train, X_test, y_train, y_test = digits_split
    first, second = y_train < 5, y_train >= 5
    learned = LearnedConvClassifier(conv, random_state=0).fit(X_train[first], y_train[first])
    fixed = transfer_bank(learned)
    assert type(fixed) is type(conv)
    banks = [fixed.bank] if isinstance(fixed, FixedConvTransformer) else [l.bank for _, l in fixed.layers]
    for bank, filters in zip(banks, learned.filters_, strict=True):
        assert_array_equal(bank, filters)
    model = make_pipeline(transfer_bank(learned), StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(X_train[second], y_train[second])
    assert model.score(X_test[y_test >= 5], y_test[y_test >= 5]) > 0.9


def _predict_in_child(model, X, queue):
    queue.put(model.predict(X))


def test_predict_in_a_fork_started_child_does_not_hang():
    """torch's OpenMP pool does not survive fork(): the child must not wait on it (issue 12).

    Big enough that predict runs torch on two threads in the parent and, without
    the fork hook, in the child too, where it hung (checked by removing the hook).
    """
    X = _images((256, 32, 32))
    y = np.arange(256) % 2
    conv = FixedConvTransformer("random", bank_params={"n_filters": 32}, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LearnedConvClassifier(conv, max_epochs=1, early_stopping=False, random_state=0).fit(X[:20], y[:20])
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a parent whose torch has run on several threads
    try:
        expected = model.predict(X)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_predict_in_child, args=(model, X, queue))
        child.start()
        child.join(timeout=60)
        hung = child.is_alive()
        if hung:
            child.kill()
        assert not hung, "predict hung in a fork-started child"
        assert child.exitcode == 0
        assert_array_equal(queue.get(timeout=5), expected)
    finally:
        torch.set_num_threads(before)


# torch used first, the model loaded next, then a fork: the package has not imported its own torch
# modules before the fork, so a hook registered by them would come too late.
_TORCH_FIRST_THEN_FORK = """
import multiprocessing, sys
import numpy as np
import torch
torch.set_num_threads(2)
a = torch.randn(600, 600)
(a @ a).sum()
torch.nn.functional.conv2d(torch.randn(64, 8, 32, 32), torch.randn(16, 8, 5, 5)).sum()
import joblib
model = joblib.load(sys.argv[1])
X = np.random.default_rng(1).random((2000, 32, 32, 3))

def predict(_):
    return model.predict(X).tolist()

with multiprocessing.get_context("fork").Pool(2) as pool:
    first, second = pool.map(predict, range(2))
assert first == second == model.predict(X).tolist()
print("ok")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_fork_safety_does_not_depend_on_import_order(tmp_path):
    # Colour images and enough kernels that predict runs torch on two threads (it hung so, 2 of 2 runs).
    X = np.random.default_rng(0).random((20, 32, 32, 3))
    conv = FixedConvTransformer("gabor", kernel_size=5, padding="same", pool_grid=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LearnedConvClassifier(conv, max_epochs=1, early_stopping=False, random_state=0).fit(X, np.arange(20) % 2)
    joblib.dump(model, tmp_path / "model.joblib")
    # Without the thread limits the suite may run under, as a user's session, with an OpenMP pool
    # of several threads; in a process group of its own, so that hung pool workers die with it.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    child = subprocess.Popen([sys.executable, "-c", _TORCH_FIRST_THEN_FORK, str(tmp_path / "model.joblib")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    try:
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("predict hung in a fork-started pool of a process that used torch before loading the model")
    assert child.returncode == 0, err
    assert out.strip() == "ok"


# -- (5) clear errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(head="mpl"), InvalidParameterError, "'head' parameter of LearnedConvClassifier"),
        (dict(max_epochs=0), InvalidParameterError, "'max_epochs' parameter of LearnedConvClassifier"),
        (dict(learning_rate=0.0), InvalidParameterError, "'learning_rate' parameter of LearnedConvClassifier"),
        (dict(validation_fraction=1.0), InvalidParameterError, "'validation_fraction' parameter"),
        (dict(lr_schedule="step"), InvalidParameterError, "'lr_schedule' parameter of LearnedConvClassifier"),
        (dict(device="gpu"), InvalidParameterError, "'device' parameter of LearnedConvClassifier"),
        (dict(conv=LogisticRegression()), InvalidParameterError, "'conv' parameter of LearnedConvClassifier"),
        # The description's own parameters are checked by the class the user built.
        (dict(conv=FixedConvTransformer(padding="full")), InvalidParameterError,
         "'padding' parameter of FixedConvTransformer"),
        (dict(conv=FixedConvTransformer(bank="gabr")), InvalidParameterError,
         "'bank' parameter of FixedConvTransformer.*Did you mean 'gabor'"),
        (dict(conv=_two_layers(output="first")), InvalidParameterError, "'output' parameter of FixedConvNet"),
        (dict(conv=FixedConvTransformer(pool_size=9)), ValueError, "'pool_size' parameter of FixedConvTransformer"),
    ],
)
def test_bad_parameters_name_the_class_called(params, error, match):
    X = _images((4, 8, 8)).reshape(4, -1)
    with pytest.raises(error, match=match):
        LearnedConvClassifier(**params, random_state=0).fit(X, [0, 1, 0, 1])


def test_layers_without_a_torch_counterpart_are_refused_before_any_fitting(monkeypatch):
    from skconvfeat import _transformer

    def no_fitting(*args, **kwargs):
        raise AssertionError("the layers were fitted before the description was checked")

    monkeypatch.setattr(_transformer, "fit_layer", no_fitting)
    X, y = _images((20, 8, 8)), np.arange(20) % 2
    net = FixedConvNet([("conv1", FixedConvTransformer(kernel_size=3)),
                        ("conv2", FixedConvTransformer(kernel_size=1, patch_norm=True))])
    with pytest.raises(ValueError, match="layer 2 of 'conv' preprocesses its patches"):
        LearnedConvClassifier(net, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="nonlinearity='triangle'"):
        LearnedConvClassifier(FixedConvTransformer(nonlinearity="triangle"), random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="'augment' parameter"):
        LearnedConvClassifier(augment={"rotate": 1}, random_state=0).fit(X, y)


def test_a_failed_fit_leaves_the_fitted_model_as_it_was():
    X, y = _images((20, 8, 8)), np.arange(20) % 2
    est = LearnedConvClassifier(FixedConvTransformer(kernel_size=3), **QUICK).fit(X, y)
    before = {k: v for k, v in vars(est).items()}
    history, proba = list(est.history_), est.predict_proba(X)
    est.set_params(warm_start=True, learning_rate=1e30)  # the loss becomes infinite in the first step
    with pytest.raises(FloatingPointError):
        est.fit(X * 1e30, y)
    assert est.history_ == history and est.n_iter_ == before["n_iter_"]
    assert set(vars(est)) == set(before)
    est.set_params(learning_rate=1e-2)
    assert_allclose(est.predict_proba(X), proba)


def test_bad_targets_and_inputs():
    X = _images((20, 8, 8))
    with pytest.raises(ValueError, match="one class"):
        LearnedConvClassifier(random_state=0).fit(X, np.ones(20))
    with pytest.raises(ValueError, match="Unknown label type"):
        LearnedConvClassifier(random_state=0).fit(X, np.linspace(0, 1, 20))
    est = LearnedConvClassifier(CONV3, early_stopping=False, **QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, np.arange(20) % 2)
    with pytest.raises(ValueError, match="X has 49 features, but LearnedConvClassifier is expecting 64"):
        est.predict(_images((2, 7, 7)).reshape(2, -1))
    with pytest.raises(ValueError, match="fitted on images of shape \\(8, 8, 1\\)"):
        est.predict(_images((2, 7, 7)))
    with pytest.raises(ValueError, match="cannot hold out validation_fraction=0.9 of 2 samples"):
        LearnedConvClassifier(validation_fraction=0.9, random_state=0).fit(X[:2], [0, 1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_gpu():
    with pytest.raises(RuntimeError, match="'device' parameter of LearnedConvClassifier is 'cuda'"):
        LearnedConvClassifier(device="cuda", random_state=0).fit(_images((20, 8, 8)), np.arange(20) % 2)


_WITHOUT_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")

sys.meta_path.insert(0, BlockTorch())
import numpy as np
import skconvfeat
from skconvfeat.learned import LearnedConvClassifier

assert "torch" not in sys.modules
try:
    LearnedConvClassifier().fit(np.zeros((4, 64)), [0, 1, 0, 1])
except ImportError as exc:
    assert str(exc) == "LearnedConvClassifier needs PyTorch: pip install 'skconvfeat[torch]'", exc
else:
    raise AssertionError("fit worked without torch")
"""


def test_without_torch():
    """The package imports without torch; fit says how to install it."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- (6) the scikit-learn contract -------------------------------------------------

# Contract checks feed 2-D data with 1 to ~20 features: one-pixel-high strips,
# (1, 3) kernels with "same" padding fit any width; two-sided ReLU keeps the
# responses' sign so a linear head can separate the checks' blobs.
_STRIP = dict(image_shape=(1, -1), kernel_size=(1, 3), padding="same", nonlinearity="two_sided_relu", pool_size=1)
_CONTRACT = [
    LearnedConvClassifier(FixedConvTransformer(**_STRIP), max_epochs=20, early_stopping=False, random_state=0),
    LearnedConvClassifier(
        FixedConvNet([("conv1", FixedConvTransformer("random", random_state=0, **_STRIP)),
                      ("conv2", FixedConvTransformer(**{**_STRIP, "image_shape": None}))], output="all"),
        max_epochs=20, random_state=0,
    ),
    LearnedConvClassifier(FixedConvTransformer(**_STRIP), train="mixing", max_epochs=20, early_stopping=False,
                          random_state=0),
    LearnedConvClassifier(FixedConvTransformer(**_STRIP), train="mixing", batch_norm=True, max_epochs=20,
                          early_stopping=False, random_state=0),
]


# As for scikit-learn's MLPClassifier: mini-batch SGD in a shuffled order counts an image of weight 2
# like a repeated image in expectation only, so the exact equivalence check cannot hold
# (test_sample_weight_* below test what does hold).
_WEIGHTS_IN_EXPECTATION = {
    "check_sample_weight_equivalence_on_dense_data": "SGD: weights equal repetition in expectation only",
}


@parametrize_with_checks(_CONTRACT, expected_failed_checks=lambda estimator: _WEIGHTS_IN_EXPECTATION)
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_fixed_seed_predictions_are_the_head_on_the_fixed_layer_of_the_learned_kernels():
    """Recomputes predict_proba without torch: the fixed layer with the learned kernels, standardised, then the head."""
    from scipy.special import softmax

    X, y = load_digits(return_X_y=True)
    conv = FixedConvTransformer("random", kernel_size=3, random_state=0)
    est = LearnedConvClassifier(conv, max_epochs=2, random_state=0).fit(X[:300], y[:300])
    features = transfer_bank(est, dtype="float64").fit(X[:1]).transform(X[300:400])
    state = est._state
    logits = (features - state["mean"]) / state["scale"] @ state["head.0.weight"].T + state["head.0.bias"]
    # Near-constant features (digits' blank borders) have tiny scales that magnify float64 rounding.
    assert_allclose(est.predict_proba(X[300:400]), softmax(logits, axis=1), rtol=1e-6, atol=1e-9)
    assert_array_equal(est.predict(X[300:400]), est.classes_[np.argmax(logits, axis=1)])


def test_float64_predictions_use_the_float64_state_unrounded():
    """Frozen kernels and the standardisation are kept in float64; predictions, made in float64, must use them
    as kept, not rounded through float32 (a network built in float32 and then converted did)."""
    from scipy.special import softmax

    X, y = load_digits(return_X_y=True)
    conv = FixedConvTransformer("gabor", kernel_size=3, padding="same", dtype="float64")
    est = LearnedConvClassifier(conv, train="head", max_epochs=2, random_state=0).fit(X[:300], y[:300])
    state = est._state
    features = est.conv_.transform(X[300:400])
    logits = (features - state["mean"]) / state["scale"] @ state["head.0.weight"].T + state["head.0.bias"]
    assert_allclose(est.decision_function(X[300:400]), logits, rtol=1e-10, atol=1e-10)
    assert_allclose(est.predict_proba(X[300:400]), softmax(logits, axis=1), rtol=1e-10, atol=1e-12)


_LOAD_WITHOUT_TORCH = """
import pickle, sys, warnings

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")

sys.meta_path.insert(0, BlockTorch())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with open(sys.argv[1], "rb") as f:
        model = pickle.load(f)
messages = [str(w.message) for w in caught]
assert any("loaded without PyTorch; predicting with it needs PyTorch. pip install 'skconvfeat[torch]'" in m
           for m in messages), messages
"""


def test_loading_a_fitted_model_without_torch_says_predict_needs_it(tmp_path):
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LearnedConvClassifier(max_epochs=1, random_state=0).fit(X[:100], y[:100])
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with torch present, loading is silent
        pickle.loads(path.read_bytes())
    result = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TORCH, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- (7) sample weights -------------------------------------------------------------

def _weighted_fit(weight, X, y, **kw):
    conv = FixedConvTransformer("random", kernel_size=3, random_state=0)
    return LearnedConvClassifier(conv, early_stopping=False, max_epochs=3, random_state=0, **kw).fit(
        X, y, sample_weight=weight)


def test_sample_weight_of_ones_changes_nothing_and_a_scale_changes_nothing(digits_split):
    X, _, y, _ = digits_split
    plain = _weighted_fit(None, X, y)
    for weight in (np.ones(len(y)), np.full(len(y), 7.5)):  # rescaled to mean 1: the learning rate is unchanged
        np.testing.assert_allclose(_weighted_fit(weight, X, y).predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_zero_weight_images_do_not_move_the_model(digits_split):
    """Images of weight 0 change neither the standardisation nor a gradient: the model equals one trained
    without them. With one batch holding every image the two runs take the same steps (the weights' rescaling
    to mean 1 over 300 rows gives each kept image 300/200, as the mean loss over 200 images does)."""
    X, _, y, _ = digits_split
    X, y = X[:300], y[:300]
    X_noisy, y_noisy = X.copy(), y.copy()  # garbage in the zero-weight rows: if they counted, the model would move
    X_noisy[200:] = np.random.default_rng(0).uniform(0, 16, X_noisy[200:].shape)
    y_noisy[200:] = (y[200:] + 1) % 10
    weighted = _weighted_fit(np.r_[np.ones(200), np.zeros(100)], X_noisy, y_noisy, batch_size=300)
    alone = _weighted_fit(None, X[:200], y[:200], batch_size=300)
    np.testing.assert_allclose(weighted.predict_proba(X[:50]), alone.predict_proba(X[:50]), atol=1e-4)


def test_heavier_weights_move_predictions_towards_their_class(digits_split):
    X, X_test, y, _ = digits_split
    weight = np.where(y == 3, 20.0, 1.0)
    plain, heavy = _weighted_fit(None, X, y), _weighted_fit(weight, X, y)
    assert (heavy.predict(X_test) == 3).sum() > (plain.predict(X_test) == 3).sum()


def test_validation_accuracy_is_the_weighted_accuracy():
    """The early-stopping score with weights is accuracy_score(sample_weight=...)'s."""
    from sklearn.metrics import accuracy_score

    from skconvfeat.learned._training import evaluate

    rng = np.random.default_rng(1)
    model = torch.nn.Linear(5, 3)
    x = torch.as_tensor(rng.standard_normal((40, 5)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 3, 40))
    weight = rng.uniform(0.1, 3.0, 40)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).numpy()
    _, weighted = evaluate(model, x, y, 16, torch.as_tensor(weight, dtype=torch.float32))
    _, plain = evaluate(model, x, y, 16)
    assert weighted == pytest.approx(accuracy_score(y.numpy(), predicted, sample_weight=weight), abs=1e-6)
    assert plain == pytest.approx(accuracy_score(y.numpy(), predicted))
    assert weighted != pytest.approx(plain)


@pytest.mark.parametrize("weight, message", [
    (-1.0, "Negative values in data passed to .?sample_weight"),
    (0.0, "zero"),  # scikit-learn >= 1.7 says it first, our check before that
    (np.nan, "NaN"),
])
def test_bad_sample_weights_are_refused_clearly(weight, message, digits_split):
    X, _, y, _ = digits_split
    with pytest.raises(ValueError, match=message):
        _weighted_fit(np.full(len(y), weight), X, y)


def test_grid_search_routes_sample_weight_through_a_pipeline_to_the_learned_classifier(digits_split):
    """scikit-learn's metadata routing: GridSearchCV.fit(..., sample_weight=w) reaches our fit through a Pipeline."""
    import sklearn
    from sklearn.metrics import accuracy_score, make_scorer
    from sklearn.preprocessing import FunctionTransformer

    X, _, y, _ = digits_split
    X, y = X[:200], y[:200]
    seen = []

    class Recording(LearnedConvClassifier):
        def fit(self, X, y, sample_weight=None):
            seen.append(None if sample_weight is None else np.asarray(sample_weight).copy())
            return super().fit(X, y, sample_weight=sample_weight)

    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Recording(FixedConvTransformer("random", kernel_size=3, random_state=0), max_epochs=1,
                          early_stopping=False, random_state=0)
        model.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        pipe = make_pipeline(FunctionTransformer(lambda A: A / 16.0), model)
        # An explicit weighted scorer: scikit-learn < 1.8 does not route score's weights through a Pipeline.
        scorer = make_scorer(accuracy_score).set_score_request(sample_weight=True)
        search = GridSearchCV(pipe, {"recording__learning_rate": [1e-2, 1e-3]}, cv=2, scoring=scorer,
                              error_score="raise").fit(X, y, sample_weight=weight)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert len(seen) == 2 * 2 + 1  # 2 settings x 2 folds, then the refit on all rows
    assert all(w is not None for w in seen)
    np.testing.assert_array_equal(seen[-1], weight)
