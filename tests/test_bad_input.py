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
    from skconvfeat import _device

    monkeypatch.setattr(_device, "gpu_available", lambda: False)
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


# -- data-derived banks, preprocessing, encodings and absurd sizes (issues 9 and 14) --

CONSTANT = np.full((6, 8, 8), 7.0)


@pytest.mark.parametrize(
    "params, X, match",
    [
        (dict(bank="kmeans", bank_params={"n_filters": 10**4}, kernel_size=3), DIGITS_LIKE,
         r"The 'n_filters' parameter of the 'kmeans' bank is 10000, but the sampled patches hold only 360 distinct non-flat patch\(es\) up to scale"),
        (dict(bank="patches", bank_params={"n_filters": 8}, n_patches=3, kernel_size=3), DIGITS_LIKE,
         r"'n_filters' parameter of the 'patches' bank is 8, but .* only 3 distinct .*raise n_patches"),
        (dict(bank="kmeans", kernel_size=9), DIGITS_LIKE, r"The kernels \(9x9\) are larger than the images \(8x8\)"),
        (dict(bank="kmeans", kernel_size=3), CONSTANT, r"Whitening needs patches that vary, but the .* sampled patches are all the same"),
        (dict(bank="kmeans", kernel_size=3, whiten=False), CONSTANT, r"hold only 0 distinct non-flat"),
        (dict(bank="pca", bank_params={"n_filters": 2}, kernel_size=3, patch_norm=False), CONSTANT,
         r"The 'n_filters' parameter of the 'pca' bank is 2, but the sampled patches vary in only 0 direction"),
        (dict(bank="pca", bank_params={"n_filters": 10}, kernel_size=3), DIGITS_LIKE, r"vary in only 8 direction\(s\)"),
        (dict(bank="kmeans", bank_params={"n_filters": 4, "max_iter": 0}), DIGITS_LIKE, r"The 'max_iter' parameter of the 'kmeans' bank must be a positive int"),
        (dict(bank="kmeans", bank_params={"spherical": "yes"}), DIGITS_LIKE, r"The 'spherical' parameter of the 'kmeans' bank must be True or False"),
        (dict(bank="kmeans", channel_mode="separate"), DIGITS_LIKE, r"with channel_mode='sum' only"),
        (dict(nonlinearity="triangle", channel_mode="separate"), DIGITS_LIKE, r"with channel_mode='sum' only"),
        (dict(eps_norm=0), DIGITS_LIKE, r"The 'eps_norm' parameter of FixedConvTransformer must be a float in the range \(0\.0, inf\)\. Got 0 instead"),
        (dict(eps_zca=float("inf"), whiten=True), DIGITS_LIKE, r"The 'eps_zca' parameter of FixedConvTransformer must be a float in the range \(0\.0, inf\)\. Got inf instead"),
        (dict(alpha=-1.0), DIGITS_LIKE, r"The 'alpha' parameter of FixedConvTransformer must be a float in the range \[0\.0, inf\)\. Got -1\.0 instead"),
        (dict(alpha=float("nan")), DIGITS_LIKE, r"The 'alpha' parameter of FixedConvTransformer must be a float in the range \[0\.0, inf\)\. Got nan instead"),
        (dict(nearest_fraction=0.0), DIGITS_LIKE, r"The 'nearest_fraction' parameter of FixedConvTransformer must be a float in the range \(0\.0, 1\.0\]\. Got 0\.0 instead"),
        (dict(nearest_fraction=1.5), DIGITS_LIKE, r"The 'nearest_fraction' parameter of FixedConvTransformer must be a float in the range \(0\.0, 1\.0\]\. Got 1\.5 instead"),
        (dict(nonlinearity="two_sided_nearest", channel_mode="separate"), DIGITS_LIKE, r"with channel_mode='sum' only"),
        (dict(n_patches=0), DIGITS_LIKE, r"The 'n_patches' parameter of FixedConvTransformer must be an int in the range \[1, inf\)"),
        (dict(whiten="yes"), DIGITS_LIKE, r"The 'whiten' parameter of FixedConvTransformer must be .*Got 'yes' instead"),
        (dict(bank="gabor", bank_params={"frequencies": (0.2, 3.0)}), DIGITS_LIKE,
         r"The 'frequencies' parameter of the 'gabor' bank must be in \(0, 0\.5\] cycles per pixel"),
        (dict(bank="gabor", bank_params={"phases": (0.0, np.nan)}), DIGITS_LIKE, r"The 'phases' parameter of the 'gabor' bank must be a non-empty sequence of finite numbers"),
        (dict(bank="gabor", bank_params={"phases": ()}), DIGITS_LIKE, r"The 'phases' parameter of the 'gabor' bank must be a non-empty"),
        (dict(bank="gabor", bank_params={"bandwidth": "wide"}), DIGITS_LIKE, r"The 'bandwidth' parameter of the 'gabor' bank must be a non-empty sequence of positive numbers\. Got 'wide'"),
        (dict(bank="gabor", bank_params={"n_orientations": 10**9}), DIGITS_LIKE, r"The 'gabor' bank would hold 4,000,000,000 kernels \(n_orientations x frequencies x phases\), [\d,.]+ GiB of float64, more than half of this machine's"),
        (dict(bank="random", bank_params={"n_filters": 10**12}), DIGITS_LIKE, r"The 'random' bank would hold 1,000,000,000,000 kernels \(n_filters\)"),
        (dict(bank="random", bank_params={"zero_mean": None}), DIGITS_LIKE, r"The 'zero_mean' parameter of the 'random' bank must be True or False"),
        (dict(bank="sharpen", bank_params={"sigma": (1.0, 2.0)}), DIGITS_LIKE, r"The 'sigma' parameter of the 'sharpen' bank must be one positive number"),
        (dict(bank="gaussian", bank_params={"sigmas": []}), DIGITS_LIKE, r"The 'sigmas' parameter of the 'gaussian' bank must be a non-empty sequence"),
    ],
)
def test_bad_data_banks_and_preprocessing(params, X, match):
    with pytest.raises(ValueError, match=match):
        FixedConvTransformer(**{"random_state": 0, **params}).fit(X)  # seeded: patches are sampled


