"""Every kind of bad input gets a ValueError/TypeError naming the parameter, what was expected and what was given."""

import numpy as np
import pytest

from skconvfeat import FixedConvTransformer

DIGITS_LIKE = np.random.default_rng(0).random((10, 64))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.full((3, 64), np.nan), "Input X contains NaN"),
        (np.full((3, 64), np.inf), "Input X contains infinity"),
        (np.zeros(64), "Expected 2D array, got 1D array"),
        (np.zeros((2, 3, 4, 5, 6)), r"X must be flat rows .* Got an array of shape \(2, 3, 4, 5, 6\)"),
        (np.zeros((0, 64)), r"Found array with 0 sample\(s\)"),
        (np.zeros((3, 64), dtype=complex), "Complex data not supported"),
        (np.array([["a"] * 64] * 3), "dtype='numeric' is not compatible with arrays of bytes/strings"),
        (np.zeros((3, 60)), r"X has 60 features per row, which is not a square grey image; pass the 'image_shape'"),
    ],
)
def test_bad_X_in_fit(X, match):
    with pytest.raises(ValueError, match=match):
        FixedConvTransformer(kernel_size=3).fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(bank="gabr"), r"The 'bank' parameter of FixedConvTransformer must be one of .*Got 'gabr' instead\. Did you mean 'gabor'\?"),
        (dict(bank=3.5), r"The 'bank' parameter of FixedConvTransformer must be an instance of 'str' or an array-like\. Got 3\.5"),
        (dict(nonlinearity="tanh"), r"The 'nonlinearity' parameter of FixedConvTransformer must be a str among .*Got 'tanh' instead"),
        (dict(pooling="mean"), r"The 'pooling' parameter .*Got 'mean' instead"),
        (dict(padding="full"), r"The 'padding' parameter .*Got 'full' instead"),
        (dict(channel_mode="depthwise"), r"The 'channel_mode' parameter .*Got 'depthwise' instead"),
        (dict(kernel_size=0), r"The 'kernel_size' parameter of FixedConvTransformer must be .*Got 0 instead"),
        (dict(kernel_size=(3, 0)), r"The 'kernel_size' parameter of FixedConvTransformer must be a positive int or a pair"),
        (dict(pool_size="2"), r"The 'pool_size' parameter .*Got '2' instead"),
        (dict(pool_grid=(2, -1)), r"The 'pool_grid' parameter of FixedConvTransformer must be a positive int or a pair"),
        (dict(batch_size=0), r"The 'batch_size' parameter .*Got 0 instead"),
        (dict(dtype="float16"), r"The 'dtype' parameter .*Got 'float16' instead"),
        (dict(device="gpu"), r"The 'device' parameter .*Got 'gpu' instead"),
        (dict(image_shape=(8, 8, 1, 1)), r"The 'image_shape' parameter of FixedConvTransformer must be \(h, w\) or \(h, w, c\)"),
        (dict(image_shape=(8, -1, -1)), r"The 'image_shape' parameter .*one of which may be -1\. Got \(8, -1, -1\)"),
        (dict(image_shape=(8, 9)), r"The 'image_shape' parameter of FixedConvTransformer is \(8, 9\), which needs 72 features per row, but X has 64 feature\(s\)"),
        (dict(image_shape=(5, -1)), r"needs a multiple of 5 features per row, but X has 64"),
        (dict(kernel_size=9), r"The kernels \(9x9\) are larger than the images \(8x8\) with padding='valid'\. Use a smaller 'kernel_size' or padding='same'"),
        (dict(kernel_size=7, pool_size=3), r"The 'pool_size' parameter of FixedConvTransformer \(\(3, 3\)\) is larger than the 2x2 feature maps"),
        (dict(bank="gaussian", bank_params={"sigma": 1}), r"The 'gaussian' bank got unexpected parameter\(s\) \['sigma'\]; its parameters are \['sigmas'\]"),
        (dict(bank="random", bank_params={"n_filters": 0}), r"The 'n_filters' parameter of the 'random' bank must be a positive int\. Got 0"),
        (dict(bank=np.ones((2, 3))), r"The 'bank' parameter of FixedConvTransformer must be a bank name or kernels shaped \(n_filters, kh, kw\)"),
        (dict(bank=np.ones((2, 3, 3)), bank_params={"a": 1}), r"The 'bank_params' parameter of FixedConvTransformer only applies to a named bank"),
        (dict(bank=np.full((1, 3, 3), np.nan)), r"Input bank contains NaN"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FixedConvTransformer(**params).fit(DIGITS_LIKE)


def test_transform_shape_mismatch():
    conv = FixedConvTransformer(kernel_size=3).fit(DIGITS_LIKE)
    with pytest.raises(ValueError, match="X has 49 features, but FixedConvTransformer is expecting 64 features"):
        conv.transform(np.zeros((2, 49)))
    with pytest.raises(ValueError, match=r"X holds images of shape \(8, 8, 3\), but FixedConvTransformer was fitted on images of shape \(8, 8, 1\)"):
        conv.transform(np.zeros((2, 8, 8, 3)))


def test_unfitted_transform():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        FixedConvTransformer().transform(DIGITS_LIKE)


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    from skconvfeat import _backend

    monkeypatch.setattr(_backend, "gpu_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"device='cuda' was requested but no usable GPU was found.*device='cpu'"):
        FixedConvTransformer(device="cuda").fit(DIGITS_LIKE)
    conv = FixedConvTransformer(device="auto", kernel_size=3).fit(DIGITS_LIKE)
    assert conv.transform(DIGITS_LIKE).shape[0] == 10


def test_failed_fit_keeps_previous_state():
    conv = FixedConvTransformer(kernel_size=3).fit(DIGITS_LIKE)
    filters = conv.filters_.copy()
    with pytest.raises(ValueError, match="larger than the images"):
        conv.set_params(kernel_size=9).fit(np.zeros((2, 6, 6, 3)))
    np.testing.assert_array_equal(conv.filters_, filters)
    assert conv.image_shape_ == (8, 8, 1) and conv.n_features_in_ == 64
    assert conv.set_params(kernel_size=3).transform(DIGITS_LIKE).shape[0] == 10
