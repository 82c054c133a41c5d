"""GramRidgeClassifier against scikit-learn's RidgeClassifier, its penalty choice, and its contract."""

import tracemalloc

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_classification
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import accuracy_score, make_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from numpy.testing import assert_array_equal
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import GramRidgeClassifier


def _data(n_classes=4, n_samples=300, n_features=20, shift=0.0, dtype=np.float64):
    X, y = make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=8, n_classes=n_classes, random_state=0
    )
    return (X + shift).astype(dtype), y


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("batch_size", [7, 2048])
def test_matches_ridge_classifier_for_one_alpha(n_classes, batch_size):
    X, y = _data(n_classes)
    ours = GramRidgeClassifier(alphas=[0.05], batch_size=batch_size).fit(X, y)
    ref = RidgeClassifier(alpha=0.05 * len(X), solver="cholesky").fit(X, y)
    np.testing.assert_allclose(ours.coef_, np.atleast_2d(ref.coef_), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, np.ravel(ref.intercept_), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert np.isnan(ours.validation_scores_).all()


def test_large_feature_means_do_not_cancel_in_float32():
    # Features far from zero (pooled sums are) must not lose the centred Gram matrix to cancellation.
    X, y = _data(shift=1e3, dtype=np.float32)
    ours = GramRidgeClassifier(alphas=[1e-3], batch_size=50).fit(X, y)
    ref = RidgeClassifier(alpha=1e-3 * len(X), solver="cholesky").fit(X.astype(np.float64), y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-3, atol=2e-5)  # without the shift: off by ~1
    assert ours.coef_.dtype == np.float32


def test_penalty_chosen_on_held_out_rows_then_refit_on_all():
    X, y = _data(n_samples=400, n_features=200)  # few rows per feature: the penalty matters
    alphas = [1e-6, 0.3, 100.0]
    ours = GramRidgeClassifier(alphas=alphas, validation_fraction=0.25, batch_size=33, random_state=0).fit(X, y)
    # The same held-out rows, scored by scikit-learn's ridge fitted on the rest.
    held_out = np.zeros(len(X), dtype=bool)
    held_out[np.random.RandomState(0).permutation(len(X))[:100]] = True
    expected = [
        RidgeClassifier(alpha=a * 300, solver="cholesky").fit(X[~held_out], y[~held_out]).score(X[held_out], y[held_out])
        for a in alphas
    ]
    np.testing.assert_allclose(ours.validation_scores_, expected)
    assert ours.alpha_ == alphas[int(np.argmax(expected))]
    assert len(set(expected)) > 1  # the choice is not a tie
    ref = RidgeClassifier(alpha=ours.alpha_ * len(X), solver="cholesky").fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alphas": []}, "'alphas' parameter of GramRidgeClassifier must be a non-empty sequence"),
        ({"alphas": [1.0, -1.0]}, "positive finite floats. Got \\[1.0, -1.0\\]"),
        ({"alphas": [np.nan]}, "positive finite floats"),
        ({"validation_fraction": 1.5}, "'validation_fraction' parameter of GramRidgeClassifier"),
    ],
)
def test_bad_parameters_name_themselves(params, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        GramRidgeClassifier(**params).fit(X, y)


def test_too_few_rows_to_hold_out():
    with pytest.raises(ValueError, match="leaves no training rows with n_samples = 2"):
        GramRidgeClassifier(alphas=[1, 2], validation_fraction=0.9).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        GramRidgeClassifier().fit([[0.0, 1.0], [1.0, 0.0]], [3, 3])


def _chunks(X, y, size):
    return [(X[i : i + size], y[i : i + size]) for i in range(0, len(X), size)]


def _scaled_ridge(alpha):
    """The independent reference of standardize=True: scikit-learn's scaler, then its ridge."""
    return make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha, solver="cholesky"))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_partial_fit_chunks_match_ridge_classifier(n_classes):
    X, y = _data(n_classes)
    ours = GramRidgeClassifier(alphas=[0.05])
    for X_chunk, y_chunk in _chunks(X, y, 70):
        ours.partial_fit(X_chunk, y_chunk, classes=np.unique(y))
    ref = RidgeClassifier(alpha=0.05 * len(X), solver="cholesky").fit(X, y)
    np.testing.assert_allclose(ours.coef_, np.atleast_2d(ref.coef_), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, np.ravel(ref.intercept_), rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_partial_fit_solves_again_after_more_rows():
    X, y = _data()
    ours = GramRidgeClassifier(alphas=[0.05]).partial_fit(X[:150], y[:150], classes=np.unique(y))
    first = ours.coef_.copy()  # solved from 150 rows; the sums must come out of the solve intact
    ours.partial_fit(X[150:], y[150:])
    ref = RidgeClassifier(alpha=0.05 * len(X), solver="cholesky").fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-7, atol=1e-10)
    assert not np.allclose(first, ours.coef_)