def test_absurd_pool_grid_is_refused_with_the_memory_it_needs(monkeypatch):
    from skconvfeat import _device

    monkeypatch.setattr(_device, "physical_memory_bytes", lambda: 16 << 30)
    with pytest.raises(ValueError, match=r"would need [\d,.]+ GiB for a single image \(160,000,000,000 features, 16 kernels\), more than this machine's 16\.0 GiB"):
        FixedConvTransformer(pool_grid=10**5).fit(DIGITS_LIKE)


def test_every_bank_is_checked_finite():
    from skconvfeat import register_bank
    from skconvfeat._banks import _BANK_INFO, _REGISTRY

    @register_bank("test-nan")
    def nan_bank(kernel_size, n_channels, scale=1.0):
        return np.full((2, n_channels, *kernel_size), scale) * np.array([1.0, np.nan])[:, None, None, None]

    try:
        with pytest.raises(ValueError, match=r"The 'test-nan' bank gave non-finite \(NaN or infinite\) kernels with bank_params=\{'scale': 2\.0\}"):
            FixedConvTransformer(bank="test-nan", bank_params={"scale": 2.0}, kernel_size=3).fit(DIGITS_LIKE)
    finally:
        del _REGISTRY["test-nan"], _BANK_INFO["test-nan"]


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
def test_vanishing_sigmas_fall_back_to_the_nearest_pixels(kernel_size):
    """Documented fallback: as sigma -> 0 a blur (and a Gabor envelope) tends to the central pixels, never NaN."""
    from skconvfeat import make_bank

    blur = make_bank("gaussian", kernel_size=kernel_size, sigmas=(1e-300, 1e-3))[:, 0]
    centre = np.zeros((kernel_size, kernel_size))
    middle = slice((kernel_size - 1) // 2, kernel_size // 2 + 1)
    centre[middle, middle] = 1.0 / centre[middle, middle].size
    np.testing.assert_allclose(blur, [centre, centre], atol=1e-12)
    gabor = make_bank("gabor", kernel_size=kernel_size, frequencies=(0.5,), bandwidth=1e-300)
    assert np.all(np.isfinite(gabor))
    sharpen = make_bank("sharpen", kernel_size=kernel_size, sigma=1e-300)
    assert np.all(np.isfinite(sharpen))


def test_cast_overflow_is_refused():
    huge = DIGITS_LIKE * 1e39
    with pytest.raises(ValueError, match=r"X holds values up to [\d.]+e\+3[89] in magnitude, beyond what dtype='float32' can compute with \(3\.4e\+38\).*use dtype='float64'"):
        FixedConvTransformer(kernel_size=3).fit(huge)
    conv = FixedConvTransformer(kernel_size=3).fit(DIGITS_LIKE)
    with pytest.raises(ValueError, match=r"X holds values up to .* beyond what dtype='float32'"):
        conv.transform(huge)
    # Squared deviations of normalised patches overflow much earlier.
    with pytest.raises(ValueError, match=r"with patch_norm, which squares pixel deviations"):
        FixedConvTransformer(kernel_size=3, patch_norm=True).fit(DIGITS_LIKE * 1e30)
    features = FixedConvTransformer(kernel_size=3, dtype="float64").fit_transform(huge)
    assert np.all(np.isfinite(features))


def test_learned_classifier_refuses_data_derived_banks():
    pytest.importorskip("torch")
    from skconvfeat import LearnedConvClassifier

    conv = FixedConvTransformer(bank="kmeans", bank_params={"n_filters": 4}, kernel_size=3, random_state=0)
    with pytest.raises(ValueError, match=r"LearnedConvClassifier trains plain convolutions .* but layer 1 of 'conv' preprocesses its patches"):
        LearnedConvClassifier(conv).fit(DIGITS_LIKE, np.arange(10) % 2)


def test_make_bank_patches_checks():
    from skconvfeat import make_bank

    with pytest.raises(ValueError, match=r"The 'pca' bank is derived from data: pass patches=, an array \(n_patches, 1, 3, 3\)"):
        make_bank("pca", kernel_size=3)
    with pytest.raises(ValueError, match=r"The 'patches' of the 'pca' bank must be an array \(n_patches, 1, 3, 3\).*Got shape \(4, 9\)"):
        make_bank("pca", kernel_size=3, patches=np.ones((4, 9)))
    with pytest.raises(ValueError, match=r"The 'patches' of the 'kmeans' bank contain NaN or infinity"):
        make_bank("kmeans", kernel_size=1, patches=np.full((4, 1, 1, 1), np.nan))
    with pytest.raises(ValueError, match=r"The 'gabor' bank is not derived from data, so make_bank takes no 'patches'"):
        make_bank("gabor", patches=np.ones((4, 1, 5, 5)))


@pytest.mark.parametrize("nonlinearity", ["soft_threshold", "two_sided_soft_threshold"])
@pytest.mark.parametrize("pool_grid", [2, None])
def test_threshold_beyond_the_dtype_is_refused_not_nan(nonlinearity, pool_grid):
    # Found by tests/test_fuzz_parameters.py: alpha=3e38 in float32 gave NaN features.
    images = np.random.default_rng(0).uniform(0, 255, size=(5, 9, 9, 2))
    conv = FixedConvTransformer("gabor", kernel_size=3, nonlinearity=nonlinearity, alpha=3e38, pool_grid=pool_grid)
    with pytest.raises(ValueError, match="The 'alpha' parameter of FixedConvTransformer is 3e\\+38, beyond"):
        conv.fit(images)
    assert np.isfinite(conv.set_params(dtype="float64").fit(images).transform(images)).all()


def test_overflow_inside_the_layer_is_an_error_not_infinite_features():
    # Found by tests/test_fuzz_parameters.py: finite float32-range pixels, squared responses -> inf.
    images = np.full((3, 8, 8), 1e30)
    conv = FixedConvTransformer("gaussian", kernel_size=3, nonlinearity="square").fit(images)
    with pytest.raises(ValueError, match="infinite or NaN features from finite X.*dtype='float64'"):
        conv.transform(images)
    assert np.isfinite(conv.set_params(dtype="float64").transform(images)).all()
