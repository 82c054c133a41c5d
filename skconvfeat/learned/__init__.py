"""The learned counterpart of the fixed networks: the same architecture, kernels trained in PyTorch.

- ``_estimator.py``: :class:`LearnedConvClassifier` (scikit-learn) and :func:`transfer_bank`;
- ``_network.py``: the torch network built from a fixed description;
- ``_training.py``: the training loop as a step, an epoch and a stop rule;
- ``_fork.py``: torch's threads in forked children.

PyTorch is imported only when a model is trained or used, never by ``import skconvfeat``.
"""

from . import _fork  # noqa: F401  the at-fork hook for torch
from ._estimator import LearnedConvClassifier, transfer_bank

__all__ = ["LearnedConvClassifier", "transfer_bank"]
