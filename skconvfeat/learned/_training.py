"""The training loop, in three parts: a step, an epoch and a stop rule (skorch's shape).

``train_step`` does one optimiser step on one batch, ``run_single_epoch``
passes once over a training set, and :class:`EarlyStopping` decides from the
validation scores when to stop. The estimator strings them together, so
``partial_fit`` is exactly one ``run_single_epoch``.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F



def train_step(model, optimizer, x, y):
    """One optimiser step on the batch ``(x, y)``; returns the batch's mean cross-entropy."""
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run_single_epoch(model, optimizer, x, y, *, batch_size, rng, augment=None, caller="LearnedConvClassifier",
                     epoch=0):
    """One pass over ``(x, y)`` in a random order; returns the mean training loss.

    ``augment``, if given, maps a batch of images to a randomly altered batch
    (see :func:`augmenter`). Raises ``FloatingPointError`` as soon as a
    batch's loss is NaN or infinite, since every later step would only spread it.
    """
    n = x.shape[0]
    order = torch.as_tensor(rng.permutation(n), device=x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for step, start in enumerate(range(0, n, batch_size)):
        batch = order[start : start + batch_size]
        xb = x[batch] if augment is None else augment(x[batch])
        loss = train_step(model, optimizer, xb, y[batch])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {float(loss)} at epoch {epoch + 1}, step {step + 1}. "
                f"{caller} stopped: lower 'learning_rate', or scale the images (e.g. to [0, 1])."
            )
        total += loss.double() * batch.shape[0]
    return float(total) / n


@torch.no_grad()
def evaluate(model, x, y, batch_size):
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return loss / x.shape[0], correct / x.shape[0]


class EarlyStopping:
    """Stop when the validation score has not beaten its best by ``tol`` for ``patience`` epochs.

    Keeps a copy of the model's state at the best score, so the caller can
    return to it (a later, overfitted epoch is not the model kept).
    """

    def __init__(self, patience, tol):
        self.patience, self.tol = patience, tol
        self.best_score, self.best_epoch, self.best_state, self.stall = -math.inf, None, None, 0

    def step(self, score, epoch, model):
        """Record the epoch's score; True when training should stop."""
        if score > self.best_score + self.tol:
            self.best_score, self.best_epoch, self.stall = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.stall += 1
        return self.stall >= self.patience


def learning_rate_at(schedule, base, epoch, n_epochs):
    """Learning rate of epoch ``epoch`` (0-based) of ``n_epochs``: constant or cosine decay to 0."""
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * min(epoch, n_epochs) / n_epochs))
    return base


def augmenter(crop_padding, flip, rng):
    """A function altering a batch ``(B, C, H, W)``: random shifts of up to ``crop_padding``
    pixels (zero padding, then a random crop of the original size) and, if ``flip``,
    a left-right mirror of a random half. ``None`` when it would do nothing."""
    if not crop_padding and not flip:
        return None

    def augment(x):
        b, _, h, w = x.shape
        if crop_padding:
            p = crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.as_tensor(rng.integers(0, 2 * p + 1, b), device=x.device)
            dx = torch.as_tensor(rng.integers(0, 2 * p + 1, b), device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                       torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
        if flip:
            mirror = torch.as_tensor(rng.random(b) < 0.5, device=x.device)[:, None, None, None]
            x = torch.where(mirror, x.flip(3), x)
        return x

    return augment


def optimizer_state_to_numpy(state):
    """``optimizer.state_dict()`` with every tensor as a NumPy array (picklable without torch)."""
    return _map_tensors(state, lambda t: t.detach().cpu().numpy().copy())


def optimizer_state_from_numpy(state):
    """The inverse of :func:`optimizer_state_to_numpy`; ``load_state_dict`` moves tensors to the parameters' device."""
    return _map_tensors(state, torch.as_tensor, kind=np.ndarray)


def _map_tensors(obj, fn, kind=torch.Tensor):
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, kind) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn, kind) for v in obj)
    return obj