@pytest.mark.parametrize("streamed", [False, True])
def test_standardize_matches_standard_scaler_then_ridge(streamed):
    X, y = _data()
    X = X * np.logspace(-3, 3, X.shape[1]) + 50.0  # scales over six decades: scaling changes the penalty
    ours = GramRidgeClassifier(alphas=[0.05], standardize=True, batch_size=40)
    if streamed:
        for X_chunk, y_chunk in _chunks(X, y, 90):
            ours.partial_fit(X_chunk, y_chunk, classes=np.unique(y))
    else:
        ours.fit(X, y)
    ref = _scaled_ridge(0.05 * len(X)).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-6, atol=1e-8)
    unscaled = RidgeClassifier(alpha=0.05 * len(X), solver="cholesky").fit(X, y)
    assert not np.allclose(ours.decision_function(X), unscaled.decision_function(X), rtol=1e-2)


def test_float32_accumulation_is_accurate_enough():
    # Float32 chunk products summed into float64: the solution must agree with float64 throughout
    # far more closely than any decision the classifier makes depends on.
    X, y = _data(n_samples=2000, n_features=60, shift=30.0)
    ours = GramRidgeClassifier(alphas=[1e-3], standardize=True, batch_size=500).fit(X.astype(np.float32), y)
    ref = _scaled_ridge(1e-3 * len(X)).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X.astype(np.float32)), ref.decision_function(X),
                               rtol=1e-3, atol=1e-4)
    assert ours.coef_.dtype == np.float32


def test_select_alpha_on_held_out_rows_then_refit_on_all():
    X, y = _data(n_samples=400, n_features=200)  # few rows per feature: the penalty matters
    alphas = [1e-6, 0.3, 100.0]
    train, held = slice(0, 300), slice(300, 400)
    ours = GramRidgeClassifier(alphas=alphas, standardize=True)
    for X_chunk, y_chunk in _chunks(X[train], y[train], 64):
        ours.partial_fit(X_chunk, y_chunk, classes=np.unique(y))
    ours.select_alpha(X[held], y[held])
    expected = [_scaled_ridge(a * 300).fit(X[train], y[train]).score(X[held], y[held]) for a in alphas]
    np.testing.assert_allclose(ours.validation_scores_, expected)
    assert ours.alpha_ == alphas[int(np.argmax(expected))] and len(set(expected)) > 1
    ours.partial_fit(X[held], y[held])
    ref = _scaled_ridge(ours.alpha_ * len(X)).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-6, atol=1e-8)


def test_memory_is_one_gram_matrix():
    # The solve factorises in place: fit's peak beyond X is one n_features-square float64 matrix
    # plus the documented temporaries (a float32 n_features x min(n_features, 2048) block of the
    # chunk's product, the shifted chunk), not the three Gram-sized arrays of a copy-and-solve design.
    X, y = _data(n_samples=1000, n_features=800)
    X = X.astype(np.float32)
    gram_bytes = 8 * X.shape[1] ** 2
    bound = gram_bytes + 4 * X.shape[1] * min(X.shape[1], 2048) + 2 * 4 * 200 * X.shape[1] + 2**20
    tracemalloc.start()
    try:
        head = GramRidgeClassifier(alphas=[1e-2, 1e-1], batch_size=200, random_state=0).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        streamed = GramRidgeClassifier(alphas=[1e-2]).partial_fit(X, y, classes=np.unique(y))
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        streamed.coef_  # the lazy solve alone
        solve_peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert gram_bytes < peak < bound < 2.5 * gram_bytes
    assert solve_peak < 0.25 * gram_bytes  # a copy of the Gram matrix would be 1.0
    assert head.score(X, y) > 0.5


