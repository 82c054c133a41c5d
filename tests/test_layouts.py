"""Input layouts: channels-first arrays, torch tensors, and feature names that stay unique in a union."""

import numpy as np
import pytest
from sklearn.pipeline import FeatureUnion

from skconvfeat import FixedConvTransformer

RNG = np.random.default_rng(0)
NHWC = RNG.random((6, 10, 12, 3))
NCHW = np.ascontiguousarray(NHWC.transpose(0, 3, 1, 2))


def test_channels_first_batch_is_refused_by_default():
    # (n, 3, 10, 12) read channels-last would be 3x10 images with 12 channels.
    with pytest.raises(ValueError, match=r"12 channels but only 3x10 pixels.*data_format='channels_first'"):
        FixedConvTransformer(kernel_size=3).fit(NCHW)


def test_channels_first_equals_channels_last():
    last = FixedConvTransformer(kernel_size=3, pool_grid=2).fit_transform(NHWC)
    first = FixedConvTransformer(kernel_size=3, pool_grid=2, data_format="channels_first").fit_transform(NCHW)
    np.testing.assert_allclose(first, last, rtol=1e-6)  # another memory layout through BLAS


def test_channels_first_flat_rows_use_a_c_h_w_image_shape():
    flat = NCHW.reshape(len(NCHW), -1)
    conv = FixedConvTransformer(kernel_size=3, pool_grid=2, image_shape=(3, 10, 12), data_format="channels_first")
    expected = FixedConvTransformer(kernel_size=3, pool_grid=2).fit_transform(NHWC)
    np.testing.assert_allclose(conv.fit_transform(flat), expected, rtol=1e-6)
    assert conv.image_shape_ == (10, 12, 3)


def test_explicit_channels_last_allows_many_channels():
    many = RNG.random((4, 3, 3, 8))  # 8 channels on 3x3 images, said to be so
    conv = FixedConvTransformer(kernel_size=1, pool_size=1, data_format="channels_last").fit(many)
    assert conv.image_shape_ == (3, 3, 8)


def test_data_format_is_validated():
    with pytest.raises(ValueError, match=r"The 'data_format' parameter of FixedConvTransformer must be .*Got 'nchw' instead"):
        FixedConvTransformer(data_format="nchw").fit(NHWC)


def test_explicit_channels_last_still_checks_the_fitted_shape():
    conv = FixedConvTransformer(kernel_size=3, pool_size=1, data_format="channels_last").fit(RNG.random((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        conv.transform(RNG.random((2, 3, 3, 4)))


def test_torch_tensors_are_converted():
    torch = pytest.importorskip("torch")
    conv = FixedConvTransformer(kernel_size=3, pool_grid=2, data_format="channels_first").fit(NCHW)
    tensor = torch.tensor(NCHW, requires_grad=True)
    np.testing.assert_array_equal(conv.transform(tensor), conv.transform(NCHW))
    np.testing.assert_array_equal(conv.fit_transform(tensor.float()), conv.transform(NCHW.astype(np.float32)))


def test_torch_channels_first_batch_without_data_format_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="data_format='channels_first'"):
        FixedConvTransformer(kernel_size=3).fit(torch.tensor(NCHW))


def test_feature_names_are_unique_in_a_union_of_banks():
    images = RNG.random((5, 8, 8))
    union = FeatureUnion(
        [("a", FixedConvTransformer("gabor", kernel_size=3, pool_grid=2)),
         ("b", FixedConvTransformer("gaussian", kernel_size=3, pool_grid=2))],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    frame = union.fit_transform(images.reshape(5, -1))
    assert frame.columns.is_unique
    assert frame.columns[0] == "gabor_conv0_y0_x0" and frame.columns[-1] == "gaussian_conv2_y1_x1"


def test_array_banks_are_named_conv():
    conv = FixedConvTransformer(np.ones((2, 3, 3)), pool_grid=2).fit(RNG.random((3, 8, 8)))
    assert conv.get_feature_names_out()[0] == "conv0_y0_x0"
