"""skconvfeat: fixed convolutional features for scikit-learn.

Train only the "fully-connected" head of a CNN whose kernels are frozen
(Gaussian, Gabor, sharpen, random, ...), and see how it compares.
"""

from ._banks import list_banks, make_bank, register_bank
from ._heads import GramRidgeClassifier
from ._net import FixedConvNet
from ._presets import make_preset
from ._transformer import FixedConvTransformer
from .learned import LearnedConvClassifier, LowRankHeadClassifier, transfer_bank

# Bound here (not imported by name) so that its doc comment is the one the API reference shows.
from . import _presets  # noqa: E402  isort: skip

#: The named recipes, ``{name: FixedConvTransformer parameters}``, chosen on held-out
#: training images (docs/results.md); build one with :func:`make_preset`.
PRESETS = _presets.PRESETS

__all__ = [
    "FixedConvNet",
    "FixedConvTransformer",
    "GramRidgeClassifier",
    "LearnedConvClassifier",
    "LowRankHeadClassifier",
    "PRESETS",
    "list_banks",
    "make_bank",
    "make_preset",
    "register_bank",
    "transfer_bank",
]
__version__ = "0.1.0"