def test_partial_fit_errors_name_the_problem():
    X, y = _data()
    with pytest.raises(ValueError, match="needs 'classes'.*first call. Got None"):
        GramRidgeClassifier().partial_fit(X, y)
    head = GramRidgeClassifier(alphas=[1e-2, 1e-1]).partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="labels \\[7\\] passed to GramRidgeClassifier.partial_fit are not among"):
        head.partial_fit(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="2 candidate alphas and none chosen: call select_alpha"):
        head.predict(X)
    fitted = GramRidgeClassifier(alphas=[1e-2, 1e-1], random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="fitted by fit, which chose alpha_ already"):
        fitted.select_alpha(X, y)
    # After fit, partial_fit starts a new model from its own rows, with fit's classes.
    restarted = GramRidgeClassifier(alphas=[0.05]).fit(X, y).partial_fit(X[:100], y[:100])
    ref = RidgeClassifier(alpha=0.05 * 100, solver="cholesky").fit(X[:100], y[:100])
    np.testing.assert_allclose(restarted.coef_, ref.coef_, rtol=1e-7, atol=1e-10)


@parametrize_with_checks(
    [GramRidgeClassifier(random_state=0), GramRidgeClassifier(alphas=[1e-3]), GramRidgeClassifier(standardize=True, random_state=0)]
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def _weights(n, seed=0):
    weights = np.random.RandomState(seed).uniform(0, 3, size=n)
    weights[::7] = 0.0  # rows that do not count at all
    return weights


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("batch_size", [7, 2048])
def test_sample_weight_matches_weighted_ridge_classifier(n_classes, batch_size):
    X, y = _data(n_classes, shift=5.0)
    w = _weights(len(X))
    ours = GramRidgeClassifier(alphas=[0.05], batch_size=batch_size).fit(X, y, sample_weight=w)
    ref = RidgeClassifier(alpha=0.05 * w.sum(), solver="cholesky").fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, np.atleast_2d(ref.coef_), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, np.ravel(ref.intercept_), rtol=1e-7, atol=1e-10)
    unweighted = GramRidgeClassifier(alphas=[0.05]).fit(X, y)
    assert np.abs(unweighted.coef_ - ours.coef_).max() > 1e-3  # the weights changed the model


def test_integer_weights_count_rows_that_many_times():
    X, y = _data()
    counts = np.random.RandomState(1).randint(0, 4, size=len(X))
    ours = GramRidgeClassifier(alphas=[0.05], standardize=True).fit(X, y, sample_weight=counts)
    repeated = GramRidgeClassifier(alphas=[0.05], standardize=True).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(ours.coef_, repeated.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, repeated.intercept_, rtol=1e-7, atol=1e-10)


def test_standardize_with_weights_is_weighted_scaler_then_weighted_ridge():
    X, y = _data(shift=3.0)
    X[:, 0] = 2.0  # a constant feature stays unscaled
    X[:, 1] *= 100.0
    w = _weights(len(X))
    ours = GramRidgeClassifier(alphas=[0.05], standardize=True, batch_size=40).fit(X, y, sample_weight=w)
    ref = make_pipeline(StandardScaler(), RidgeClassifier(alpha=0.05 * w.sum(), solver="cholesky"))
    ref.fit(X, y, standardscaler__sample_weight=w, ridgeclassifier__sample_weight=w)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 2: 0.5}])
