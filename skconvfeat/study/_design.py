"""What every arm is: the shared layer and network descriptions, the banks, the heads and the arms.

Every arm of a depth is the same CNN -- the one-layer network (convolution,
ReLU, average pooling) or the two-layer one (two convolutions, each ReLU and
max-pooled), then standardisation and a trained head -- built from one shared
description, and the arms differ only in where the kernels come from: a fixed
bank (Gaussian blurs, Gabor filters, sharpening, random, k-means centroids of
the data's patches), no convolution at all (raw pixels), or kernels trained end
to end in PyTorch (from random kernels, or frozen as a control).
"""

from dataclasses import dataclass

from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from .._heads import GramRidgeClassifier
from .._net import FixedConvNet
from .._presets import make_preset
from .._transformer import FixedConvTransformer

__all__ = [
    "AUGMENTED",
    "CLASSIFIERS",
    "DEEP_BANKS",
    "DEFAULT_BANKS",
    "DEPTHS",
    "DEVICES",
    "LEARNED",
    "LEARNED_ARMS",
    "LEARNED_LARGE",
    "PER_ARM_PARAMS",
    "Arm",
    "description",
    "fixed_pipeline",
    "learned_arm_names",
    "learned_model",
    "learned_training",
    "load_learner",
    "make_arms",
    "make_head",
    "suffix",
]

DEFAULT_BANKS = ("gaussian", "gabor", "sharpen", "random", "kmeans", "identity")

# The convolutional layer shared by every arm (fixed, learned, transferred).
# Chosen on digits (8x8 images, 0-16 grey levels), measured on one split with
# a logistic head. Unpooled maps (1024 features per 16-kernel bank) make the
# heads 5x slower and change the 16-kernel banks by <= 0.3 points, but help the
# 3-kernel banks (Gaussian +2.5, sharpen +7 points: 48 pooled features are few);
# a 2x2 grid (4 values per map) loses up to 30 points on those banks.
LAYER = {
    "kernel_size": 3,  # pixels: a stroke is 1-2 pixels wide on 8x8 digits; 5x5 spans most of the digit
    "padding": "same",  # zero padding keeps 8x8 maps, so strokes at the border count
    "nonlinearity": "relu",
    "pooling": "avg",
    "pool_grid": 4,  # 4x4 pooled map per kernel: 2x2 windows on digits, same layout on larger images
}
# "identity" (1x1 kernels copying each channel) is the "fully-connected layer
# on the image" baseline, so it skips pooling: the head sees the raw pixels.
RAW_LAYER = {**LAYER, "pool_grid": None, "pool_size": 1}
# Per-bank settings. "kmeans" (the data-derived arm) learns as many centroids
# as the layer has kernels from 20,000 whitened patches of the training fold:
# 0.5 s a fit on digits, against 4.6 s with the default 100,000, which would
# take the default run over a minute.
KMEANS_PATCHES = 20_000
BANK_SETTINGS = {"kmeans": {"bank_params": {"n_filters": 16}, "n_patches": KMEANS_PATCHES}}
# The deeper network shared by every arm of depth 2 (fixed, data-derived,
# learned, frozen): the plain CNN of issue 10's CIFAR-10 target, conv 5x5 (32
# kernels) -> ReLU -> max-pool 2 -> conv 3x3 (64) -> ReLU -> max-pool 2. Each
# fixed layer is fitted greedily on the previous layer's maps (FixedConvNet).
NET_LAYERS = (
    {"kernel_size": 5, "n_filters": 32, "padding": "same", "nonlinearity": "relu", "pooling": "max", "pool_size": 2},
    {"kernel_size": 3, "n_filters": 64, "padding": "same", "nonlinearity": "relu", "pooling": "max", "pool_size": 2},
    # Depth 3 doubles the width again, the usual VGG-style step: 128 kernels on 7x7 MNIST / 8x8 CIFAR
    # maps, pooled to 3x3 / 4x4 (1,152 / 2,048 features, fewer than depth 2's 3,136 / 4,096).
    {"kernel_size": 3, "n_filters": 128, "padding": "same", "nonlinearity": "relu", "pooling": "max", "pool_size": 2},
)
# Depth d is the first d layers of NET_LAYERS (depth 1 is the study's single LAYER instead).
DEPTHS = tuple(range(1, len(NET_LAYERS) + 1))
# Banks with a deep arm (hand-crafted, random, data-derived), and the Gabor
# parameters giving each layer its width (orientations x frequencies x 2 phases).
DEEP_BANKS = ("gabor", "random", "kmeans")
GABOR_WIDTHS = {32: {"n_orientations": 8}, 64: {"n_orientations": 8, "frequencies": (0.1, 0.2, 0.3, 0.4)},
                128: {"n_orientations": 8, "frequencies": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)}}
BANK_LABELS = {"identity": "Raw pixels (no conv)", "kmeans": "K-means, fixed (data-derived)"}

# Heads, i.e. the trainable "fully-connected" part. Fitted on standardised features.
CLASSIFIERS = ("logistic", "linear_svm", "mlp", "ridge")
# Where the learned arms (and the transfer experiment's learned models) train.
DEVICES = ("cpu", "cuda", "auto")

