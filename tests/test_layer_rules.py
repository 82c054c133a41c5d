"""The layer's rules (one table each in _layer), the fitted-layer value, the backend contract and pickles.

Every nonlinearity of ``_layer.NONLINEARITY_TABLE`` is checked here on every
path against :data:`REFERENCE`, written from the definitions: adding a
nonlinearity is one entry in the table and one here.
"""

import dataclasses
import inspect
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits

from reference import reference_layer, reference_patch_layer
from skconvfeat import FixedConvNet, FixedConvTransformer, _layer
from skconvfeat._backend import cpu, cuda

ALPHA = 0.3
RESPONSES = np.random.default_rng(0).standard_normal((40, 6))
# The kernels' squared norms |d|^2 the nearest encodings rank with: squared distances are |z|^2 - 2 r + |d|^2.
SQ_NORMS = np.random.default_rng(1).uniform(0.5, 2.0, 6)


def _marks_of_smallest(distances, n=int(0.4 * 6)):
    """1 at each row's n smallest values, by a full sort (n as LayerSpec.n_nearest for 6 kernels)."""
    marks = np.zeros_like(distances)
    np.put_along_axis(marks, np.argsort(distances, axis=1)[:, :n], 1.0, axis=1)
    return marks


# Each nonlinearity from its definition, on responses r: the list of maps it makes.
REFERENCE = {
    "none": lambda r: [r],
    "relu": lambda r: [np.maximum(r, 0)],
    "abs": lambda r: [np.abs(r)],
    "square": lambda r: [r * r],
    "two_sided_relu": lambda r: [np.maximum(r, 0), np.maximum(-r, 0)],
    "soft_threshold": lambda r: [np.maximum(r - ALPHA, 0)],
    "two_sided_soft_threshold": lambda r: [np.maximum(r - ALPHA, 0), np.maximum(-r - ALPHA, 0)],
    # On distances d to the kernels (a row each): max(0, mean(d) - d).
    "triangle": lambda d: [np.maximum(d.mean(axis=1, keepdims=True) - d, 0)],
    # The kernels nearest to z (for -z: -r in place of r), ranked by squared distance less |z|^2.
    "nearest": lambda r: [_marks_of_smallest(SQ_NORMS - 2 * r)],
    "two_sided_nearest": lambda r: [_marks_of_smallest(SQ_NORMS - 2 * r), _marks_of_smallest(SQ_NORMS + 2 * r)],
}
DIGITS = load_digits().data.reshape(-1, 8, 8, 1)


def _spec(nonlinearity, **pool):
    pool = pool or dict(pool_size=(2, 2), pool_stride=(2, 2), pool_grid=None)
    return _layer.LayerSpec("valid", nonlinearity, "avg", channel_mode="sum", alpha=ALPHA, **pool)


def _input(name):
    """What the encoding reads: responses minus the folded threshold, or squared distances for the triangle."""
    if name == "triangle":
        return RESPONSES**2
    if name in _layer.RANKED:
        return RESPONSES - SQ_NORMS / 2  # the folded d.z - |d|^2 / 2
    return RESPONSES - _layer.threshold(_spec(name))


def _expected(name):
    return REFERENCE[name](np.abs(RESPONSES) if name == "triangle" else RESPONSES)


def test_every_nonlinearity_has_a_reference_and_the_lists_follow_the_table():
    assert set(REFERENCE) == set(_layer.NONLINEARITY_TABLE)
    assert set(_layer.NONLINEARITIES) | set(_layer.ENCODINGS) == set(_layer.NONLINEARITY_TABLE)
    for name, rule in _layer.NONLINEARITY_TABLE.items():
        assert len(_expected(name)) == (2 if rule.two_sided else 1) == _spec(name).n_maps(1, 1)


@pytest.mark.parametrize("name", list(_layer.NONLINEARITY_TABLE))
def test_numpy_encoding(name):
    got = _layer.encode(_input(name).copy(), _spec(name), np, SQ_NORMS)
    assert_allclose(np.concatenate(got, axis=1), np.concatenate(_expected(name), axis=1), atol=1e-12)