def test_class_weight_matches_ridge_classifier(class_weight):
    X, y = _data()
    y[y == 1] = 3 if class_weight == "balanced" else 1
    keep = (y != 3) | (np.arange(len(y)) % 4 == 0)  # unbalanced classes, so 'balanced' matters
    X, y, w = X[keep], y[keep], _weights(keep.sum())
    ours = GramRidgeClassifier(alphas=[0.05], class_weight=class_weight).fit(X, y, sample_weight=w)
    effective = w * compute_sample_weight(class_weight, y)
    ref = RidgeClassifier(alpha=0.05 * effective.sum(), class_weight=class_weight, solver="cholesky")
    ref.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-7, atol=1e-10)
    plain = GramRidgeClassifier(alphas=[0.05]).fit(X, y, sample_weight=w)
    assert np.abs(plain.coef_ - ours.coef_).max() > 1e-3


def test_partial_fit_with_weights_is_fit_with_weights():
    X, y = _data()
    w = _weights(len(X))
    streamed = GramRidgeClassifier(alphas=[0.05], class_weight={1: 2.0})
    for rows in np.array_split(np.arange(len(X)), 4):
        streamed.partial_fit(X[rows], y[rows], classes=np.unique(y), sample_weight=w[rows])
    whole = GramRidgeClassifier(alphas=[0.05], class_weight={1: 2.0}).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(streamed.coef_, whole.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(streamed.intercept_, whole.intercept_, rtol=1e-7, atol=1e-10)


def test_held_out_rows_are_scored_by_weighted_accuracy():
    X, y = _data(n_samples=400, n_features=200)
    w = _weights(len(X))
    alphas = [1e-6, 0.3, 100.0]
    ours = GramRidgeClassifier(alphas=alphas, validation_fraction=0.25, random_state=0).fit(X, y, sample_weight=w)
    held_out = np.zeros(len(X), dtype=bool)
    held_out[np.random.RandomState(0).permutation(len(X))[:100]] = True
    train, test = ~held_out, held_out
    expected = [
        RidgeClassifier(alpha=a * w[train].sum(), solver="cholesky")
        .fit(X[train], y[train], sample_weight=w[train])
        .score(X[test], y[test], sample_weight=w[test])
        for a in alphas
    ]
    np.testing.assert_allclose(ours.validation_scores_, expected)
    assert ours.alpha_ == alphas[int(np.argmax(expected))]


def test_weight_errors_name_the_problem():
    X, y = _data()
    with pytest.raises(ValueError, match="sample_weight passed to GramRidgeClassifier.fit must be 300 finite non-neg"):
        GramRidgeClassifier().fit(X, y, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="must be 300 finite non-negative"):
        GramRidgeClassifier().fit(X, y, sample_weight=-np.ones(300))
    balanced = GramRidgeClassifier(class_weight="balanced")
    with pytest.raises(ValueError, match="partial_fit sees one chunk.*class_weight='balanced'"):
        balanced.partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="partial_fit must be 300 finite non-negative"):
        balanced.set_params(class_weight=None).partial_fit(X, y, classes=np.unique(y), sample_weight=[1.0])
    assert not hasattr(balanced, "classes_")  # refused before it started a model
    with pytest.raises(ValueError, match="The 'class_weight' parameter of GramRidgeClassifier must be"):
        GramRidgeClassifier(class_weight="balance").fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes with non-zero weight; got 1 class"):
        GramRidgeClassifier().fit(X, y, sample_weight=(y == 2).astype(float))
    streamed = GramRidgeClassifier(alphas=[0.1]).partial_fit(X, y, classes=np.unique(y), sample_weight=np.zeros(300))
    with pytest.raises(ValueError, match="sample weights of the rows fitted are all zero"):
        streamed.predict(X)


