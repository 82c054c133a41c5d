"""GramRidgeClassifier against scikit-learn's RidgeClassifier, its penalty choice, and its contract."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import RidgeClassifier
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


@parametrize_with_checks([GramRidgeClassifier(random_state=0), GramRidgeClassifier(alphas=[1e-3])])
def test_sklearn_contract(estimator, check):
    check(estimator)
