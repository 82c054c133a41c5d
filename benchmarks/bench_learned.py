"""Training throughput of LearnedConvClassifier against a plain PyTorch loop of the same network.

The learning curves train hundreds of networks on 2 CPU cores, so the learned side's speed decides
what the study can afford. Both sides train the study's networks (1 layer: conv 3x3, 16 kernels,
ReLU, 4x4 average grid; 2 layers: conv 5x5/32 -> ReLU -> max-pool 2 -> conv 3x3/64 -> ReLU ->
max-pool 2), standardised features, a linear head, Adam (lr 1e-2, L2 1e-4 on weights) and cross-entropy,
on the same MNIST training images (scaled to [0, 1], as the study does) in the same 128-image batches, for ``--epochs`` epochs each, in
interleaved rounds (best of ``--repeats``). The plain loop is what a user would write by hand:
``nn.Sequential`` in NCHW, ``torch.optim.Adam``, no data loader. Variants measured beside it, each a
setting the study can choose: kernels frozen (ours computes the features once), channels-last memory
format, the batch size, and torch's thread count.

    OMP_NUM_THREADS=2 python benchmarks/bench_learned.py [--images 6000] [--epochs 2] [--repeats 3]
                                                         [--data-home ../shared/data]

Without MNIST under ``--data-home`` it falls back to synthetic blobs and says so: those are separable
enough that after an epoch the softmax saturates, gradients underflow to subnormal floats and every
network trains several times slower (CPU arithmetic on subnormals), so its rates are not the study's.

Prints images per second of training and the ratio ours / plain (>= 1.0 is the goal), end to end and
for the epochs alone: ours has a one-time set-up the plain loop has not (a pass of the fixed network
over the images, whose statistics freeze the standardisation; the plain loop's BatchNorm learns them
on the way), so the end-to-end ratio rises with the number of epochs.
"""

import argparse
import time

import numpy as np


def _images(n, data_home, seed=0):
    """The first ``n`` MNIST training images (28x28x1, in [0, 1]) and labels, and the data's name;
    synthetic MNIST-sized blobs at class-given places where MNIST is absent."""
    from pathlib import Path

    if (Path(data_home) / "mnist").is_dir():
        from skconvfeat.datasets import fetch_mnist

        train = fetch_mnist(data_home=data_home, subset="train", download_if_missing=False)
        return (train.images[:n, :, :, None] / np.float32(255)), train.target[:n], "MNIST"
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(0, 0.3, (n, 28, 28, 1)).astype(np.float32)
    rows, cols = 4 + 2 * (y // 5) * 5, 4 + (y % 5) * 4
    for i in range(n):
        x[i, rows[i]:rows[i] + 6, cols[i]:cols[i] + 6] += 1.0
    return x, y, "synthetic blobs (no MNIST under --data-home; saturating, see the docstring)"


def _description(depth):
    from skconvfeat.study._design import description

    return description("random", depth, 0)


def ours(x, y, depth, epochs, batch_size, freeze):
    """Seconds for LearnedConvClassifier to ``fit`` ``epochs`` epochs, and the part of them spent in
    the epochs themselves (``history_``): the rest is the one-time set-up, mostly a pass of the fixed
    network over the images for the frozen standardisation (frozen kernels then train on its features)."""
    from skconvfeat import LearnedConvClassifier

    model = LearnedConvClassifier(_description(depth), freeze_kernels=freeze, max_epochs=epochs,
                                  batch_size=batch_size, early_stopping=False, random_state=0)
    start = time.perf_counter()
    model.fit(x, y)
    return time.perf_counter() - start, sum(record["seconds"] for record in model.history_)


def _plain_network(torch, depth, n_channels=1):
    nn = torch.nn
    if depth == 1:
        convs = [nn.Conv2d(n_channels, 16, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(4)]
        n_features = 16 * 16
    else:
        convs = [nn.Conv2d(n_channels, 32, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                 nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2)]
        n_features = 64 * 7 * 7
    return nn.Sequential(*convs, nn.Flatten(), nn.BatchNorm1d(n_features, affine=False), nn.Linear(n_features, 10))


def plain(x, y, depth, epochs, batch_size, freeze, channels_last=False, threads=None):
    """Seconds for a hand-written PyTorch loop of the same network (features standardised by a
    BatchNorm without affine terms, the nearest layer a user would reach for); ``threads`` caps
    torch's threads for the run (None: torch's default, one per core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _plain(torch, x, y, depth, epochs, batch_size, freeze, channels_last)
    finally:
        torch.set_num_threads(before)


def _plain(torch, x, y, depth, epochs, batch_size, freeze, channels_last):
    torch.manual_seed(0)
    net = _plain_network(torch, depth)
    if freeze:
        for p in list(net.parameters())[: 1 if depth == 1 else 2]:
            p.requires_grad_(False)
    start = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=generator)
        for s in range(0, len(yt), batch_size):
            batch = order[s:s + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depths", default="1,2")
    parser.add_argument("--data-home", default="../shared/data", help="where the mnist/ folder is")
    args = parser.parse_args()
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epoch counts on purpose
    x, y, data = _images(args.images, args.data_home)
    n = args.images * args.epochs
    cases = []
    for depth in (int(d) for d in args.depths.split(",")):
        for freeze in (False, True):
            for batch in (128, 256):
                cases.append((depth, freeze, batch))
    print(f"{data}: {args.images} images x {args.epochs} epochs, best of {args.repeats}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    variants = {  # name -> plain() keyword arguments
        "plain": {}, "plain 1 thread": {"threads": 1}, "plain channels-last": {"channels_last": True},
    }
    print("| depth | kernels | batch | ours img/s | ours epochs only img/s | ours set-up s | "
          + " | ".join(f"{v} img/s" for v in variants) + " | ours / best plain | epochs only / best plain |")
    print("|---|---|---|---|---|---|" + "---|" * len(variants) + "---|---|")
    for depth in {case[0] for case in cases}:  # imports, oneDNN's kernel choices: once, before any timing
        ours(x[:256], y[:256], depth, 1, 128, False)
        plain(x[:256], y[:256], depth, 1, 128, False)
    for depth, freeze, batch in cases:
        best = dict.fromkeys(["ours", "ours epochs", *variants], np.inf)
        for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every side
            total, in_epochs = ours(x, y, depth, args.epochs, batch, freeze)
            if total < best["ours"]:
                best["ours"], best["ours epochs"] = total, in_epochs
            for name, kwargs in variants.items():
                best[name] = min(best[name], plain(x, y, depth, args.epochs, batch, freeze, **kwargs))
        rate = {k: n / v for k, v in best.items()}
        fastest = max(rate[v] for v in variants)
        print(f"| {depth} | {'frozen' if freeze else 'trained'} | {batch} | {rate['ours']:.0f} | "
              f"{rate['ours epochs']:.0f} | {best['ours'] - best['ours epochs']:.2f} | "
              + " | ".join(f"{rate[v]:.0f}" for v in variants)
              + f" | {rate['ours'] / fastest:.2f}x | {rate['ours epochs'] / fastest:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
