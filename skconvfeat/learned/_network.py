"""The torch network: the fixed layers of a description, made trainable, then a head.

Imported only inside :class:`LearnedConvClassifier`'s methods (as sktime's
MiniRocket imports its numba module inside ``_fit``), so ``import skconvfeat``
never loads PyTorch.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._layer import NONLINEARITY_TABLE, PADDING_MODES, padded_index


class ConvLayer(nn.Module):
    """One fixed layer (:func:`skconvfeat._layer.layer`) on ``(B, C, H, W)`` tensors, kernels trainable.

    Returns pooled maps ``(B, M, ph, pw)``; flattening them gives the fixed
    layer's map-major features. With ``mixing`` (an ``(M, M, 1, 1)`` tensor), a
    1x1 convolution recombines the M maps before the nonlinearity: learned
    linear combinations of the spatial kernels (Gavrikov & Keuper 2023). With
    ``norm_maps`` (M), a batch normalisation of the M maps follows (conv, 1x1,
    BN, nonlinearity: their blocks' order). Identity mixing is exactly the
    fixed layer (the features are standardised before the head anyway), and
    so is the normalisation at ``identity_norm``'s values, in evaluation mode.
    """

    def __init__(self, kernels, spec, mixing=None, norm_maps=None):
        super().__init__()
        self.kernels = nn.Parameter(kernels)
        self.mixing = None if mixing is None else nn.Parameter(mixing)
        self.norm = None if norm_maps is None else nn.BatchNorm2d(norm_maps, eps=NORM_EPS)
        self.spec = spec

    def forward(self, x):
        spec, (kh, kw) = self.spec, self.kernels.shape[2:]
        mode = PADDING_MODES[spec.padding]
        # Zero padding inside the convolution (torch's "same" pads as _layer.pad_widths: the extra pixel
        # after, for even kernels) rather than a padded copy of every batch: 2-7% faster per training step
        # of the 2-layer MNIST network in two interleaved A/B runs (one thread, machine under load).
        padding = "same" if mode == "constant" else 0
        if mode not in (None, "constant"):
            # Gather with the layer's own padded indices: identical to np.pad's mode,
            # including reflect pads wider than the image, which F.pad refuses.
            rows = padded_index(x.shape[2], kh, spec.padding)
            cols = padded_index(x.shape[3], kw, spec.padding)
            x = x[:, :, torch.as_tensor(rows, device=x.device)][:, :, :, torch.as_tensor(cols, device=x.device)]
        if spec.channel_mode == "separate":
            # (C*F, 1, kh, kw): output map c*F + f is filter f on channel c, as _layer.
            n_channels = x.shape[1]
            maps = F.conv2d(x, self.kernels.repeat(n_channels, 1, 1, 1), padding=padding, groups=n_channels)
        else:
            maps = F.conv2d(x, self.kernels, padding=padding)
        if self.mixing is not None:
            maps = F.conv2d(maps, self.mixing)
        if self.norm is not None:
            maps = self.norm(maps)
        maps = _activate(maps, spec.nonlinearity)
        if spec.pool_grid is not None:
            return grid_pool(maps, tuple(spec.pool_grid), spec.pooling)
        if tuple(spec.pool_size) == (1, 1) and tuple(spec.pool_stride) == (1, 1):
            return maps
        pool = F.avg_pool2d if spec.pooling == "avg" else F.max_pool2d
        return pool(maps, tuple(spec.pool_size), tuple(spec.pool_stride))


def grid_pool(maps, grid, pooling):
    """``maps`` pooled to a ``grid`` of cells, as _layer's grid pooling (adaptive pooling's cells).

    Where the grid divides the maps, the cells are plain windows of the cell's size: plain pooling
    computes the same cells, and its backward pass took 20-25% less time than adaptive pooling's on
    the 1-layer MNIST network's 28x28 maps (one thread, channels-last and NCHW alike).
    """
    (h, w), (gh, gw) = maps.shape[2:], grid
    if h % gh == 0 and w % gw == 0:
        cell = (h // gh, w // gw)
        return (F.avg_pool2d if pooling == "avg" else F.max_pool2d)(maps, cell, cell)
    return (F.adaptive_avg_pool2d if pooling == "avg" else F.adaptive_max_pool2d)(maps, grid)


# Each rule of _layer.NONLINEARITY_TABLE the trainable layer supports (not the dictionary encodings).
_RULES = {"none": lambda m: m, "relu": F.relu, "abs": torch.abs, "square": lambda m: m * m}


def _activate(maps, nonlinearity):
    rule = NONLINEARITY_TABLE[nonlinearity]
    if rule.encoding or rule.rule not in _RULES:
        raise ValueError(f"no torch counterpart for nonlinearity={nonlinearity!r}")
    if rule.two_sided:
        return torch.cat([_RULES[rule.rule](maps), _RULES[rule.rule](-maps)], dim=1)
    return _RULES[rule.rule](maps)


def kernel_key(i):
    """The ``state_dict`` name of layer ``i``'s kernels: ``ConvNetwork.layers[i].kernels``."""
    return f"layers.{i}.kernels"


def mixing_key(i):
    """The ``state_dict`` name of layer ``i``'s 1x1 mixing weights (present only when mixing is trained)."""
    return f"layers.{i}.mixing"


def identity_mixing(n_maps):
    """Mixing weights ``(n_maps, n_maps, 1, 1)`` that leave every map as it is."""
    return np.eye(n_maps)[:, :, None, None]


# BatchNorm2d's default: the variance's floor.
NORM_EPS = 1e-5