def test_weighted_grid_search_through_a_pipeline_routes_sample_weight():
    X, y = _data(n_classes=3)
    w = np.random.RandomState(2).randint(0, 3, size=len(X)).astype(float)
    grid = {"head__alphas": [[1e-3], [1.0]]}

    def pipeline():
        return Pipeline([
            ("scale", StandardScaler().set_fit_request(sample_weight=True)),
            ("head", GramRidgeClassifier().set_fit_request(sample_weight=True).set_score_request(sample_weight=True)),
        ])

    with sklearn.config_context(enable_metadata_routing=True):
        # An explicit weighted scorer: scikit-learn < 1.8 does not route score's weights through a Pipeline.
        scorer = make_scorer(accuracy_score).set_score_request(sample_weight=True)
        search = GridSearchCV(pipeline(), grid, cv=3, scoring=scorer).fit(X, y, sample_weight=w)
        direct = pipeline().set_params(**search.best_params_).fit(X, y, sample_weight=w)
        unweighted = pipeline().set_params(**search.best_params_).fit(X, y)
        # The folds' scores are weighted too: the first candidate's first-fold score, recomputed.
        train, test = next(StratifiedKFold(3).split(X, y))
        fold = pipeline().set_params(**search.cv_results_["params"][0])
        expected = fold.fit(X[train], y[train], sample_weight=w[train]).score(X[test], y[test], sample_weight=w[test])
    np.testing.assert_allclose(search.best_estimator_[-1].coef_, direct[-1].coef_, rtol=1e-7, atol=1e-10)
    assert np.abs(unweighted[-1].coef_ - direct[-1].coef_).max() > 1e-3  # the weights reached the head
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected)
    assert expected != pytest.approx(fold.fit(X[train], y[train]).score(X[test], y[test]))


def test_a_gram_matrix_larger_than_memory_is_refused_before_it_is_allocated(monkeypatch):
    """Issue 27: np.zeros maps pages lazily, so without the check a too-wide head is killed mid-fit."""
    from skconvfeat import _device

    monkeypatch.setattr(_device, "physical_memory_bytes", lambda: 2**20)  # 1 MiB: a 400-feature Gram is 1.2 MiB
    X, y = np.random.default_rng(0).standard_normal((50, 400)), np.arange(50) % 2
    with pytest.raises(ValueError, match=r"400 x 400 Gram matrix, 1\.2 MiB of float64, more than this machine's 1\.0 MiB"):
        GramRidgeClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="Gram matrix"):
        GramRidgeClassifier(alphas=[1.0]).partial_fit(X, y, classes=[0, 1])
    monkeypatch.setattr(_device, "physical_memory_bytes", lambda: 2**21)  # 2 MiB: it fits
    assert GramRidgeClassifier(random_state=0).fit(X, y).score(X, y) > 0.5