# The learned arms train the same layers end to end (Adam in PyTorch), keeping
# the epoch with the best accuracy on a held-out tenth of their training set.
# Two recipes, by the amount of training data (the defaults of StudySettings'
# ``small_recipe`` and ``large_recipe``). This one is for small sets (the
# digits' CV folds, the transfer experiment's 20-300 images), budgeted so that
# the whole default study runs in about a minute on 2 CPU cores.
LEARNED = {
    "max_epochs": 30,  # passes over ~1300 training images, ~300 Adam steps
    "batch_size": 128,  # images per Adam step
    "learning_rate": 1e-2,  # Adam step size, suits unit-norm kernels
    "weight_decay": 1e-4,  # L2 on kernels and head weights, ~ LogisticRegression's 1/C
    "early_stopping": True,  # on the validation split, not the training loss
    "validation_fraction": 0.1,
    "n_iter_no_change": 5,
    "augment": False,  # no random crops or flips: the fixed arms see the images as given too
}
# The official split of a large dataset (tens of thousands of training images):
# the recipe of benchmarks/learned_cifar10.py, which took the 2-layer network to
# 75.1% on the CIFAR-10 JPEG copy. 10 epochs: 3,500 Adam steps on 45,000 images,
# where that run was still improving slowly (about 15 min a 2-layer fit on one core).
LEARNED_LARGE = {**LEARNED, "max_epochs": 10, "learning_rate": 2e-3, "lr_schedule": "cosine"}
# Those 10 epochs are sized for tens of thousands of images: on a subsample of an official split of
# at most this many training images (``--train-size``) the learned arms take the small-data recipe.
# On 2,000 / 5,000 / 10,000 MNIST training images it converged at 94.7 / 95.7 / 97.1% on the test set
# where the large one stopped at its cap still improving at 89.1 / 93.9 / 96.0% (docs/results.md).
SMALL_RECIPE_MAX_IMAGES = 10_000
# Datasets whose learned arms see random shifts (4 pixels) and mirror images:
# photographs keep their class under both; digits do not under mirroring. The
# fixed arms see the images as given, so "learned" is compared with
# "random_adam" (same network, optimiser and augmentation, kernels frozen) too.
AUGMENTED = frozenset({"cifar10", "cifar10-jpeg"})
# Arms trained in PyTorch: name -> (initial bank, kernels trained?). "random_adam"
# is the control: the learned arm's network and optimiser with its kernels
# frozen, so "learned vs random_adam" isolates what training the kernels adds.
LEARNED_ARMS = {
    "learned": ("random", True),
    "gabor_learned": ("gabor", True),
    "random_adam": ("random", False),
}
DEEP_LEARNED_ARMS = ("learned", "random_adam")
# LearnedConvClassifier parameters the study sets per arm, so learned_params may not
# (warm_start too: every arm is a fresh model).
PER_ARM_PARAMS = frozenset({"conv", "head", "freeze_kernels", "random_state", "device", "warm_start"})


@dataclass
class Arm:
    """One way of getting the kernels, with the estimator that uses them."""

    name: str
    label: str
    kind: str  # fixed | raw | learned | transfer
    bank: object
    estimator: object
    depth: int = 1


def make_head(classifier, random_state):
    """The scikit-learn head called ``classifier``."""
    if classifier == "logistic":
        return LogisticRegression(max_iter=1000)  # C=1; 1000 lbfgs steps converge on every arm
    if classifier == "linear_svm":
        return LinearSVC(C=0.01, max_iter=5000, random_state=random_state)  # small C: converges
    if classifier == "mlp":
        # One hidden layer of 100 ReLU units: the two-layer FC head of a small CNN. It stops, as the
        # learned arms do, on the accuracy of a held-out tenth of its training set (patience 10
        # epochs); stopping on the training loss over-fits 4,096 features of 50,000 images.
        return MLPClassifier(hidden_layer_sizes=(100,), max_iter=600, early_stopping=True,
                             validation_fraction=0.1, random_state=random_state)
    if classifier == "ridge":
        # Exact ridge from the Gram matrix, its penalty chosen on a held-out tenth of the training rows:
        # the fast head of the wide presets, seconds where lbfgs takes minutes on 10,000+ features.
        return GramRidgeClassifier(random_state=random_state)
    raise ValueError(f"classifier must be one of {CLASSIFIERS}. Got {classifier!r}.")


def _layer_settings(bank, width):
    """Parameters giving ``bank`` ``width`` kernels in a layer of the deep network."""
    if bank == "gabor":
        return {"bank_params": GABOR_WIDTHS[width]}
    settings = {"bank_params": {"n_filters": width}}
    return {**settings, "n_patches": KMEANS_PATCHES} if bank == "kmeans" else settings


