"""FixedConvNet: a stack of fixed convolutional layers as one scikit-learn transformer."""

import numpy as np
from sklearn.base import TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import InvalidParameterError, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ._doc_link import API_PAGE
from . import _layer
from ._fitted import PAIR_OR_INT, pair_param
from ._transformer import FixedConvTransformer

__all__ = ["FixedConvNet", "as_images"]


class FixedConvNet(TransformerMixin, _BaseComposition):
    """Several :class:`FixedConvTransformer` layers, each applied to the previous one's maps.

    The convolutional part of a multi-layer CNN with its kernels fixed. Each
    layer is fitted greedily on the output of the layers before it, so banks
    that are fitted to data see the previous layer's feature maps. The layers
    are named like the steps of a :class:`~sklearn.pipeline.Pipeline`, and
    their parameters are reached as ``<name>__<parameter>`` (e.g.
    ``GridSearchCV(..., {"conv1__bank": ["gabor", "random"]})``).

    Parameters
    ----------
    layers : list of (str, FixedConvTransformer)
        The layers in order. Only the first may need ``image_shape`` (for flat
        rows); the others receive the previous layer's pooled maps as image
        arrays ``(n, ph, pw, n_maps)``, the maps playing the part of channels.
        The given transformers are not modified: ``fit`` fits clones, kept in
        ``layers_``.

    output : {"last", "all"}, default="last"
        ``"last"``: the features of the last layer. ``"all"``: the features of
        every layer, concatenated in layer order, as a scattering transform
        keeps its coefficients of every order.

    output_grid : int or (int, int), default=None
        If set, every emitted layer output is further averaged over a
        ``gh x gw`` grid of regions (as ``pool_grid``) before it is flattened,
        e.g. the final averaging of a scattering transform. ``None`` emits the
        layers' outputs as they are.

    Attributes
    ----------
    layers_ : list of (str, FixedConvTransformer)
        The fitted layers.

    n_features_in_ : int
        Values per input image, ``h * w * c``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen in ``fit`` when ``X`` was a DataFrame.

    n_features_out_ : int
        Number of output features.

    See Also
    --------
    FixedConvTransformer : One layer.
    skconvfeat.LearnedConvClassifier : The same network with its kernels trained.

    Notes
    -----
    The output of each layer is flattened map-major; it is handed to the next
    layer as a ``(n, ph, pw, n_maps)`` view of the same memory (no copy).

    Examples
    --------
    A random two-layer network (16 then 32 maps):

    >>> from sklearn.datasets import load_digits
    >>> from skconvfeat import FixedConvNet, FixedConvTransformer
    >>> X, y = load_digits(return_X_y=True)
    >>> net = FixedConvNet([
    ...     ("conv1", FixedConvTransformer("random", kernel_size=3, padding="same", pooling="max",
    ...                                    random_state=0)),
    ...     ("conv2", FixedConvTransformer("random", bank_params={"n_filters": 32}, kernel_size=3,
    ...                                    padding="same", pooling="max", random_state=1)),
    ... ])
    >>> net.fit_transform(X).shape
    (1797, 128)

    A scattering-like network: Gabor moduli, then Gabor moduli of each of
    those 16 maps on its own (256 maps), both orders averaged over a 2x2 grid:

    >>> scattering = FixedConvNet([
    ...     ("order1", FixedConvTransformer("gabor", kernel_size=3, padding="same",
    ...                                     nonlinearity="abs", pool_size=1)),
    ...     ("order2", FixedConvTransformer("gabor", kernel_size=3, padding="same",
    ...                                     nonlinearity="abs", channel_mode="separate", pool_size=2)),
    ... ], output="all", output_grid=2)
    >>> scattering.fit_transform(X).shape
    (1797, 1088)

    A PCANet-style network is the same stack with a data-derived bank in
    each layer (fitted on the previous layer's maps), e.g.
    ``FixedConvTransformer("pca", bank_params={"n_filters": 8}, nonlinearity="none",
    pool_size=1)`` twice, where that bank is registered.
    """

    _doc_link_module, _doc_link_template = "skconvfeat", API_PAGE

    _parameter_constraints: dict = {
        "layers": [list],
        "output": [StrOptions({"last", "all"})],
        "output_grid": [None, *PAIR_OR_INT],
    }

    def __init__(self, layers, *, output="last", output_grid=None):
        self.layers = layers
        self.output = output
        self.output_grid = output_grid

    def get_params(self, deep=True):
        """Parameters of the network and, with ``deep``, of its layers (``<name>__<param>``)."""
        return self._get_params("layers", deep=deep)

    def set_params(self, **params):
        """Set parameters of the network or of its layers (``<name>__<param>``)."""
        self._set_params("layers", **params)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit every layer in turn on the previous layer's output.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images, as for :class:`FixedConvTransformer`.
        y : None
            Ignored.

        Returns
        -------
        self : FixedConvNet
        """
        self._fit_transform(X)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None):
        """Fit the layers and return the features of ``X`` (each layer runs once).

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Training images.
        y : None
            Ignored.

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_features_out_`)
        """
        return self._emit(self._fit_transform(X))

    def transform(self, X):
        """Run ``X`` through every layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, h*w*c), (n_samples, h, w) or (n_samples, h, w, c)
            Images of the shape seen in ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, `n_features_out_`)
            With ``output="last"`` the last layer's features, else every
            layer's, in layer order; each block ordered map by map then row by row.
        """
        check_is_fitted(self)
        outputs, x = [], X
        for _, layer in self.layers_:
            x = as_images(layer.transform(x), layer)
            outputs.append(x)
        return self._emit(outputs)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<layer>__conv{map}_y{row}_x{col}``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the names seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        names = []
        for name, (ph, pw, n_maps) in self._emitted_shapes():
            names += [f"{name}__conv{m}_y{i}_x{j}" for m in range(n_maps) for i in range(ph) for j in range(pw)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        dtypes = {getattr(layer, "dtype", None) for _, layer in _pairs(self.layers)}
        # The output dtype is the layers' setting, whatever the input's.
        tags.transformer_tags.preserves_dtype = sorted(dtypes) if len(dtypes) == 1 and None not in dtypes else []
        return tags

    # -- internals --------------------------------------------------------

    def _fit_transform(self, X):
        self._check_layers()
        fitted, outputs, x = [], [], X
        for i, (name, layer) in enumerate(self.layers):
            # A clone keeps the user's layer unfitted; its own set_output would turn maps into frames.
            layer = clone(layer).set_output(transform="default")
            if i > 0 and layer.data_format is None:
                # Maps from the layer before are channels last by construction, and may
                # have more channels than pixels: not the ambiguous user input data_format=None refuses.
                layer.set_params(data_format="channels_last")
            try:
                x = as_images(layer.fit_transform(x), layer)
            except ValueError as exc:
                # A stack's error is only useful with the layer it comes from.
                # Same type (an InvalidParameterError stays one), with the layer named first.
                raise type(exc)(f"Layer {name!r} ({i + 1} of {len(self.layers)}) of FixedConvNet: {exc}") from exc
            fitted.append((name, layer))
            outputs.append(x)
        self.layers_ = fitted
        first = fitted[0][1]
        self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_out_ = sum(ph * pw * m for _, (ph, pw, m) in self._emitted_shapes())
        return outputs

    def _check_layers(self):
        pairs = _pairs(self.layers)
        if not pairs or any(not isinstance(layer, FixedConvTransformer) for _, layer in pairs):
            raise InvalidParameterError(
                "The 'layers' parameter of FixedConvNet must be a non-empty list of "
                f"(name, FixedConvTransformer) pairs. Got {self.layers!r} instead."
            )
        names = [name for name, _ in pairs]
        bad = [n for n in names if not isinstance(n, str) or "__" in n or n in self.get_params(deep=False)]
        if bad or len(set(names)) != len(names):
            raise InvalidParameterError(
                "The 'layers' parameter of FixedConvNet needs distinct string names without "
                f"'__' that are not parameter names ('layers', 'output', 'output_grid'). Got {names!r}."
            )
        for name, layer in pairs[1:]:
            if layer.image_shape is not None:
                raise InvalidParameterError(
                    f"The layer {name!r} of FixedConvNet has image_shape={layer.image_shape!r}, "
                    "but only the first layer reads flat rows: later layers take the previous "
                    "layer's maps. Leave image_shape=None there."
                )
        if self.output_grid is not None:
            pair_param(self.output_grid, "output_grid", owner="FixedConvNet")

    def _emit(self, outputs):
        """Flatten (and grid-average) the layer outputs that make the features."""
        chosen = outputs if self.output == "all" else outputs[-1:]
        blocks = []
        for images in chosen:
            if self.output_grid is not None:
                grid = pair_param(self.output_grid, "output_grid", owner="FixedConvNet")
                images = _layer.pool(images, _grid_spec(grid), np)
            # Back to map-major order, as every layer's own output.
            blocks.append(images.transpose(0, 3, 1, 2).reshape(images.shape[0], -1))
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def _emitted_shapes(self):
        """``(name, (ph, pw, n_maps))`` of every block of the output."""
        shapes = [(name, layer.layer_.output_shape) for name, layer in self.layers_]
        if self.output == "last":
            shapes = shapes[-1:]
        if self.output_grid is not None:
            grid = pair_param(self.output_grid, "output_grid", owner="FixedConvNet")
            shapes = [(name, (*grid, m)) for name, (_, _, m) in shapes]
        return shapes


def _pairs(layers):
    """``layers`` as a list of pairs, or ``[]`` when it is not a list of pairs."""
    if not isinstance(layers, list) or any(not isinstance(p, tuple | list) or len(p) != 2 for p in layers):
        return []
    return [tuple(p) for p in layers]


def _grid_spec(grid):
    return _layer.LayerSpec(
        padding="valid", nonlinearity="none", pooling="avg", pool_size=None, pool_stride=None,
        pool_grid=grid, channel_mode="sum",
    )


def as_images(features, layer):
    """A fitted layer's map-major features ``(n, M*ph*pw)`` as images ``(n, ph, pw, M)`` (a view)."""
    ph, pw, n_maps = layer.layer_.output_shape
    return features.reshape(features.shape[0], n_maps, ph, pw).transpose(0, 2, 3, 1)