@pytest.mark.parametrize("name", [n for n in _layer.NONLINEARITY_TABLE if n not in _layer.RANKED])
def test_compiled_encoding(name):
    kernels = cpu.compiled_kernels()
    if kernels is None:
        pytest.skip("numba is not installed (the 'fast' extra)")
    expected = np.concatenate(_expected(name), axis=1)
    code, rows = kernels._code(name), _input(name)
    for row, want in zip(rows, expected):
        encoded = np.empty(want.shape)
        mean = np.sqrt(row).mean() if name == "triangle" else 0.0
        source = np.sqrt(row) if name == "triangle" else row
        kernels._encode_row(source, code, 0.0, -2 * _layer.threshold(_spec(name)), mean, encoded)
        assert_allclose(encoded, want, atol=1e-12)


@pytest.mark.parametrize("name", _layer.NONLINEARITIES)
def test_torch_activation(name):
    torch = pytest.importorskip("torch")
    from skconvfeat.learned._network import _activate

    maps = torch.as_tensor(RESPONSES.T[None, :, :, None].copy())  # (1, filters, positions, 1)
    got = _activate(maps, name)[0, :, :, 0].numpy().T
    assert_allclose(got, np.concatenate(_expected(name), axis=1), atol=1e-12)


@pytest.mark.parametrize("name", _layer.ENCODINGS)
def test_torch_refuses_the_dictionary_encodings(name):
    torch = pytest.importorskip("torch")
    from skconvfeat.learned._network import _activate

    with pytest.raises(ValueError, match="no torch counterpart"):
        _activate(torch.zeros((1, 2, 3, 3)), name)


