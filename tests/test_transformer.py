"""FixedConvTransformer computes the documented function and behaves as a scikit-learn transformer."""

import itertools
import tracemalloc

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from reference import reference_layer
from skconvfeat import FixedConvTransformer

LAYER_GRID = list(
    itertools.product(
        ["none", "relu", "abs", "square", "two_sided_relu"],  # nonlinearity
        ["avg", "max"],  # pooling
        [dict(pool_size=2), dict(pool_size=3, pool_stride=2), dict(pool_grid=2), dict(pool_grid=(3, 2))],
        ["valid", "same", "reflect"],  # padding
    )
)


@pytest.mark.parametrize("nonlinearity, pooling, pool, padding", LAYER_GRID)
@pytest.mark.parametrize("n_channels, channel_mode", [(1, "sum"), (3, "sum"), (3, "separate")])
def test_matches_reference(nonlinearity, pooling, pool, padding, n_channels, channel_mode):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((5, 11, 9, n_channels))
    conv = FixedConvTransformer(
        bank="random",
        kernel_size=(4, 3),  # even height exercises the asymmetric 'same' padding
        bank_params={"n_filters": 3},
        channel_mode=channel_mode,
        padding=padding,
        nonlinearity=nonlinearity,
        pooling=pooling,
        dtype="float64",
        random_state=0,
        **pool,
    ).fit(images)
    spec = conv.layer_.spec
    expected = reference_layer(
        images,
        conv.filters_,
        padding=padding,
        nonlinearity=nonlinearity,
        pooling=pooling,
        pool_size=spec.pool_size,
        pool_stride=spec.pool_stride,
        pool_grid=spec.pool_grid,
        channel_mode=channel_mode,
    )
    got = conv.transform(images)
    assert got.shape == (5, conv.n_features_out_)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64():
    images = np.random.default_rng(1).random((20, 28, 28))
    f32 = FixedConvTransformer().fit_transform(images)
    f64 = FixedConvTransformer(dtype="float64").fit_transform(images)
    assert f32.dtype == np.float32 and f64.dtype == np.float64
    assert_allclose(f32, f64, rtol=1e-4, atol=1e-5)


def test_identity_bank_is_raw_pixels():
    X, _ = load_digits(return_X_y=True)
    conv = FixedConvTransformer(bank="identity", nonlinearity="none", pool_size=1, dtype="float64")
    assert_array_equal(conv.fit_transform(X), X)


def test_input_forms_agree():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(7, 10, 12, 3), dtype=np.uint8)
    conv = FixedConvTransformer(bank="gabor", kernel_size=3, pool_grid=2)
    expected = conv.fit_transform(images)
    flat = images.reshape(7, -1)
    for X in (flat, flat.astype(np.float64), flat.astype(np.int32), flat.tolist()):
        assert_allclose(clone(conv).set_params(image_shape=(10, 12, 3)).fit_transform(X), expected, rtol=1e-6)
    assert_allclose(clone(conv).set_params(image_shape=(10, -1, 3)).fit_transform(flat), expected, rtol=1e-6)
    grey = images[..., 0]
    assert_allclose(
        clone(conv).fit_transform(grey), clone(conv).fit_transform(grey[..., None]), rtol=1e-6
    )


def test_square_images_inferred_from_flat_rows():
    X, _ = load_digits(return_X_y=True)
    conv = FixedConvTransformer(kernel_size=3).fit(X)
    assert conv.image_shape_ == (8, 8, 1)
    assert conv.n_features_in_ == 64
    assert conv.filters_.shape == (16, 1, 3, 3)


def test_transform_independent_of_batching_and_threads():
    images = np.random.default_rng(3).random((101, 16, 16, 2))
    conv = FixedConvTransformer(bank="random", random_state=0, batch_size=7).fit(images)
    batched = conv.transform(images)
    whole = conv.set_params(batch_size=1000).transform(images)
    with threadpool_limits(1):
        single = conv.transform(images)
    assert_allclose(batched, whole, rtol=1e-6)
    # BLAS may split the work differently with one thread: equal up to rounding.
    assert_allclose(whole, single, rtol=1e-6)


