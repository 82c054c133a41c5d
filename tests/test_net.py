"""FixedConvNet: layers stacked, checked against the slow reference applied layer by layer."""

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconvfeat import FixedConvNet, FixedConvTransformer

from reference import reference_layer


def _strip_net(**kw):
    # Contract checks feed rows of 1 to ~20 features: one-pixel-high strips.
    return FixedConvNet(
        [
            ("conv1", FixedConvTransformer("random", image_shape=(1, -1), kernel_size=(1, 3), padding="same",
                                           pool_size=1, random_state=0, bank_params={"n_filters": 3})),
            ("conv2", FixedConvTransformer("gabor", kernel_size=(1, 3), padding="reflect", nonlinearity="abs",
                                           channel_mode="separate", pooling="max", pool_grid=(1, 2))),
        ],
        **kw,
    )


@parametrize_with_checks([_strip_net(), _strip_net(output="all", output_grid=(1, 1))])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _reference_stack(images, layers):
    """Apply reference_layer layer by layer, reshaping map-major features into images by hand."""
    x, outputs = images, []
    for layer in layers:
        spec = layer.layer_.spec
        feats = reference_layer(
            x, layer.filters_, padding=spec.padding, nonlinearity=spec.nonlinearity, pooling=spec.pooling,
            pool_size=spec.pool_size, pool_stride=spec.pool_stride, pool_grid=spec.pool_grid,
            channel_mode=spec.channel_mode,
        )
        n_maps = spec.n_maps(layer.filters_.shape[0], x.shape[-1])
        side = feats.shape[1] // n_maps
        ph = pw = int(round(np.sqrt(side)))
        maps = feats.reshape(len(x), n_maps, ph, pw)
        x = np.stack([maps[i].transpose(1, 2, 0) for i in range(len(x))])
        outputs.append(maps)
    return outputs


@pytest.mark.parametrize(
    "first, second",
    [
        (dict(bank="random", kernel_size=3, padding="same", pooling="max", random_state=1),
         dict(bank="random", kernel_size=3, padding="valid", pooling="avg", random_state=2)),
        (dict(bank="gabor", kernel_size=3, padding="reflect", nonlinearity="abs", pool_size=1),
         dict(bank="gaussian", kernel_size=3, padding="same", nonlinearity="two_sided_relu",
              channel_mode="separate", pool_grid=2)),
    ],
)
def test_two_layers_match_the_slow_reference(first, second):
    X = np.random.default_rng(0).standard_normal((4, 10, 10, 2))
    net = FixedConvNet([("a", FixedConvTransformer(dtype="float64", **first)),
                        ("b", FixedConvTransformer(dtype="float64", **second))], output="all").fit(X)
    got = net.transform(X)
    layers = [layer for _, layer in net.layers_]
    expected = np.concatenate([m.reshape(len(X), -1) for m in _reference_stack(X, layers)], axis=1)
    assert got.shape == (4, net.n_features_out_)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    # "last" is the tail of "all".
    last = clone(net).set_params(output="last").fit(X).transform(X)
    assert_allclose(last, got[:, -last.shape[1]:])


def test_output_grid_averages_every_layer():
    X = np.random.default_rng(1).standard_normal((3, 8, 8))
    layers = [("a", FixedConvTransformer("gabor", kernel_size=3, padding="same", nonlinearity="abs", pool_size=1)),
              ("b", FixedConvTransformer("gabor", kernel_size=3, padding="same", nonlinearity="abs",
                                         channel_mode="separate"))]
    net = FixedConvNet(layers, output="all", output_grid=2).fit(X)
    plain = FixedConvNet(layers, output="all").fit(X)
    full = plain.transform(X)
    a = full[:, : 16 * 64].reshape(3, 16, 2, 4, 2, 4).mean(axis=(3, 5))  # 8x8 maps -> 2x2
    b = full[:, 16 * 64:].reshape(3, 256, 2, 2, 2, 2).mean(axis=(3, 5))  # 4x4 maps -> 2x2
    assert_allclose(net.transform(X), np.concatenate([a.reshape(3, -1), b.reshape(3, -1)], axis=1), rtol=1e-5)
    assert len(net.get_feature_names_out()) == net.n_features_out_ == 16 * 4 + 256 * 4


def test_layers_are_cloned_and_fitted_greedily():
    X = load_digits().data[:50]
    conv1 = FixedConvTransformer("random", kernel_size=3, padding="same", random_state=0)
    net = FixedConvNet([("conv1", conv1), ("conv2", FixedConvTransformer("random", kernel_size=3, random_state=1))])
    net.fit(X)
    assert not hasattr(conv1, "filters_")
    second = net.layers_[1][1]
    # The second layer saw the first one's 4x4 maps with 16 channels.
    assert second.image_shape_ == (4, 4, 16)
    assert second.filters_.shape == (16, 16, 3, 3)
    assert net.n_features_out_ == 16 * 1 * 1


def test_pipeline_grid_search_clone_joblib_and_pandas(tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    net = FixedConvNet([
        ("conv1", FixedConvTransformer("gabor", kernel_size=3, padding="same", pooling="max")),
        ("conv2", FixedConvTransformer("random", kernel_size=3, padding="same", random_state=0)),
    ])
    search = GridSearchCV(
        make_pipeline(net, LogisticRegression(max_iter=1000)),
        {"fixedconvnet__conv1__bank": ["gabor", "gaussian"]},
        cv=2,
    ).fit(X, y)
    assert search.best_params_["fixedconvnet__conv1__bank"] in {"gabor", "gaussian"}
    fitted = clone(net).fit(X)
    path = tmp_path / "net.joblib"
    joblib.dump(fitted, path)
    assert_array_equal(joblib.load(path).transform(X), fitted.transform(X))
    frame = clone(net).set_output(transform="pandas").fit(X).transform(X)
    assert list(frame.columns) == list(fitted.get_feature_names_out())
    assert frame.columns[0] == "conv2__conv0_y0_x0"


@pytest.mark.parametrize(
    "layers, match",
    [
        ([], "non-empty list of \\(name, FixedConvTransformer\\) pairs"),
        ([("a", LogisticRegression())], "non-empty list"),
        ([("a", FixedConvTransformer()), ("a", FixedConvTransformer())], "distinct string names"),
        ([("output", FixedConvTransformer())], "distinct string names"),
        ([("a", FixedConvTransformer(kernel_size=3)), ("b", FixedConvTransformer(image_shape=(4, 4)))],
         "'b' of FixedConvNet has image_shape"),
    ],
)
def test_bad_layers_name_the_network(layers, match):
    with pytest.raises(InvalidParameterError, match=match):
        FixedConvNet(layers).fit(load_digits().data[:10])


def test_bad_layer_parameter_names_the_layer_class():
    net = FixedConvNet([("conv1", FixedConvTransformer(bank="gabr"))])
    with pytest.raises(InvalidParameterError, match="'bank' parameter of FixedConvTransformer.*Did you mean 'gabor'"):
        net.fit(load_digits().data[:10])
    with pytest.raises(InvalidParameterError, match="'output' parameter of FixedConvNet"):
        FixedConvNet([("a", FixedConvTransformer())], output="first").fit(load_digits().data[:10])
