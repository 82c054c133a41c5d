"""LowRankHeadClassifier: its composed linear map against a loop reference, its contract, its inputs."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import FixedConvTransformer, LowRankHeadClassifier
from reference import reference_low_rank_logits

torch = pytest.importorskip("torch")
# Short fits on purpose (the tests check what a fit computes, not how far it gets); the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _grid_features(n=240, n_maps=5, cells=4, n_classes=3, seed=0):
    """Map-major features whose class shows in a few maps at a few cells, with maps of unequal scales."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n)
    X = rng.normal(size=(n, n_maps, cells)) * rng.uniform(0.5, 20, size=(1, n_maps, 1)) + 3.0
    X[np.arange(n), y % n_maps, y % cells] += 30.0
    return X.reshape(n, -1), y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_decision_function_is_the_loop_reference_of_the_fitted_factors(n_classes):
    X, y = _grid_features(n_classes=n_classes)
    head = LowRankHeadClassifier(grid=(2, 2), rank=2, max_epochs=5, random_state=0).fit(X, y)
    logits = reference_low_rank_logits(X[:20], head.mean_, head.scale_, head.reduce_, head.classify_,
                                       head.classify_intercept_)
    expected = logits[:, 1] - logits[:, 0] if n_classes == 2 else logits
    assert_allclose(head.decision_function(X[:20]), expected, rtol=1e-9, atol=1e-9)
    # The published map is the trained torch module's own forward pass (float32), not another model.
    from skconvfeat.learned._lowrank import LowRankHead

    module = LowRankHead(head.mean_, head.scale_, head.reduce_, head.classify_, head.classify_intercept_)
    with torch.no_grad():
        torch_logits = module(torch.from_numpy(X[:20])).double().numpy()
    assert_allclose(torch_logits, logits, rtol=1e-4, atol=1e-3)


def test_map_statistics_are_over_samples_and_cells():
    X, _ = _grid_features()
    head = LowRankHeadClassifier(grid=4, rank=1, max_epochs=1, early_stopping=False, random_state=0)
    with pytest.raises(ValueError, match="multiple of 16"):
        head.fit(X, np.arange(len(X)) % 2)
    head.set_params(grid=(1, 4)).fit(X, np.arange(len(X)) % 2)
    per_map = X.reshape(len(X), 5, 4).transpose(1, 0, 2).reshape(5, -1)
    assert_allclose(head.mean_, per_map.mean(axis=1))
    assert_allclose(head.scale_, per_map.std(axis=1))


def test_weights_have_at_most_rank_over_the_maps():
    X, y = _grid_features(n_maps=6, cells=4, n_classes=3)
    head = LowRankHeadClassifier(grid=2, rank=2, max_epochs=3, random_state=0).fit(X, y)
    per_map = head.coef_.reshape(3, 6, 4).transpose(1, 0, 2).reshape(6, -1)  # maps x (classes, cells)
    assert np.linalg.matrix_rank(per_map, tol=1e-8) == 2
    assert head.coef_.shape == (3, 24) and head.reduce_.shape == (2, 6) and head.classify_.shape == (3, 8)


def test_learns_fixed_features_of_digits_close_to_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    conv = FixedConvTransformer("random", kernel_size=3, pool_grid=3, random_state=0)
    F, T = conv.fit_transform(X[:1000]), conv.transform(X[1000:])
    head = LowRankHeadClassifier(grid=3, rank=16, learning_rate=1e-2, max_epochs=60, random_state=0).fit(F, y[:1000])
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(F, y[:1000])
    assert head.score(T, y[1000:]) > logistic.score(T, y[1000:]) - 0.06
    # The kept weights are those of the best validation epoch.
    scores = [h["valid_accuracy"] for h in head.history_]
    assert head.best_epoch_ == 1 + int(np.argmax(scores)) and head.n_iter_ == len(scores)


@pytest.mark.parametrize("dtype", [np.float16, np.uint8])
def test_compact_features_train_as_their_float32_values(dtype):
    X, y = _grid_features(n_classes=3)
    X = np.clip(X, 0, 255).astype(dtype)
    compact = LowRankHeadClassifier(grid=2, rank=2, max_epochs=4, random_state=0).fit(X, y)
    wide = LowRankHeadClassifier(grid=2, rank=2, max_epochs=4, random_state=0).fit(X.astype(np.float32), y)
    assert_allclose(compact.coef_, wide.coef_, rtol=1e-5, atol=1e-7)
    assert_allclose(compact.decision_function(X), wide.decision_function(X.astype(np.float32)), rtol=1e-5, atol=1e-6)


def test_a_diverging_fit_raises_and_leaves_the_fitted_model_as_it_was():
    X, y = _grid_features()
    head = LowRankHeadClassifier(grid=2, rank=2, max_epochs=2, random_state=0).fit(X, y)
    coef = head.coef_.copy()
    X_bad = X.copy()
    X_bad[:, 0] *= 1e30
    head.set_params(learning_rate=1e30, early_stopping=False)
    with pytest.raises(FloatingPointError, match="lower 'learning_rate'"):
        head.fit(X_bad, y)
    assert_allclose(head.coef_, coef)
    assert head.learning_rate == 1e30 and head.n_iter_ == 2


def test_bad_parameters_and_still_improving_fits_are_reported():
    X, y = _grid_features()
    with pytest.raises(InvalidParameterError, match="The 'rank' parameter of LowRankHeadClassifier must be"):
        LowRankHeadClassifier(rank=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'grid' parameter of LowRankHeadClassifier must be a positive"):
        LowRankHeadClassifier(grid=(2, 0)).fit(X, y)
    with pytest.raises(ValueError, match="only one class"):
        LowRankHeadClassifier(grid=2).fit(X, np.zeros(len(X)))
    with pytest.warns(ConvergenceWarning, match="max_epochs=1 while the validation accuracy"):
        LowRankHeadClassifier(grid=2, max_epochs=1, random_state=0).fit(X, y)


@parametrize_with_checks([LowRankHeadClassifier(rank=4, learning_rate=1e-2, max_epochs=40, random_state=0),
                          LowRankHeadClassifier(rank=2, early_stopping=False, learning_rate=5e-2, max_epochs=60,
                                                random_state=0)])
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_features_on_disk_are_read_in_place(tmp_path):
    """A float16 np.memmap (features too many for memory) is trained on as it is: validation keeps it a view."""
    from sklearn.utils.validation import check_array

    X, y = _grid_features()
    on_disk = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float16, shape=X.shape)
    on_disk[:] = X
    on_disk.flush()
    X_disk = np.load(tmp_path / "X.npy", mmap_mode="r")
    from skconvfeat.learned._head import _DTYPES

    assert np.shares_memory(check_array(X_disk, dtype=_DTYPES, order="C"), X_disk)
    head = LowRankHeadClassifier(grid=2, rank=2, max_epochs=3, random_state=0).fit(X_disk, y)
    in_memory = LowRankHeadClassifier(grid=2, rank=2, max_epochs=3, random_state=0).fit(np.array(X_disk), y)
    assert_allclose(head.coef_, in_memory.coef_)
