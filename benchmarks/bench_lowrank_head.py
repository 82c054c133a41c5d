"""LowRankHeadClassifier's training throughput against a plain PyTorch loop and the bare products.

    python benchmarks/bench_lowrank_head.py [--rows 4096] [--maps 3200] [--grid 6] [--rank 64] [--repeats 3]

One training epoch (no early stopping, so no validation pass) over ``rows`` random float16 features of ``maps`` maps
on a ``grid x grid`` pooling grid (3,200 maps on 6x6: the 115,200 features of the fine-grid probe), three
ways in one run, best of ``repeats``:
- ours: ``LowRankHeadClassifier.fit``, an epoch being the difference of a 3-epoch and a 1-epoch fit (what a fit
  does once, the maps' statistics and the composed ``coef_``, is reported apart);
- torch: what a user would write, ``nn.Conv2d(maps, rank, 1)`` and ``nn.Linear`` after a float32
  standardised copy of the features made once (its copy time reported, not counted), Adam, same batches;
- bare: the two matrix products of each step (the projection forward, and its weight gradient), float32.
The ratio ours / bare is the share of the step that is the products (the 70% rule of the other layers' benchmarks
does not apply as such: a float16 batch must be widened and standardised before its products).
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

from skconvfeat import LowRankHeadClassifier


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--maps", type=int, default=3200)
    parser.add_argument("--grid", type=int, default=6)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cells, rng = args.grid**2, np.random.default_rng(0)
    X = rng.random((args.rows, args.maps * cells), dtype=np.float32).astype(np.float16)
    y = rng.integers(10, size=args.rows)

    def fit(epochs):
        return lambda: LowRankHeadClassifier(grid=args.grid, rank=args.rank, max_epochs=epochs, early_stopping=False,
                                             batch_size=args.batch_size, random_state=0).fit(X, y)

    # An epoch is the difference of a 3-epoch and a 1-epoch fit; the rest of a fit (the maps' statistics,
    # the composed coef_) is paid once, and reported apart.
    one, three = best(fit(1), args.repeats), best(fit(3), args.repeats)
    ours, once = (three - one) / 2, one - (three - one) / 2

    start = time.perf_counter()
    wide = torch.from_numpy(X.astype(np.float32)).view(args.rows, args.maps, args.grid, args.grid)
    wide = (wide - wide.mean(dim=(0, 2, 3), keepdim=True)) / wide.std(dim=(0, 2, 3), keepdim=True)
    copy_seconds = time.perf_counter() - start
    target = torch.from_numpy(y)
    model = nn.Sequential(nn.Conv2d(args.maps, args.rank, 1, bias=False), nn.Flatten(),
                          nn.Linear(args.rank * cells, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def torch_epoch():
        for rows in torch.randperm(args.rows).split(args.batch_size):
            loss = nn.functional.cross_entropy(model(wide[rows]), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    plain = best(torch_epoch, args.repeats)

    reduce = torch.randn(args.rank, args.maps)
    cell_rows = wide[:args.batch_size].permute(0, 2, 3, 1).reshape(-1, args.maps).contiguous()
    batches = [cell_rows] * (args.rows // args.batch_size)

    def products():
        for rows in batches:
            low = rows @ reduce.T  # the projection of every cell of the batch
            low.T @ rows  # its weight gradient

    bare = best(products, args.repeats)
    print(f"{args.rows} rows x {args.maps * cells:,} features (float16), rank {args.rank}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    print("| loop | seconds per epoch | rows/s | bare products / loop |\n|---|---|---|---|")
    for name, seconds in (("LowRankHeadClassifier.fit, one epoch", ours), ("plain torch (float32 copy made once)", plain),
                          ("bare products", bare)):
        print(f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} | {bare / seconds:.0%} |")
    print(f"(once per fit, ours: {once:.2f} s for the maps' statistics and the composed coef_; the plain loop's float32 standardised copy: {copy_seconds:.2f} s, "
          f"{wide.numel() * 4 / 2**30:.1f} GiB, against {X.nbytes / 2**30:.1f} GiB of float16)")


if __name__ == "__main__":
    main()
