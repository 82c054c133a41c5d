"""The low-rank linear head in torch, and its training loop (imported only inside LowRankHeadClassifier.fit).

Thiry, Arbel, Belilovsky & Oyallon (2021) reach 82% on CIFAR-10 with fixed patch features because their
head keeps the spatial layout: the ``M`` maps of every cell of a fine pooling grid are standardised,
projected to ``rank`` values by one matrix shared by all cells (a 1x1 convolution), and a linear layer
reads the ``rank x cells`` values. Every step is linear, so the head is a linear classifier whose weight
over the maps has rank at most ``rank`` at each cell: ``rank * (M + n_classes * cells)`` parameters
instead of ``n_classes * M * cells``, which is what lets it train on 100,000+ features.
"""

import numpy as np
import torch
from torch import nn

from ._training import EarlyStopping, learning_rate_at, train_step


class LowRankHead(nn.Module):
    """``(B, M * cells)`` map-major features (any dtype) -> ``(B, n_classes)`` logits.

    ``mean``/``scale`` (M,) standardise each map over samples and cells (fixed buffers, as the
    learned networks' frozen standardisation); ``reduce`` is ``(rank, M)``, ``classify``
    ``(n_classes, rank * cells)`` in rank-major order, ``intercept`` ``(n_classes,)``.
    """

    def __init__(self, mean, scale, reduce, classify, intercept):
        super().__init__()
        as32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.register_buffer("mean", as32(mean)[:, None])
        self.register_buffer("scale", as32(scale)[None, :])
        self.reduce = nn.Parameter(as32(reduce))
        self.classify = nn.Parameter(as32(classify))
        self.intercept = nn.Parameter(as32(intercept))

    def forward(self, x):
        n_maps = self.mean.shape[0]
        # Cell-major float32 rows (B * cells, M), widened and transposed in one copy: the projection is then one
        # product for the whole batch, and so is its gradient (a batched product per sample would build a
        # (B, rank, M) gradient and sum it).
        maps = x.view(x.shape[0], n_maps, -1).transpose(1, 2)
        rows = torch.empty(maps.shape, dtype=torch.float32, device=x.device).copy_(maps).view(-1, n_maps)
        # The standardisation folded into the projection, (maps - mean) / scale projected by ``reduce``: products
        # with the small (rank, M) matrix instead of passes over the whole batch.
        reduce = self.reduce / self.scale
        low = rows @ reduce.T - (reduce @ self.mean).T  # (B * cells, rank): the 1x1 convolution
        # Rank-major (B, rank * cells), the order of ``classify``'s columns.
        return low.view(x.shape[0], -1, low.shape[1]).transpose(1, 2).flatten(1) @ self.classify.T + self.intercept

    def numpy_factors(self):
        """``reduce``, ``classify``, ``intercept`` as float64 NumPy arrays."""
        return tuple(p.detach().double().cpu().numpy() for p in (self.reduce, self.classify, self.intercept))


@torch.no_grad()
def accuracy(model, x, y, index, batch_size):
    """Accuracy of ``model`` on the rows ``index`` of ``x`` (read a batch at a time, never copied whole)."""
    model.eval()
    correct = 0
    for start in range(0, len(index), batch_size):
        rows = torch.from_numpy(index[start : start + batch_size])
        correct += int((model(x[rows]).argmax(dim=1) == y[rows]).sum())
    return correct / len(index)


def train(model, x, y, train_index, valid_index, *, settings, rng, on_epoch):
    """Adam on the cross-entropy over shuffled batches of the rows ``train_index``, for up to
    ``settings.max_epochs`` epochs; with ``valid_index``, stopped by :class:`EarlyStopping` on its accuracy
    and returned to the best epoch. ``on_epoch(record)`` receives each epoch's record.
    Returns ``(n_epochs, best_epoch, stopped)``; ``best_epoch`` is None without validation.
    """
    decayed, free = [model.reduce, model.classify], [model.intercept]
    optimizer = torch.optim.Adam([{"params": decayed, "weight_decay": settings.weight_decay},
                                  {"params": free, "weight_decay": 0.0}], lr=settings.learning_rate)
    stopper = None if valid_index is None else EarlyStopping(settings.n_iter_no_change, settings.tol)
    stopped = False
    for epoch in range(settings.max_epochs):
        rate = learning_rate_at(settings.lr_schedule, settings.learning_rate, epoch, settings.max_epochs)
        for group in optimizer.param_groups:
            group["lr"] = rate
        order = train_index[rng.permutation(len(train_index))]
        loss = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = torch.from_numpy(order[start : start + settings.batch_size])
            batch_loss = train_step(model, optimizer, x[rows], y[rows])
            if not torch.isfinite(batch_loss):
                raise FloatingPointError(
                    f"The training loss became {float(batch_loss)} at epoch {epoch + 1}. "
                    "LowRankHeadClassifier stopped: lower 'learning_rate'."
                )
            loss += float(batch_loss) * len(rows)
        record = {"epoch": epoch + 1, "train_loss": loss / len(order), "learning_rate": rate, "valid_accuracy": None}
        if stopper is not None:
            record["valid_accuracy"] = accuracy(model, x, y, valid_index, max(settings.batch_size, 512))
        on_epoch(record)
        if stopper is not None and stopper.step(record["valid_accuracy"], epoch + 1, model):
            stopped = True
            break
    if stopper is None:
        return epoch + 1, None, False
    model.load_state_dict(stopper.best_state)  # the best epoch's weights, not the last one's
    return epoch + 1, stopper.best_epoch, stopped
