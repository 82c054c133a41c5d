"""GramRidgeClassifier's fitted state does not change under concurrent use (issue 27, item 1)."""

import pickle

import numpy as np
from sklearn.datasets import make_classification

from concurrency import at_once
from skconvfeat import GramRidgeClassifier


def _predict_at_once(model, X):
    """``model.predict(X)`` and ``decision_function`` from many threads released together."""
    return at_once(lambda: (model.predict(X), model.decision_function(X)))


def _streamed(X, y, **params):
    model = GramRidgeClassifier(alphas=[1e-2], **params)
    for rows in np.array_split(np.arange(len(X)), 3):
        model.partial_fit(X[rows], y[rows], classes=np.unique(y))
    return model


def test_sixteen_threads_predict_as_one_after_partial_fit():
    X, y = make_classification(n_samples=3000, n_features=300, n_informative=20, n_classes=4, random_state=0)
    expected = _streamed(X, y, standardize=True)
    expected_predictions, expected_scores = expected.predict(X), expected.decision_function(X)
    more = expected.partial_fit(X[:500], y[:500]).decision_function(X)
    for _ in range(3):  # the lazy solve races only on first use, so each round starts a fresh model
        model = _streamed(X, y, standardize=True)
        for predictions, scores in _predict_at_once(model, X):
            np.testing.assert_array_equal(predictions, expected_predictions)
            np.testing.assert_array_equal(scores, expected_scores)
        np.testing.assert_array_equal(model.predict(X), expected_predictions)  # and stays right afterwards
        # The sums were not written either (an earlier design corrupted them): more rows, the same model.
        np.testing.assert_array_equal(model.partial_fit(X[:500], y[:500]).decision_function(X), more)


def test_sixteen_threads_predict_as_one_after_fit():
    X, y = make_classification(n_samples=1000, n_features=50, n_classes=3, n_informative=10, random_state=0)
    model = GramRidgeClassifier(random_state=0).fit(X, y)
    expected = model.predict(X), model.decision_function(X)
    for predictions, scores in _predict_at_once(model, X):
        np.testing.assert_array_equal(predictions, expected[0])
        np.testing.assert_array_equal(scores, expected[1])


def test_a_streamed_model_pickles_without_its_lock_and_keeps_streaming():
    X, y = make_classification(n_samples=600, n_features=30, n_informative=10, n_classes=3, random_state=0)
    model = _streamed(X[:400], y[:400])
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.decision_function(X), model.decision_function(X))
    copy.partial_fit(X[400:], y[400:])
    whole = GramRidgeClassifier(alphas=[1e-2]).fit(X, y)
    np.testing.assert_allclose(copy.decision_function(X), whole.decision_function(X), rtol=1e-7, atol=1e-9)
