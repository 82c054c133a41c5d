"""Throughput of FixedConvTransformer against the PyTorch code a user would write, side by side.

    python benchmarks/bench_transform.py            # CPU: ours vs torch conv2d+relu+pool on the CPU
    python benchmarks/bench_transform.py --gpu      # also the GPU rows (needs CuPy and CUDA)

Same work on both sides: float32, a bank of 32 random 5x5 kernels, 'valid'
padding, ReLU, 2x2 average pooling, features flattened to a NumPy array.
Each number is the best of `--repeats` runs (best-of rejects noise from other
processes on a shared machine; the ratio is what we report).
"""

import argparse
import platform
import time

import numpy as np

from skconvfeat import FixedConvTransformer

# name: (n_images, height, width, channels) -- shapes of the real datasets.
WORKLOADS = {
    "digits": (1797, 8, 8, 1),
    "mnist": (10000, 28, 28, 1),
    "cifar10": (10000, 32, 32, 3),
}
N_FILTERS = 32  # a typical first-layer width
KERNEL = 5  # pixels
TORCH_BATCH = 1024  # images per torch call: a batch size a user would pick; whole-set calls were no faster


def best_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def make_images(shape, seed=0):
    n, h, w, c = shape
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def ours(images, device):
    conv = FixedConvTransformer(
        bank="random", bank_params={"n_filters": N_FILTERS}, kernel_size=KERNEL, pool_size=2, device=device, random_state=0
    ).fit(images[:1])
    return conv, lambda: conv.transform(images)


def torch_cpu(images, filters):
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(filters.astype(np.float32))

    def run():
        out = []
        with torch.no_grad():
            for b in range(0, len(images), TORCH_BATCH):
                x = torch.from_numpy(images[b : b + TORCH_BATCH]).permute(0, 3, 1, 2).float()
                y = F.avg_pool2d(F.relu(F.conv2d(x, weight)), 2)
                out.append(y.flatten(1).numpy())
        return np.concatenate(out)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
    print(f"{'workload':10} {'images':>7} {'ours img/s':>12} {'torch img/s':>12} {'ours/torch':>10}  max|diff|")
    for name in args.workloads.split(","):
        images = make_images(WORKLOADS[name])
        conv, run_ours = ours(images, "cpu")
        run_torch = torch_cpu(images, conv.filters_)
        diff = np.abs(run_ours() - run_torch()).max()
        t_ours = best_time(run_ours, args.repeats)
        t_torch = best_time(run_torch, args.repeats)
        n = len(images)
        print(f"{name:10} {n:7d} {n / t_ours:12.0f} {n / t_torch:12.0f} {t_torch / t_ours:9.2f}x  {diff:.1e}")


if __name__ == "__main__":
    main()
