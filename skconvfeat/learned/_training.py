"""The training loop, in three parts: a step, an epoch and a stop rule (skorch's shape), and the session that runs them.

``train_step`` does one optimiser step on one batch, ``run_single_epoch``
passes once over a training set, and :class:`EarlyStopping` decides from the
validation scores when to stop. A :class:`Session` holds the torch objects
of one ``fit``/``partial_fit`` (network, optimiser, threads, device); the
estimator strings epochs together, so ``partial_fit`` is exactly one epoch.
"""

import contextlib
import math
import threading
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .._backend import cpu_threads
from . import _network


def weighted_cross_entropy(logits, y, weight=None, reduction="mean"):
    """Cross-entropy of each sample times its weight (1 without weights), averaged or summed.

    The mean divides by the number of samples, not the sum of their weights:
    with weights of mean 1 over the training set (see the estimator's ``fit``),
    a batch's loss and the learning rate mean what they mean without weights,
    and a weight of 2 counts a sample twice, as repeating it would in expectation.
    """
    if weight is None:
        return F.cross_entropy(logits, y, reduction=reduction)
    losses = F.cross_entropy(logits, y, reduction="none") * weight
    return losses.mean() if reduction == "mean" else losses.sum()


def train_step(model, optimizer, x, y, weight=None):
    """One optimiser step on the batch ``(x, y)``; returns the batch's mean (weighted) cross-entropy."""
    model.train()
    loss = weighted_cross_entropy(model(x), y, weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run_single_epoch(model, optimizer, x, y, *, batch_size, rng, augment=None, caller="LearnedConvClassifier",
                     epoch=0, weight=None):
    """One pass over ``(x, y)`` in a random order; returns the mean training loss.

    ``weight``: one weight per sample (see :func:`weighted_cross_entropy`), or None.

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
        loss = train_step(model, optimizer, xb, y[batch], None if weight is None else weight[batch])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {float(loss)} at epoch {epoch + 1}, step {step + 1}. "
                f"{caller} stopped: lower 'learning_rate', or scale the images (e.g. to [0, 1])."
            )
        total += loss.double() * batch.shape[0]
    return float(total) / n


@torch.no_grad()
def evaluate(model, x, y, batch_size, weight=None):
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, each sample counted ``weight`` times
    (once without weights), as scikit-learn's ``accuracy_score(..., sample_weight=...)``."""
    model.eval()
    if weight is None:
        weight = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    loss = correct = 0.0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target, w = y[start : start + batch_size], weight[start : start + batch_size]
        loss += float(weighted_cross_entropy(logits, target, w, reduction="sum"))
        correct += float(((logits.argmax(dim=1) == target) * w).sum())
    total = float(weight.sum())
    return loss / total, correct / total


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


# -- one training session -------------------------------------------------------

# Convolution multiply-adds per call that justify one more torch CPU thread
# (see torch_threads): below it, thread start-up and barriers dominate. 5e6 gives
# the 1-layer MNIST network (1.4e7 a 128-image step) two threads: its epochs took
# 0.40-0.43 s instead of 0.67-0.74 s on the idle 2-core VM (2e7 gave it one), and
# no difference beside another 2-thread job; digits (1e6 a step) keep one thread.
_MACS_PER_THREAD = 5e6


def torch_device(requested, fitting, owner="LearnedConvClassifier"):
    """The torch device of the ``device`` parameter.

    ``"cuda"`` without a CUDA device fails when ``fitting``; a fitted model
    predicts on the CPU instead, with a warning.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "auto":
        return torch.device("cpu")
    if fitting:
        raise RuntimeError(
            f"The 'device' parameter of {owner} is 'cuda' but PyTorch sees no "
            "CUDA device (torch.cuda.is_available() is False). Use device='cpu' or 'auto'."
        )
    warnings.warn(
        f"This {owner} has device='cuda' but no CUDA device is present; "
        "predicting on the CPU. Call set_params(device='cpu') to silence this.",
        UserWarning,
    )
    return torch.device("cpu")


class _ThreadCaps:
    """The caps of the :func:`torch_threads` blocks open now, in any thread of the process.

    torch's thread count is one setting for the whole process, so blocks open in several threads at
    once (joblib's threading backend, a web server's workers) share it: while any is open it is the
    smallest open cap, and when the last one closes it is what it was before the first one opened.
    A save-and-restore per block would leave a middle block's cap behind when blocks close out of order.
    """

    def __init__(self):
        self._lock, self._caps, self._before = threading.Lock(), [], None

    def open(self, wanted):
        with self._lock:
            if not self._caps:
                self._before = torch.get_num_threads()
            cap = max(1, min(self._before, wanted))
            self._caps.append(cap)
            self._apply(min(self._caps))
        return cap

    def close(self, cap):
        with self._lock:
            self._caps.remove(cap)
            self._apply(min(self._caps) if self._caps else self._before)

    @staticmethod
    def _apply(n):
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


_THREAD_CAPS = _ThreadCaps()


@contextlib.contextmanager
def torch_threads(device, macs):
    """Within the block, cap torch's CPU threads; the setting before is back when the last block closes.

    The cap is the BLAS limit in force (so threadpoolctl and joblib worker
    limits hold, as for FixedConvTransformer) and one thread per
    ``_MACS_PER_THREAD`` multiply-adds of the largest call: on small images
    (digits: ~1e6 per 128-image step) OpenMP synchronisation costs more than
    it saves, and on a busy machine it made a step 5-10x slower. Blocks open
    in several threads at once share the smallest cap (:class:`_ThreadCaps`).
    """
    if device.type != "cpu":
        yield
        return
    cap = _THREAD_CAPS.open(min(cpu_threads(), int(macs // _MACS_PER_THREAD)))
    try:
        yield
    finally:
        _THREAD_CAPS.close(cap)


class Session:
    """One training session: a float32 network, its optimiser, augmentation and torch's threads.

    Built by the estimator from its NumPy state; ``epoch`` trains one epoch
    and returns its record, and ``numpy_state``/``optimizer_state`` hand the
    result back: the estimator alone keeps its history and fitted state.
    ``macs`` (of one training batch) caps torch's threads while the session
    is entered; ``chunk`` is the images per call when features are precomputed.
    """

    def __init__(self, net, *, train, learning_rate, weight_decay, optimizer_state, augmentation, rng,
                 macs, chunk):
        self.net, self.rng, self.chunk = net, rng, chunk
        self.device = next(net.parameters()).device
        self._threads = torch_threads(self.device, macs)
        # train: "all" trains the spatial kernels; "mixing" only their 1x1 recombinations; "head" neither.
        for layer in net.layers:
            layer.kernels.requires_grad_(train == "all")
        trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        # L2 on kernels, mixings and weight matrices only, as LogisticRegression leaves the intercept free
        # (and as CNN recipes leave the normalisation's scale and shift free).
        decayed = [not n.endswith("bias") and ".norm." not in n for n, _ in trainable]
        self.optimizer = torch.optim.Adam(
            [
                {"params": [p for (_, p), d in zip(trainable, decayed) if d], "weight_decay": weight_decay},
                {"params": [p for (_, p), d in zip(trainable, decayed) if not d], "weight_decay": 0.0},
            ],
            lr=learning_rate,
        )
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state_from_numpy(optimizer_state))
        self.augment = augmenter(augmentation["crop_padding"], augmentation["horizontal_flip"], rng)
        # Frozen kernels and no augmentation: the standardised features never change, compute them once.
        self.precompute = train == "head" and self.augment is None
        self.model = _network.HeadOnly(net) if self.precompute else net

    def __enter__(self):
        self._threads.__enter__()
        return self

    def __exit__(self, *exc):
        self._threads.__exit__(*exc)

    def data(self, images, y, weight=None, features=None):
        """Training tensors: images (or their standardised fixed features), labels and sample weights
        (None: unweighted). ``features``, the fixed features of ``images`` if the caller has them
        (computed to fit the standardisation), spare a second pass when the kernels are frozen."""
        if self.precompute and features is not None:
            with torch.no_grad():
                x = self.net.standardise(torch.as_tensor(features, dtype=torch.float32, device=self.device))
        else:
            x = _network.to_tensor(images, self.device, torch.float32)
            if self.precompute:
                with torch.no_grad():
                    x = torch.cat([self.net.features(x[s : s + self.chunk]) for s in range(0, x.shape[0], self.chunk)])
        weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32, device=self.device)
        return x, torch.as_tensor(y, dtype=torch.long, device=self.device), weight

    def epoch(self, train, valid, *, learning_rate, batch_size, epoch):
        """Train one epoch at ``learning_rate`` on ``train`` and score ``valid`` (each ``(x, y, weight)``
        from :meth:`data`; ``valid`` may be None); its record: losses, validation accuracy, rate and seconds."""
        start = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        x, y, weight = train
        loss = run_single_epoch(self.model, self.optimizer, x, y, batch_size=batch_size, rng=self.rng,
                                augment=self.augment, epoch=epoch, weight=weight)
        valid_loss = valid_accuracy = None
        if valid is not None:
            x_valid, y_valid, w_valid = valid
            valid_loss, valid_accuracy = evaluate(self.model, x_valid, y_valid, max(batch_size, 512), w_valid)
        return {"train_loss": loss, "valid_loss": valid_loss, "valid_accuracy": valid_accuracy,
                "learning_rate": learning_rate, "seconds": time.perf_counter() - start}

    def numpy_state(self):
        """The network's parameters and buffers as float64 NumPy arrays."""
        return _network.numpy_state(self.net)

    def optimizer_state(self):
        """The optimiser's state as NumPy arrays (picklable without torch)."""
        return optimizer_state_to_numpy(self.optimizer.state_dict())