def test_transform_memory_is_bounded():
    """Scratch memory stays near threads x batch_size images, not the whole dataset's maps."""
    images = np.random.default_rng(4).random((4000, 28, 28)).astype(np.float32)
    conv = FixedConvTransformer(bank="random", bank_params={"n_filters": 32}, batch_size=16, random_state=0).fit(images[:1])
    tracemalloc.start()
    out = conv.transform(images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_maps = images.shape[0] * 24 * 24 * 32 * 4  # what a non-batched layer would hold
    assert peak - out.nbytes < full_maps / 20


def test_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X, _ = load_digits(return_X_y=True)
    conv = FixedConvTransformer(bank="gaussian", kernel_size=3, nonlinearity="two_sided_relu", pool_grid=2).fit(X)
    names = conv.get_feature_names_out()
    assert len(names) == conv.n_features_out_ == 3 * 2 * 4
    assert names[0] == "gaussian_conv0_y0_x0" and names[-1] == "gaussian_conv5_y1_x1"
    frame = conv.set_output(transform="pandas").transform(X)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    assert_allclose(frame.to_numpy(), conv.set_output(transform="default").transform(X))


def test_dataframe_input_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    X, _ = load_digits(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    conv = FixedConvTransformer(kernel_size=3).fit(frame)
    assert list(conv.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="feature names"):
        conv.transform(frame.rename(columns={"px0": "other"}))


def test_pipeline_gridsearch_clone_joblib(tmp_path):
    X, y = load_digits(return_X_y=True)
    pipe = Pipeline(
        [
            ("conv", FixedConvTransformer(kernel_size=3, random_state=0)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    )
    grid = GridSearchCV(
        pipe,
        {"conv__bank": ["gaussian", "random"], "conv__pooling": ["avg", "max"]},
        cv=3,
        n_jobs=2,
    ).fit(X, y)
    assert grid.best_score_ > 0.85
    assert set(grid.cv_results_["param_conv__bank"]) == {"gaussian", "random"}

    twin = clone(grid.best_estimator_)
    assert not hasattr(twin.named_steps["conv"], "filters_")
    assert twin.get_params()["conv__bank"] == grid.best_params_["conv__bank"]

    path = tmp_path / "model.joblib"
    joblib.dump(grid.best_estimator_, path)
    loaded = joblib.load(path)
    conv, loaded_conv = grid.best_estimator_.named_steps["conv"], loaded.named_steps["conv"]
    assert_array_equal(loaded_conv.transform(X), conv.transform(X))
    assert_array_equal(loaded.predict(X), grid.best_estimator_.predict(X))


def test_refit_on_other_shape_resets_state():
    conv = FixedConvTransformer(kernel_size=3).fit(np.zeros((2, 8, 8)))
    conv.fit(np.zeros((2, 10, 10, 3)))
    assert conv.image_shape_ == (10, 10, 3) and conv.n_features_in_ == 300
    assert conv.filters_.shape[1] == 3


def test_user_supplied_kernels():
    sobel = np.array([[[1, 0, -1], [2, 0, -2], [1, 0, -1]]], dtype=float)
    images = np.random.default_rng(5).random((4, 9, 9, 3))
    conv = FixedConvTransformer(bank=sobel, nonlinearity="none", pool_size=1).fit(images)
    assert conv.filters_.shape == (1, 3, 3, 3)
    # Spread over channels = applied to the channel mean.
    grey = FixedConvTransformer(bank=sobel, nonlinearity="none", pool_size=1).fit_transform(images.mean(axis=-1))
    assert_allclose(conv.transform(images), grey, rtol=1e-5, atol=1e-6)
