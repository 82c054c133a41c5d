"""The learned counterpart of the fixed networks: the same architecture, kernels trained in PyTorch.

- ``_estimator.py``: :class:`LearnedConvClassifier` (scikit-learn) and :func:`transfer_bank`;
- ``_network.py``: the torch network built from a fixed description;
- ``_training.py``: the training loop as a step, an epoch and a stop rule;
- ``_head.py``: :class:`LowRankHeadClassifier`, a low-rank linear head for wide fixed features, and
  ``_lowrank.py`` its torch module and loop; ``_validation.py``: the early-stopping split;
- ``_fork.py``: torch's threads in forked children.

PyTorch is imported only when a model is trained or used, never by ``import skconvfeat``.
"""

from . import _fork  # noqa: F401  the at-fork hook for torch
from ._estimator import LearnedConvClassifier, transfer_bank
from ._head import LowRankHeadClassifier

__all__ = ["LearnedConvClassifier", "LowRankHeadClassifier", "transfer_bank"]
