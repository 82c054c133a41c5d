"""LearnedConvClassifier: the fixed pipeline's network with its kernels trained in PyTorch."""

import itertools
import subprocess
import sys

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import FixedConvTransformer

torch = pytest.importorskip("torch")

from skconvfeat._learned import LearnedConvClassifier, transfer_bank  # noqa: E402

# Few epochs wherever the result of training does not matter: keeps the file fast.
QUICK = dict(max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def digits_model(digits_split):
    X_train, _, y_train, _ = digits_split
    return LearnedConvClassifier(random_state=0).fit(X_train, y_train)


def _images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape)


# -- (1) the torch network is the fixed layer -------------------------------------

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


@pytest.mark.parametrize("cfg", _LAYER_GRID, ids=[_grid_id(c) for c in _LAYER_GRID])
def test_network_features_equal_fixed_transformer(cfg):
    cfg = dict(cfg)
    n_channels = cfg.pop("n_channels")
    X = _images((7, 9, 10, n_channels) if n_channels > 1 else (7, 9, 10))
    y = np.arange(7) % 2
    fixed = FixedConvTransformer(bank="random", random_state=3, device="cpu", **cfg).fit_transform(X)
    learned = LearnedConvClassifier(bank="random", random_state=3, freeze_kernels=True, max_epochs=1, **cfg).fit(X, y)
    assert learned.n_features_out_ == fixed.shape[1]
    feats = learned._forward_numpy(X, features_only=True, standardise=False)
    assert feats.shape == fixed.shape
    assert_allclose(feats, fixed, rtol=1e-5, atol=1e-5 * np.abs(fixed).max())


def test_flat_rows_and_image_arrays_agree():
    X = _images((6, 8, 8))
    y = np.arange(6) % 3
    est = LearnedConvClassifier(kernel_size=3, padding="same", **QUICK).fit(X, y)
    assert est.image_shape_ == (8, 8, 1)
    assert est.n_features_in_ == 64
    # Two memory layouts through BLAS may round differently (1 ulp on AVX-512 CPUs):
    # the promise is the same model, not the same bits.
    assert_allclose(est.decision_function(X), est.decision_function(X.reshape(6, -1)),
                    rtol=1e-10, atol=1e-12)


def test_learned_arm_starts_at_the_standardised_fixed_features(digits_split):
    X_train, X_test, y_train, _ = digits_split
    est = LearnedConvClassifier(**QUICK).fit(X_train, y_train)
    scaler = StandardScaler().fit(FixedConvTransformer(device="cpu").fit_transform(X_train))
    expected = scaler.transform(FixedConvTransformer(device="cpu").fit(X_train).transform(X_test))
    got = est._forward_numpy(X_test, features_only=True, filters=est.initial_filters_)
    assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_same_random_bank_as_the_fixed_transformer():
    X = _images((5, 8, 8))
    est = LearnedConvClassifier(bank="random", **QUICK).fit(X, np.arange(5) % 2)
    fixed = FixedConvTransformer(bank="random", random_state=0).fit(X)
    assert_array_equal(est.initial_filters_, fixed.filters_)


# -- (2) frozen vs learned kernels -----------------------------------------------


@pytest.mark.parametrize("channel_mode", ["sum", "separate"])
def test_freeze_kernels(channel_mode):
    X = _images((40, 8, 8, 3))
    y = (X[:, :4, :4].mean(axis=(1, 2, 3)) > 0).astype(int)
    common = dict(kernel_size=3, channel_mode=channel_mode, max_epochs=3, random_state=0)
    frozen = LearnedConvClassifier(freeze_kernels=True, **common).fit(X, y)
    assert frozen.filters_.dtype == np.float64
    assert_array_equal(frozen.filters_, frozen.initial_filters_)
    learned = LearnedConvClassifier(**common).fit(X, y)
    assert_array_equal(learned.initial_filters_, frozen.initial_filters_)
    assert learned.filters_.shape == learned.initial_filters_.shape
    assert np.abs(learned.filters_ - learned.initial_filters_).max() > 1e-3
    assert frozen.loss_curve_ != learned.loss_curve_