def _threads_at_each_cholesky(monkeypatch, n_features, threshold):
    """BLAS thread counts of every loaded BLAS library, read inside each dpotrf call of a fit."""
    import scipy.linalg.lapack
    from threadpoolctl import threadpool_info

    from skconvfeat import FixedConvTransformer, _heads

    monkeypatch.setattr(_heads, "_PARALLEL_CHOLESKY_MAX", threshold)
    real, seen = scipy.linalg.lapack.dpotrf, []

    def dpotrf(*args, **kwargs):
        seen.append([info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"])
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.linalg.lapack, "dpotrf", dpotrf)
    # A transform first: its BLAS control thread once kept threadpoolctl's control and made a limit set
    # elsewhere a silent no-op, the way the 28,800-feature run crashed with a limit around the call.
    FixedConvTransformer(kernel_size=3, pool_grid=2).fit_transform(np.random.default_rng(0).random((20, 8, 8)))
    X, y = make_classification(200, n_features, n_informative=5, random_state=0)
    GramRidgeClassifier(alphas=(0.1, 1.0), random_state=0).fit(X, y)
    return seen


def test_large_cholesky_runs_on_one_blas_thread(monkeypatch):
    # OpenBLAS's threaded dpotrf segfaults from about 15,800 features on 2 cores (see _PARALLEL_CHOLESKY_MAX).
    seen = _threads_at_each_cholesky(monkeypatch, n_features=30, threshold=20)
    assert len(seen) == 3 and all(threads == [1] * len(threads) for threads in seen), seen


def test_small_cholesky_keeps_the_blas_threads(monkeypatch):
    from threadpoolctl import threadpool_info

    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    assert _threads_at_each_cholesky(monkeypatch, n_features=30, threshold=30) == [before] * 3


# -- save_stream / load_stream: a stream interrupted in one process, continued in another --------------


@pytest.mark.parametrize("labels", ["ints", "strings", "binary"])
def test_a_saved_stream_goes_on_to_the_model_of_one_uninterrupted_stream(tmp_path, labels):
    X, y = _data(2 if labels == "binary" else 4, n_samples=400)
    y = np.array(["cat", "dog", "eel", "fox"])[y] if labels == "strings" else y
    weights = np.random.RandomState(0).uniform(0.5, 2, len(X))
    whole = GramRidgeClassifier(alphas=(1e-3, 1e-1), standardize=True)
    whole.partial_fit(X[:150], y[:150], classes=np.unique(y), sample_weight=weights[:150])
    whole.save_stream(tmp_path / "head.npz")
    resumed = GramRidgeClassifier(alphas=(1e-3, 1e-1), standardize=True).load_stream(tmp_path / "head.npz")
    assert resumed.n_samples_seen_ == 150 and resumed.n_features_in_ == 20
    for model in (whole, resumed):
        model.partial_fit(X[150:300], y[150:300], sample_weight=weights[150:300])
        model.select_alpha(X[300:350], y[300:350])
        model.partial_fit(X[300:350], y[300:350], sample_weight=weights[300:350])
    assert_array_equal(resumed.classes_, whole.classes_)
    assert resumed.alpha_ == whole.alpha_ and resumed.n_samples_seen_ == 350
    assert_array_equal(resumed.coef_, whole.coef_)  # the same sums, so the same solve, to the bit
    assert_array_equal(resumed.intercept_, whole.intercept_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz"]  # nothing half-written beside it


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    X, y = _data()
    model = GramRidgeClassifier(alphas=[0.1]).partial_fit(X[:100], y[:100], classes=range(4))
    model.save_stream(tmp_path / "head.npz")
    model.partial_fit(X[100:200], y[100:200])

    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save_stream(tmp_path / "head.npz")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz"]
    assert GramRidgeClassifier(alphas=[0.1]).load_stream(tmp_path / "head.npz").n_samples_seen_ == 100


def _stream_file(tmp_path, **changes):
    """A valid stream file, with some arrays replaced (None: removed)."""
    X, y = _data()
    GramRidgeClassifier().partial_fit(X, y, classes=range(4)).save_stream(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("changes, message", [
    (dict(xtx=None), "it lacks the arrays \\['xtx'\\]"),
    (dict(xtx=np.zeros((20, 19))), "'xtx' must be finite floats of shape \\(20, 20\\)"),
    (dict(sum_x=np.full(20, np.nan)), "'sum_x' must be finite floats"),
    (dict(xty=np.zeros((20, 3))), "'xty' must be finite floats of shape \\(20, 4\\)"),
    (dict(classes=np.array([1, 1, 2, 3])), "'classes' must be at least 2 distinct labels"),
    (dict(n=np.array(-1.0)), "'n' \\(the rows' total weight\\) must be positive"),
    (dict(rows=np.array(2.5)), "'rows' must be a positive integer"),
    (dict(dtype=np.array("int8")), "'dtype' must be float32 or float64"),
    (dict(classes=np.array([{"a": 1}, 2], dtype=object)), "Object arrays cannot be loaded"),
])
def test_a_damaged_or_foreign_stream_file_is_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match="bad.npz is not a GramRidgeClassifier stream file: " + message):
        GramRidgeClassifier().load_stream(_stream_file(tmp_path, **changes))


def test_a_cut_short_stream_file_is_refused(tmp_path):
    good = _stream_file(tmp_path)
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cut.npz is not a GramRidgeClassifier stream file"):
        GramRidgeClassifier().load_stream(tmp_path / "cut.npz")


def test_save_stream_needs_streamed_rows(tmp_path):
    X, y = _data()
    with pytest.raises(ValueError, match="none were added"):
        GramRidgeClassifier(random_state=0).fit(X, y).save_stream(tmp_path / "head.npz")
    assert not any(tmp_path.iterdir())
