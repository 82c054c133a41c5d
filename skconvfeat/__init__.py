"""skconvfeat: fixed convolutional features for scikit-learn.

Train only the "fully-connected" head of a CNN whose kernels are frozen
(Gaussian, Gabor, sharpen, random, ...), and see how it compares.
"""

from ._banks import list_banks, make_bank, register_bank
from ._net import FixedConvNet
from .learned import LearnedConvClassifier, transfer_bank
from ._transformer import FixedConvTransformer

__all__ = [
    "FixedConvNet",
    "FixedConvTransformer",
    "LearnedConvClassifier",
    "list_banks",
    "make_bank",
    "register_bank",
    "transfer_bank",
]
__version__ = "0.1.0"