# -- (3) it learns, reproducibly ---------------------------------------------------


def test_learns_digits(digits_split, digits_model):
    _, X_test, _, y_test = digits_split
    assert digits_model.score(X_test, y_test) > 0.9
    assert digits_model.n_iter_ == len(digits_model.loss_curve_) <= digits_model.max_epochs
    assert digits_model.loss_curve_[-1] < digits_model.loss_curve_[0]
    assert_array_equal(digits_model.classes_, np.arange(10))
    proba = digits_model.predict_proba(X_test)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(digits_model.classes_[proba.argmax(axis=1)], digits_model.predict(X_test))


def test_reproducible_with_random_state(digits_split, digits_model):
    X_train, X_test, y_train, _ = digits_split
    again = LearnedConvClassifier(random_state=0).fit(X_train, y_train)
    assert_array_equal(again.filters_, digits_model.filters_)
    assert again.loss_curve_ == digits_model.loss_curve_
    assert_array_equal(again.predict_proba(X_test), digits_model.predict_proba(X_test))
    other = LearnedConvClassifier(random_state=1, max_epochs=2).fit(X_train, y_train)
    assert other.loss_curve_ != digits_model.loss_curve_[:2]


def test_torch_threads_restored(digits_split):
    X_train, _, y_train, _ = digits_split
    before = torch.get_num_threads()
    LearnedConvClassifier(**QUICK).fit(X_train[:300], y_train[:300]).predict(X_train[:10])
    assert torch.get_num_threads() == before


def test_mlp_head_and_two_classes():
    X = _images((60, 8, 8))
    y = np.where(X[:, :, :4].mean(axis=(1, 2)) > 0, "left", "right")
    est = LearnedConvClassifier(head="mlp", hidden_units=7, kernel_size=3, max_epochs=20, random_state=0).fit(X, y)
    assert est._state["head_hidden_weight"].shape == (7, est.n_features_out_)
    scores = est.decision_function(X)
    assert scores.shape == (60,)
    proba = est.predict_proba(X)
    assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)))
    assert_array_equal(est.predict(X), est.classes_[(scores > 0).astype(int)])
    assert est.score(X, y) > 0.8


def test_verbose_prints_losses(capsys):
    X = _images((10, 6, 6))
    LearnedConvClassifier(kernel_size=3, verbose=1, **QUICK).fit(X, np.arange(10) % 2)
    assert "epoch 2/2: loss" in capsys.readouterr().out


def test_early_stopping_with_tol():
    X = _images((20, 6, 6))
    y = np.arange(20) % 2
    est = LearnedConvClassifier(kernel_size=3, max_epochs=50, tol=10.0, n_iter_no_change=2, random_state=0).fit(X, y)
    assert est.n_iter_ == 3  # the first epoch sets the best loss, then 2 without a 10-nat gain
    est = est.set_params(tol=None, max_epochs=4).fit(X, y)
    assert est.n_iter_ == 4


# -- (4) scikit-learn plumbing -----------------------------------------------------


def test_clone_pickle_pipeline(tmp_path, digits_split, digits_model):
    _, X_test, _, _ = digits_split
    copy = clone(digits_model)
    assert copy.get_params()["random_state"] == 0 and not hasattr(copy, "filters_")
    path = tmp_path / "model.joblib"
    joblib.dump(digits_model, path)
    loaded = joblib.load(path)
    assert_array_equal(loaded.predict_proba(X_test), digits_model.predict_proba(X_test))
    assert_array_equal(loaded.filters_, digits_model.filters_)
    # No live torch objects in the fitted state.
    assert all(isinstance(v, np.ndarray) for v in loaded._state.values())