def norm_keys(i):
    """The ``state_dict`` names of layer ``i``'s batch normalisation (present only with ``batch_norm``)."""
    return {name: f"layers.{i}.norm.{name}"
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def identity_norm(i, mean, var):
    """Layer ``i``'s batch normalisation state that leaves its maps as they are, given their per-map ``mean``
    and ``var``: the running statistics are theirs and the scale and shift undo them, so evaluation mode is
    the identity exactly, and training mode, normalising each batch by its own statistics, nearly (the
    network starts where the fixed one is, at the scale its frozen standardisation was computed for)."""
    keys, mean, var = norm_keys(i), np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    return {keys["weight"]: np.sqrt(var + NORM_EPS), keys["bias"]: mean.copy(), keys["running_mean"]: mean.copy(),
            keys["running_var"]: var.copy(), keys["num_batches_tracked"]: np.zeros(())}


def norm_input_statistics(net, batches):
    """Per layer with a normalisation, the mean and variance per map of what enters it, over ``batches``
    (image tensors ``(B, C, H, W)``), accumulated in float64: ``[(mean, var), ...]``."""
    norms = [layer.norm for layer in net.layers]
    sums = [None] * len(norms)

    def hook(i):
        def record(_, inputs, __):
            maps = inputs[0].detach().double()
            total = (maps.sum(dim=(0, 2, 3)), (maps * maps).sum(dim=(0, 2, 3)), maps.numel() // maps.shape[1])
            sums[i] = total if sums[i] is None else tuple(a + b for a, b in zip(sums[i], total))
        return record

    handles = [norm.register_forward_hook(hook(i)) for i, norm in enumerate(norms)]
    try:
        with torch.no_grad():
            for x in batches:
                net.features(x, standardise=False)
    finally:
        for handle in handles:
            handle.remove()
    stats = []
    for total, squares, count in sums:
        mean = (total / count).cpu().numpy()
        stats.append((mean, np.maximum((squares / count).cpu().numpy() - mean * mean, 0.0)))
    return stats


def head_keys(i):
    """The ``state_dict`` names of the weight and bias of the head's affine layer ``i``: ``ConvNetwork.head[i]``."""
    return f"head.{i}.weight", f"head.{i}.bias"


# The frozen standardisation's buffers.
STANDARDISATION = ("mean", "scale")


class ConvNetwork(nn.Module):
    """Layers, the emitted (grid-averaged) features, a frozen standardisation and the head.

    ``layers``: ``(kernel shape, spec, mixing shape or None, normalised maps or
    None)`` per layer; ``output``/``output_grid`` as in
    :class:`~skconvfeat.FixedConvNet`; ``mean``/``scale`` standardise the
    features (frozen buffers); ``head_sizes`` the widths of the affine layers
    of the head, ReLU between them.
    """

    def __init__(self, layers, output, output_grid, n_features, head_sizes):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvLayer(torch.zeros(k), spec, None if m is None else torch.zeros(m), n) for k, spec, m, n in layers
        )
        self.output, self.output_grid = output, output_grid
        mean, scale = STANDARDISATION
        self.register_buffer(mean, torch.zeros(n_features))
        self.register_buffer(scale, torch.ones(n_features))
        sizes = [n_features, *head_sizes]
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def features(self, x, standardise=True):
        """Emitted features of images ``(B, C, H, W)``, map-major as FixedConvNet's."""
        blocks = []
        for layer in self.layers:
            x = layer(x)
            blocks.append(x)
        if self.output == "last":
            blocks = blocks[-1:]
        if self.output_grid is not None:
            blocks = [grid_pool(b, tuple(self.output_grid), "avg") for b in blocks]
        feats = torch.cat([b.flatten(1) for b in blocks], dim=1)
        return self.standardise(feats) if standardise else feats

    def standardise(self, feats):
        """Features standardised by the frozen statistics."""
        return (feats - self.mean) / self.scale

    def classify(self, feats):
        """Logits of standardised features."""
        for i, linear in enumerate(self.head):
            feats = linear(feats) if i == 0 else linear(F.relu(feats))
        return feats

    def forward(self, x):
        return self.classify(self.features(x))


class HeadOnly(nn.Module):
    """The head of ``net`` alone, for training on features computed once (frozen kernels)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, feats):
        return self.net.classify(feats)


def build_network(layer_specs, output, output_grid, state, head_sizes, dtype, device):
    """A :class:`ConvNetwork` holding the NumPy ``state`` (names as its ``state_dict``), in evaluation mode
    (a training step switches it to training mode)."""
    layers = range(len(layer_specs))
    kernel_shapes = [state[kernel_key(i)].shape for i in layers]
    mixing_shapes = [state[mixing_key(i)].shape if mixing_key(i) in state else None for i in layers]
    norm_maps = [state[norm_keys(i)["weight"]].shape[0] if norm_keys(i)["weight"] in state else None for i in layers]
    net = ConvNetwork(
        list(zip(kernel_shapes, layer_specs, mixing_shapes, norm_maps)), output, output_grid, state["mean"].shape[0],
        head_sizes,
    )
    # In ``dtype`` before loading: loading first would round the float64 state (frozen kernels, the
    # standardisation) through the constructor's float32 even where the network runs in float64.
    net.to(device=device, dtype=dtype).load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return net.eval()


def numpy_state(net):
    """The network's parameters and buffers as float64 NumPy arrays."""
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in net.state_dict().items()}


def to_tensor(images, device, dtype):
    """Images ``(n, h, w, c)`` as a fresh ``(n, c, h, w)`` tensor in torch's channels-last memory format.

    Always a copy, as X may be read-only or reused by the caller (a transposed view of one-channel
    images counts as contiguous, so ``ascontiguousarray`` would not copy it). Pixel-major is NumPy's
    own layout, so no transpose copy; 3-channel images trained about 10% faster in it than channel-major.
    """
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    array = np.array(images, dtype=np_dtype, order="C", copy=True)
    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device)