def description(bank, depth, random_state):
    """The fixed network of an arm: a FixedConvTransformer (depth 1) or a FixedConvNet.

    ``bank`` is a bank name, or a list of kernel arrays, one per layer (kernels
    learned elsewhere, for the transfer experiment). Learned arms train this
    very description (``LearnedConvClassifier(description)``).
    """
    banks = [bank] * depth if isinstance(bank, str) else list(bank)
    if depth == 1:
        settings = BANK_SETTINGS.get(banks[0], {}) if isinstance(bank, str) else {}
        layer = RAW_LAYER if bank == "identity" else LAYER
        return FixedConvTransformer(banks[0], random_state=random_state, **layer, **settings)
    layers = []
    for i, (layer_bank, spec) in enumerate(zip(banks, NET_LAYERS)):
        spec = dict(spec)
        width = spec.pop("n_filters")
        settings = _layer_settings(layer_bank, width) if isinstance(layer_bank, str) else {}
        layers.append((f"conv{i + 1}", FixedConvTransformer(layer_bank, random_state=random_state + i, **spec,
                                                            **settings)))
    return FixedConvNet(layers)


def fixed_pipeline(bank, depth, classifier, random_state):
    """The fixed description -> StandardScaler -> head."""
    conv = description(bank, depth, random_state)
    return Pipeline([("conv", conv), ("scale", StandardScaler()), ("head", make_head(classifier, random_state))])


def learned_model(learner_cls, bank, depth, classifier, random_state, device, recipe, train_kernels=True):
    """LearnedConvClassifier training the description of ``bank`` at ``depth`` (frozen unless ``train_kernels``)."""
    head = "mlp" if classifier == "mlp" else "linear"
    conv = description(bank, depth, random_state)
    return learner_cls(conv, head=head, freeze_kernels=not train_kernels, random_state=random_state, device=device,
                       **recipe)


def load_learner():
    """``(LearnedConvClassifier, None)`` or ``(None, reason it is unavailable)``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "PyTorch is not installed (pip install 'skconvfeat[torch]')"
    try:
        from ..learned import LearnedConvClassifier
    except ImportError as exc:
        return None, f"skconvfeat.LearnedConvClassifier is not available ({exc})"
    return LearnedConvClassifier, None


def suffix(depth):
    """Arm names of depth 2 end in ``"@2"``; those of depth 1 keep their plain names."""
    return "" if depth == 1 else f"@{depth}"


def _label(label, depth):
    return label if depth == 1 else f"{label}, {depth} layers"


def _bank_label(bank):
    """Display name of a fixed bank's arm."""
    return BANK_LABELS.get(bank, f"{bank.capitalize()}, fixed")


def learned_arm_names(depths):
    """The names of the arms trained in PyTorch at ``depths``, in the order they run."""
    return [name + suffix(d) for d in depths for name in (LEARNED_ARMS if d == 1 else DEEP_LEARNED_ARMS)]


def preset_arm(preset, random_state):
    """The wide data-derived layer ``preset`` (see :data:`skconvfeat.PRESETS`) with its ridge head: one layer."""
    model = Pipeline([("conv", make_preset(preset, random_state=random_state)),
                      ("head", GramRidgeClassifier(random_state=random_state))])
    return Arm(f"preset-{preset}", f"Preset {preset} (ridge head)", "fixed", preset, model, 1)


def make_arms(banks, depths, classifier, learner_cls, recipe, random_state, device, preset=None):
    """The arms of the main comparison, by depth: fixed banks first, then those trained in PyTorch;
    the ``preset`` (a one-layer network) last, if given.

    ``recipe``: the learned arms' training settings, or None for no learned arms.
    """
    arms = []
    for depth in depths:
        end = suffix(depth)
        for bank in banks if depth == 1 else [b for b in banks if b in DEEP_BANKS]:
            kind = "raw" if bank == "identity" else "fixed"
            model = fixed_pipeline(bank, depth, classifier, random_state)
            arms.append(Arm(bank + end, _label(_bank_label(bank), depth), kind, bank, model, depth))
        for name in (LEARNED_ARMS if depth == 1 else DEEP_LEARNED_ARMS) if recipe is not None else ():
            init, train_kernels = LEARNED_ARMS[name]
            if train_kernels:
                label, kind = f"Learned ({init} init)", "learned"
            else:
                label, kind = f"{init.capitalize()}, fixed (Adam head)", "fixed"
            model = learned_model(learner_cls, init, depth, classifier, random_state, device, recipe, train_kernels)
            arms.append(Arm(name + end, _label(label, depth), kind, init, model, depth))
    if preset is not None:
        arms.append(preset_arm(preset, random_state))
    return arms


def learned_training(recipe, device):
    """How the learned arms were trained, stated in every result (augmentation in words)."""
    augment = recipe["augment"]
    if isinstance(augment, dict):
        augmentation = ", ".join(f"{key} {value}" for key, value in augment.items()) or "none"
    else:
        augmentation = "random crop (shifts up to 1/8 of the image) and horizontal flip" if augment else "none"
    stop_rule = (
        f"best validation accuracy on {recipe['validation_fraction']:.0%} of the training images, "
        f"patience {recipe['n_iter_no_change']} epochs, at most {recipe['max_epochs']}"
        if recipe["early_stopping"] else f"{recipe['max_epochs']} epochs"
    )
    return {**recipe, "device": device, "augmentation": augmentation, "stop_rule": stop_rule}