def test_in_pipeline_and_grid_search(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    pipe = Pipeline([("scale", MinMaxScaler()), ("cnn", LearnedConvClassifier(kernel_size=3, max_epochs=5, random_state=0))])
    pipe.fit(X_train[:500], y_train[:500])
    assert pipe.score(X_test, y_test) > 0.8
    search = GridSearchCV(
        LearnedConvClassifier(kernel_size=3, max_epochs=3, random_state=0),
        {"freeze_kernels": [False, True]},
        cv=2,
        n_jobs=1,
    ).fit(X_train[:300], y_train[:300])
    assert set(search.cv_results_["param_freeze_kernels"]) == {False, True}
    assert search.best_estimator_.filters_.shape == (16, 1, 3, 3)


def test_transfer_learned_kernels_to_other_classes(digits_split):
    """Kernels learned on digits 0-4, used as a fixed bank on digits 5-9."""
    X_train, X_test, y_train, y_test = digits_split
    first, second = y_train < 5, y_train >= 5
    learned = LearnedConvClassifier(kernel_size=3, random_state=0).fit(X_train[first], y_train[first])
    fixed = transfer_bank(learned)
    assert isinstance(fixed, FixedConvTransformer)
    assert_array_equal(fixed.bank, learned.filters_)
    # The documented spelling does the same.
    same = FixedConvTransformer(bank=learned.filters_, kernel_size=3)
    test_second = y_test >= 5
    features = fixed.fit(X_train[second]).transform(X_test[test_second])
    assert_allclose(features, same.fit(X_train[second]).transform(X_test[test_second]))
    model = make_pipeline(transfer_bank(learned), StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(X_train[second], y_train[second])
    assert model.score(X_test[test_second], y_test[test_second]) > 0.9


# -- (5) clear errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(head="mpl"), InvalidParameterError, "'head' parameter of LearnedConvClassifier"),
        (dict(max_epochs=0), InvalidParameterError, "'max_epochs' parameter of LearnedConvClassifier"),
        (dict(learning_rate=0.0), InvalidParameterError, "'learning_rate' parameter"),
        (dict(device="gpu"), InvalidParameterError, "'device' parameter"),
        (dict(padding="full"), InvalidParameterError, "'padding' parameter of LearnedConvClassifier"),
        (dict(bank="gabr"), ValueError, r"'bank' parameter of LearnedConvClassifier.*Did you mean 'gabor'"),
        (dict(pool_size=9), ValueError, "'pool_size' parameter of LearnedConvClassifier"),
        (dict(kernel_size=(0, 3)), ValueError, "'kernel_size' parameter"),
        (dict(image_shape=(3, 3)), ValueError, "'image_shape' parameter of LearnedConvClassifier"),
        (dict(bank="gabor", bank_params={"n_orient": 2}), ValueError, "n_orient"),
    ],
)
def test_bad_parameters(params, error, match):
    X = _images((4, 8, 8)).reshape(4, -1)
    with pytest.raises(error, match=match):
        LearnedConvClassifier(**params).fit(X, [0, 1, 0, 1])


def test_bad_targets():
    X = _images((4, 8, 8))
    with pytest.raises(ValueError, match="one class"):
        LearnedConvClassifier().fit(X, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        LearnedConvClassifier().fit(X, [0.5, 1.5, 2.5, 3.1])
    est = LearnedConvClassifier(**QUICK).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="LearnedConvClassifier"):
        est.predict(_images((2, 7, 7)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_gpu():
    with pytest.raises(RuntimeError, match="'device' parameter of LearnedConvClassifier is 'cuda'"):
        LearnedConvClassifier(device="cuda").fit(_images((4, 8, 8)), [0, 1, 0, 1])


_WITHOUT_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")

sys.meta_path.insert(0, BlockTorch())
import numpy as np
import skconvfeat
from skconvfeat._learned import LearnedConvClassifier

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
_CONTRACT = LearnedConvClassifier(
    image_shape=(1, -1),
    kernel_size=(1, 3),
    padding="same",
    nonlinearity="two_sided_relu",
    pool_size=1,
    max_epochs=20,
    random_state=0,
)


@parametrize_with_checks([_CONTRACT])
def test_sklearn_contract(estimator, check):
    check(estimator)
