"""Every public estimator predicts from 16 threads at once as from one (labels identical, scores up to
float32 rounding), and its fitted state does not change under that use (issue 27, item 1; GramRidgeClassifier's lazy solve is stressed
further in test_heads_threads.py).

A fitted estimator is shared by the threads of a web server or of joblib's threading backend; a
method that wrote fitted state (a cache filled on first use, a buffer reused between calls) would
race there and give wrong answers without an error. Each case below fits once, records what one
thread gets and a hash of the whole estimator, then releases 16 threads together on every
read-only method and compares.
"""

import joblib
import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from concurrency import at_once
from skconvfeat import (
    FixedConvNet,
    FixedConvTransformer,
    GramRidgeClassifier,
    make_preset,
)

# Labels are identical; scores and features are equal up to float32 rounding, not to the bit, at the default BLAS
# threads: while any transform runs, the process's BLAS is held at one thread (our threads replace its), and
# OpenBLAS's matrix products round differently at one thread and at two (on its Haswell kernels,
# OPENBLAS_CORETYPE=Haswell, a float32 (400, 576) @ (576, 10) product differs by 3e-5 between them; seen in CI
# as 1e-6 relative on a head's decision function). A head's product that runs beside another thread's transform
# therefore rounds as at one thread. OpenBLAS's openblas_set_num_threads_local is no way out in its pthreads
# builds (NumPy's and SciPy's wheels): set from one thread it changed the count another thread saw (tried
# 2026-12-06, OpenBLAS 0.3.30/0.3.31). With BLAS at one thread throughout, the second test below holds every
# output to the bit; fitted state must never change, and the hash check holds it to the bit.
FLOAT32_ROUNDING = 1e-5


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400].reshape(-1, 8, 8), y[:400]


def _transformer():
    return FixedConvTransformer("gabor", kernel_size=3, padding="same")


def _data_derived():
    return FixedConvTransformer("kmeans", bank_params={"n_filters": 16}, kernel_size=3, random_state=0)


def _net():
    return FixedConvNet([
        ("conv1", FixedConvTransformer("random", kernel_size=3, padding="same", pooling="max", random_state=0)),
        ("conv2", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=1)),
    ])


def _pipeline():
    return make_pipeline(_transformer(), LogisticRegression(max_iter=200))


def _ridge_pipeline():
    return make_pipeline(_data_derived(), GramRidgeClassifier(random_state=0))


def _preset():
    return make_pipeline(make_preset("coates-digits", random_state=0), GramRidgeClassifier(random_state=0))


def _learned():
    pytest.importorskip("torch")
    from skconvfeat import LearnedConvClassifier

    conv = FixedConvTransformer("random", kernel_size=3, padding="same", random_state=0)
    return LearnedConvClassifier(conv, max_epochs=2, random_state=0)


CASES = {
    "FixedConvTransformer": (_transformer, ("transform",)),
    "FixedConvTransformer(kmeans)": (_data_derived, ("transform",)),
    "FixedConvNet": (_net, ("transform",)),
    "pipeline+logistic": (_pipeline, ("predict", "predict_proba", "decision_function")),
    "pipeline+GramRidgeClassifier": (_ridge_pipeline, ("predict", "decision_function")),
    "preset coates-digits": (_preset, ("predict", "decision_function")),
    "LearnedConvClassifier": (_learned, ("predict", "predict_proba", "predict_log_proba")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sixteen_threads_get_what_one_thread_gets_and_change_nothing(name, digits):
    X, y = digits
    make, methods = CASES[name]
    estimator = make().fit(X, y)
    fitted = joblib.hash(estimator)
    for method_name in methods:
        method = getattr(estimator, method_name)
        expected = method(X)
        for result in at_once(lambda: method(X)):
            if method_name == "predict":
                np.testing.assert_array_equal(result, expected, err_msg=f"{name}.{method_name}")
            else:  # float32 features: equal up to their rounding, relative to the largest value (see above)
                np.testing.assert_allclose(result, expected, rtol=FLOAT32_ROUNDING,
                                           atol=FLOAT32_ROUNDING * np.abs(expected).max(),
                                           err_msg=f"{name}.{method_name}")
    if hasattr(estimator, "score"):
        scores = at_once(lambda: estimator.score(X, y))
        assert len(set(scores)) == 1, scores
    assert joblib.hash(estimator) == fitted, f"{name}: using the fitted estimator changed its state"


@pytest.mark.parametrize("name", ["pipeline+logistic", "pipeline+GramRidgeClassifier", "FixedConvNet",
                                  "LearnedConvClassifier"])
def test_with_blas_at_one_thread_sixteen_threads_get_one_threads_outputs_to_the_bit(name, digits):
    """The rounding allowed above comes from BLAS's thread count alone: hold it at one and outputs are exact."""
    X, y = digits
    make, methods = CASES[name]
    estimator = make().fit(X, y)
    with threadpool_limits(limits=1, user_api="blas"):
        for method_name in methods:
            method = getattr(estimator, method_name)
            expected = method(X)
            for result in at_once(lambda: method(X)):
                np.testing.assert_array_equal(result, expected, err_msg=f"{name}.{method_name}")