@pytest.mark.parametrize("padding", _layer.PADDINGS)
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 7])
def test_padding_rule(padding, kernel):
    row = np.arange(5.0)
    index = _layer.padded_index(5, kernel, padding)
    padded = _layer._pad(row[None, :, None, None], (kernel, 1), padding, np)[0, :, 0, 0]
    expected = {"valid": row, "same": np.pad(row, ((kernel - 1) // 2, kernel // 2)),
                "reflect": np.pad(row, ((kernel - 1) // 2, kernel // 2), mode="reflect")}[padding]
    assert_array_equal(padded, expected)
    assert_array_equal(np.where(index < 0, 0.0, row[index]), expected)
    spec = dataclasses.replace(_spec("none"), padding=padding)
    assert len(expected) - kernel + 1 == spec.conv_shape((5, 5), (kernel, kernel))[0]


# -- the fitted layer ------------------------------------------------------------------------


CASES = {
    "gabor-grid": dict(bank="gabor", kernel_size=3, pool_grid=2),
    "random-two-sided-same": dict(bank="random", kernel_size=3, nonlinearity="two_sided_relu", padding="same",
                                  random_state=0),
    "kmeans-triangle": dict(bank="kmeans", bank_params={"n_filters": 20, "max_iter": 3}, kernel_size=3,
                            nonlinearity="triangle", pool_grid=2, n_patches=3000, random_state=1),
    "patches-two-sided-soft-max": dict(bank="patches", bank_params={"n_filters": 12}, kernel_size=3,
                                       nonlinearity="two_sided_soft_threshold", pool_grid=3, pooling="max",
                                       n_patches=2000, random_state=2, dtype="float64"),
    # Thiry et al.'s recipe in small: whitened random patches, nearest kernels of z and -z, overlapping windows.
    "patches-two-sided-nearest-windows": dict(bank="patches", bank_params={"n_filters": 15}, kernel_size=3,
                                              nonlinearity="two_sided_nearest", nearest_fraction=0.3, pool_size=3,
                                              pool_stride=2, n_patches=2000, random_state=3, dtype="float64"),
    "kmeans-nearest-grid": dict(bank="kmeans", bank_params={"n_filters": 10, "max_iter": 3}, kernel_size=3,
                                nonlinearity="nearest", pool_grid=2, n_patches=2000, random_state=4),
    "gabor-separate-reflect": dict(bank="gabor", kernel_size=3, channel_mode="separate", nonlinearity="abs",
                                   padding="reflect", pool_size=3, pool_stride=2),
}


def _reference(layer, images):
    """The slow reference of a fitted layer's features (tests/reference.py)."""
    spec, prep = layer.spec, layer.preprocessing
    pool = dict(pooling=spec.pooling, pool_size=spec.pool_size, pool_stride=spec.pool_stride,
                pool_grid=spec.pool_grid, padding=spec.padding)
    if not _layer.needs_folding(spec, prep):
        return reference_layer(images, layer.filters, nonlinearity=spec.nonlinearity,
                               channel_mode=spec.channel_mode, **pool)
    return reference_patch_layer(
        images, layer.filters, patch_norm=prep is not None and prep.patch_norm,
        eps_norm=0.0 if prep is None else prep.eps_norm, mean=getattr(prep, "mean", None),
        whitening=getattr(prep, "whitening", None), nonlinearity=spec.nonlinearity, alpha=spec.alpha,
        nearest_fraction=spec.nearest_fraction, **pool,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_fixed_seed_features_match_the_reference(case):
    """The seeds of the before/after comparison of issue 22 (bit-identical then): still the documented function."""
    conv = FixedConvTransformer(**CASES[case]).fit(DIGITS[:500])
    images = DIGITS[500:520]
    got = conv.transform(images)
    tolerance = 1e-9 if conv.dtype == "float64" else 2e-5
    expected = _reference(conv.layer_, images)
    assert_allclose(got, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())
    assert_allclose(conv.layer_.forward(images, dtype=conv.dtype), got, rtol=1e-6, atol=1e-6 * np.abs(got).max())


@pytest.mark.parametrize("case", list(CASES))
def test_geometry_of_the_fitted_layer(case):
    conv = FixedConvTransformer(**CASES[case]).fit(DIGITS[:300])
    layer = conv.layer_
    features = conv.transform(DIGITS[:3])
    assert features.shape == (3, layer.n_features_out) == (3, np.prod(layer.output_shape))
    assert conv.n_features_out_ == layer.n_features_out and conv.filters_ is layer.filters
    assert conv.image_shape_ == layer.image_shape == (8, 8, 1)
    maps = layer.unpooled().forward(DIGITS[:1].astype(np.float64), dtype="float64")
    ph, pw, n_maps = layer.unpooled().output_shape
    assert (ph, pw) == layer.map_shape and maps.shape == (1, n_maps * ph * pw)
    # Multiply-adds counted by brute force: every map position, output map and kernel weight.
    n_filters, kernel_channels, kh, kw = layer.filters.shape
    outputs = n_filters * (layer.image_shape[2] if layer.spec.channel_mode == "separate" else 1)
    assert layer.macs_per_image() == ph * pw * outputs * kernel_channels * kh * kw
    assert layer.bytes_per_image(4) * 2 == layer.bytes_per_image(8) > 0


def test_unpooled_layer_gives_the_feature_maps():
    conv = FixedConvTransformer("gabor", kernel_size=3, pool_grid=2, nonlinearity="abs").fit(DIGITS[:50])
    unpooled = conv.layer_.unpooled()
    ph, pw, n_maps = unpooled.output_shape
    maps = unpooled.forward(DIGITS[:1], dtype="float64")[0].reshape(n_maps, ph, pw)
    expected = reference_layer(DIGITS[:1], conv.filters_, padding="valid", nonlinearity="abs", pooling="avg",
                               pool_size=(1, 1), pool_stride=(1, 1), pool_grid=None, channel_mode="sum")
    assert_allclose(maps.ravel(), expected.ravel(), atol=1e-9)
    assert conv.layer_.spec.pool_grid == (2, 2)  # the fitted layer itself is unchanged


def test_the_fitted_layer_is_frozen_and_parameters_after_fit_do_not_change_it():
    conv = FixedConvTransformer("gabor", kernel_size=3, pool_grid=2).fit(DIGITS[:50])
    before = conv.transform(DIGITS[:5])
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.layer_.spec = None
    with pytest.raises(ValueError, match="read-only"):
        conv.layer_.filters[0, 0, 0, 0] = 1.0
    conv.set_params(pool_grid=None, pool_size=1, nonlinearity="square")
    assert_array_equal(conv.transform(DIGITS[:5]), before)
    assert conv.fit(DIGITS[:50]).transform(DIGITS[:5]).shape[1] != before.shape[1]  # a refit reads them


def test_a_network_reads_its_layers_fitted_values():
    net = FixedConvNet([("a", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=0)),
                        ("b", FixedConvTransformer("gabor", kernel_size=3, pool_grid=2))], output="all")
    features = net.fit_transform(DIGITS[:20])
    assert features.shape[1] == sum(layer.layer_.n_features_out for _, layer in net.layers_)


def test_cpu_and_gpu_drivers_share_one_signature():
    assert inspect.signature(cpu.run) == inspect.signature(cuda.run)
    assert list(inspect.signature(cpu.run).parameters) == ["layer", "images", "dtype", "batch_size"]


@pytest.mark.parametrize("batch_size", ["auto", 1, 7])
def test_cpu_driver_batches_give_the_same_features(batch_size):
    conv = FixedConvTransformer("gabor", kernel_size=3, pool_grid=2).fit(DIGITS[:50])
    got = cpu.run(conv.layer_, DIGITS[:23], dtype="float32", batch_size=batch_size)
    assert_array_equal(got, conv.transform(DIGITS[:23]))


# -- fitting and pickles -------------------------------------------------------------------


def test_an_interrupted_fit_leaves_the_transformer_as_it_was(monkeypatch):
    from skconvfeat import _transformer

    conv = FixedConvTransformer("gabor", kernel_size=3).fit(DIGITS[:50])
    before = dict(vars(conv))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_transformer, "fit_layer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        conv.fit(load_digits().data[:50].reshape(-1, 4, 16))
    assert vars(conv).keys() == before.keys() and all(vars(conv)[k] is v for k, v in before.items())


def test_pickles_carry_the_library_version():
    from skconvfeat import __version__

    conv = FixedConvTransformer("gabor", kernel_size=3).fit(DIGITS[:50])
    state = conv.__getstate__()
    assert state["_skconvfeat_version"] == __version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(conv))
    assert_array_equal(loaded.transform(DIGITS[:5]), conv.transform(DIGITS[:5]))
    other = FixedConvTransformer.__new__(FixedConvTransformer)
    with pytest.warns(UserWarning, match=rf"pickled by skconvfeat 0\.0\.1 and is loaded by skconvfeat {__version__}"):
        other.__setstate__({**state, "_skconvfeat_version": "0.0.1"})
    assert_array_equal(other.transform(DIGITS[:5]), conv.transform(DIGITS[:5]))


def _old_layout(conv):
    """The state a pickle of the previous layout held: the layer's parts, no layer_, no version."""
    state = conv.__getstate__()
    layer = state.pop("layer_")
    del state["_skconvfeat_version"]
    state.update(filters_=np.array(layer.filters), preprocessing_=layer.preprocessing,
                 image_shape_=layer.image_shape, n_features_out_=layer.n_features_out)
    return state


@pytest.mark.parametrize("case", ["gabor-grid", "kmeans-triangle"])
def test_pickles_of_the_previous_layout_load_and_give_the_same_features(case):
    conv = FixedConvTransformer(**CASES[case]).fit(DIGITS[:300])
    old = FixedConvTransformer.__new__(FixedConvTransformer)
    old.__setstate__(_old_layout(conv))
    assert_array_equal(old.transform(DIGITS[:5]), conv.transform(DIGITS[:5]))


def test_a_previous_layout_that_cannot_be_upgraded_says_so():
    conv = FixedConvTransformer("gabor", kernel_size=3).fit(DIGITS[:50])
    state = _old_layout(conv)
    del state["image_shape_"]
    with pytest.raises(ValueError, match="pickled by an older skconvfeat .* Refit it with"):
        FixedConvTransformer.__new__(FixedConvTransformer).__setstate__(state)
